"""Offline language identification (Llama 2 Table 10): py3langid's naive-Bayes model, shipped in its wheel.

A document whose top language has normalised probability below the threshold counts as "unknown" (Llama 2
used fastText with a 0.5 threshold; its unknown bucket is partly code). py3langid covers 97 languages.
"""

from __future__ import annotations

from functools import lru_cache

UNKNOWN = "unknown"


@lru_cache(maxsize=1)
def _identifier():
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        from safealign.errors import SafealignError

        raise SafealignError(
            "audit: language identification needs the `py3langid` package (pip install py3langid)"
        ) from None
    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str, threshold: float, max_chars: int = 2000) -> tuple[str, float]:
    """(ISO 639-1 code or "unknown", confidence) for the first `max_chars` characters of `text`."""
    sample = text[:max_chars]
    if not any(c.isalpha() for c in sample):
        return UNKNOWN, 0.0
    lang, prob = _identifier().classify(sample)
    return (lang if prob >= threshold else UNKNOWN), float(prob)


def backend() -> str:
    try:
        from importlib.metadata import version

        return f"py3langid {version('py3langid')}"
    except Exception:  # noqa: BLE001 - a version string is cosmetic
        return "py3langid"
