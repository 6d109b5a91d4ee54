"""Toxicity prevalence (Llama 2 Figure 13): a judge scores each line of a sampled document; the document's
score is the mean over its lines.

The sample is a deterministic hash of (seed, document location), so the in-process and Ray backends, and a
resumed run, score the same documents. The scorer is any `callable(lines) -> list[float]`; by default it is
the registry's toxicity judge (`safealign.judges`), built lazily on first use inside the worker that runs it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

Scorer = Callable[[list[str]], list[float]]

N_BINS = 20
"""Histogram bins over [0, 1] (width 0.05); Figure 13 plots the same range."""


def sampled(seed: int, doc_key: str, rate: float) -> bool:
    """True for about `rate` of documents, decided by a hash of seed and location (not by a global RNG)."""
    if rate <= 0.0:
        return False
    if rate >= 1.0:
        return True
    h = hashlib.blake2b(f"{seed}\x00{doc_key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64 < rate


def doc_lines(text: str) -> list[str]:
    """The lines a judge scores: non-blank, stripped."""
    return [s for s in (line.strip() for line in text.splitlines()) if s]


def bin_index(score: float) -> int:
    return min(N_BINS - 1, max(0, int(score * N_BINS)))


class JudgeScorer:
    """Adapter from a safealign judge to a line scorer: prompt "" and the line as the response."""

    def __init__(self, judge_name: str = "toxicity"):
        self.judge_name = judge_name
        self._judge = None

    def __call__(self, lines: list[str]) -> list[float]:
        if self._judge is None:
            from safealign.judges import get_judge

            self._judge = get_judge(self.judge_name)
        verdicts = self._judge.judge_batch([""] * len(lines), lines)
        scores = [v.toxicity for v in verdicts]
        if any(s is None for s in scores):
            from safealign.errors import SafealignError

            raise SafealignError(f"audit: judge {self.judge_name!r} returned no toxicity score")
        return [float(s) for s in scores]

    def describe(self) -> str:
        return f"judge:{self.judge_name}"


def describe(scorer: Scorer) -> str:
    d = getattr(scorer, "describe", None)
    return d() if callable(d) else getattr(scorer, "__name__", type(scorer).__name__)
