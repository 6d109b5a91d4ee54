"""The judge interface: a `Verdict` per (prompt, response) and the `Judge` base class every scorer extends."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

REFUSAL_LABELS = ("full", "partial", "none")


@dataclass
class Verdict:
    """One judge's reading of one (prompt, response) pair.

    Fields a judge cannot tell stay None, so a harm judge's verdict says nothing about refusal.
    """

    refusal: str | None = None
    """"full" (declines), "partial" (declines but also does some of it), "none" (complies)."""
    harm: float | None = None
    """Probability that the response is harmful given the prompt."""
    toxicity: float | None = None
    """Probability that the response text is toxic."""
    category: str | None = None
    """Policy risk category when the judge can tell (e.g. Llama Guard's hazard code mapped)."""
    judge: str = ""
    """Name of the judge that produced this verdict (registry name)."""
    refusal_prob: float | None = None
    """Probability of a refusal (full or partial) when the judge gives one; used for ROC-AUC."""
    raw: str | None = None
    """An LLM judge's own output text, kept for audit; None for the other judges."""

    def __post_init__(self) -> None:
        if self.refusal is not None and self.refusal not in REFUSAL_LABELS:
            raise ValueError(f"Verdict.refusal must be one of {REFUSAL_LABELS} or None, found {self.refusal!r}")

    @property
    def is_refusal(self) -> bool:
        """True for a full or a partial refusal."""
        return self.refusal in ("full", "partial")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Judge:
    """Base class: subclasses set `name` and override `judge_batch` (or `judge`, for per-pair scorers)."""

    name: str = ""

    def judge(self, prompt: str, response: str) -> Verdict:
        return self.judge_batch([prompt], [response])[0]

    def judge_batch(self, prompts: list[str], responses: list[str]) -> list[Verdict]:
        if type(self).judge is Judge.judge:
            raise NotImplementedError(f"{type(self).__name__} must override judge or judge_batch")
        prompts, responses = _check_pairs(prompts, responses)
        return [self.judge(p, r) for p, r in zip(prompts, responses)]

    def validation(self, datasets_dir: str | None = None) -> dict | None:
        """Held-out agreement with human labels (see `safealign.judges.validate`); None if never validated."""
        return None

    def __repr__(self) -> str:
        return f"<judge {self.name!r}>"


def _check_pairs(prompts, responses) -> tuple[list[str], list[str]]:
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise ValueError(f"judge_batch: {len(prompts)} prompts but {len(responses)} responses")
    return [p or "" for p in prompts], [r or "" for r in responses]
