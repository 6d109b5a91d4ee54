"""Agreement of any judge with human labels it was not fitted on.

Trained judges carry the figures of their grouped cross-validation (see `trained.py`). Judges that are
not fitted on these labels (the rules, Llama Guard, an endpoint) are scored directly here on the
human-labelled set of their task, optionally on a seeded, stratified sample when each call is costly.
"""

from __future__ import annotations

import random

from safealign.errors import SafealignError
from safealign.judges import labels as L
from safealign.judges.base import Judge
from safealign.judges.metrics import binary_metrics

TASK_SETS = {
    "refusal": L.load_xstest_completions,
    "harm": L.load_do_not_answer,
    "toxicity": L.load_toxigen_annotated,
}
_memo: dict[tuple, dict] = {}


def _positive(task: str, y) -> int:
    return int(y != "none") if task == "refusal" else int(y)


def _score(task: str, verdict) -> tuple[int, float | None] | None:
    """(decision, probability) for one verdict; None when the judge could not tell (an unreadable LLM reply)."""
    if task == "refusal":
        if verdict.refusal is None:
            return None
        return int(verdict.is_refusal), verdict.refusal_prob
    value = getattr(verdict, task)
    if value is None:
        return None
    return int(value >= 0.5), value


def stratified_sample(y: list[int], limit: int, seed: int = 0) -> list[int]:
    """`limit` row indices keeping the positive share, at least a few positives when any exist."""
    rng = random.Random(seed)
    pos = [i for i, v in enumerate(y) if v]
    neg = [i for i, v in enumerate(y) if not v]
    k_pos = min(len(pos), max(round(limit * len(pos) / max(len(y), 1)), min(len(pos), limit // 4)))
    chosen = rng.sample(pos, k_pos) + rng.sample(neg, min(len(neg), limit - k_pos))
    return sorted(chosen)


def validate_judge(judge: Judge, datasets_dir=None, task: str | None = None, limit: int | None = None,
                   batch_size: int = 64, note: str | None = None) -> dict:
    """Score `judge` on the human labels of `task` and return agreement figures (memoised per process)."""
    task = task or getattr(judge, "task", None) or "refusal"
    if task not in TASK_SETS:
        raise SafealignError(f"unknown validation task {task!r}; expected one of {sorted(TASK_SETS)}")
    key = (judge.name, id(judge), str(datasets_dir), task, limit)
    if key in _memo:
        return _memo[key]
    ls = TASK_SETS[task](datasets_dir)
    y = [_positive(task, v) for v in ls.y]
    idx = stratified_sample(y, limit) if limit and limit < len(y) else list(range(len(y)))
    sampled = len(idx)
    verdicts = []
    for start in range(0, len(idx), batch_size):
        chunk = idx[start : start + batch_size]
        verdicts += judge.judge_batch([ls.prompts[i] for i in chunk], [ls.responses[i] for i in chunk])
    scored = [(i, v, _score(task, v)) for i, v in zip(idx, verdicts)]
    unscored = sum(1 for *_, s in scored if s is None)
    if verdicts and unscored == len(verdicts):
        raise SafealignError(f"judge {judge.name!r} gave no {task} verdict on any of {len(verdicts)} pairs; "
                             f"validate it on another task (refusal, harm, toxicity)")
    scored = [(i, v, s) for i, v, s in scored if s is not None]
    idx, verdicts = [i for i, *_ in scored], [v for _, v, _ in scored]
    preds, scores = [s[0] for *_, s in scored], [s[1] for *_, s in scored]
    y_eval = [y[i] for i in idx]
    have_scores = all(s is not None for s in scores) and len(set(scores)) > 2
    out = {"judge": judge.name, "task": task, "dataset": ls.name, "data_hashes": ls.hashes}
    out |= binary_metrics(y_eval, preds, scores if have_scores else None)
    out["method"] = "direct: the judge is not fitted on these labels" + (
        f"; stratified sample of {sampled} (seed 0)" if sampled < len(y) else "")
    groups = [ls.groups[i] for i in idx]
    out["per_group"] = {}
    for g in sorted(set(groups)) if task != "harm" else []:
        sel = [k for k, gg in enumerate(groups) if gg == g]
        m = binary_metrics([y_eval[k] for k in sel], [preds[k] for k in sel])
        out["per_group"][g] = {k: m[k] for k in ("n", "accuracy", "precision", "recall", "kappa")}
    if task == "refusal":
        out["accuracy_3class"] = sum(v.refusal == ls.y[i] for v, i in zip(verdicts, idx)) / max(len(idx), 1)
    if unscored:
        out["unscored"] = unscored
    if note:
        out["note"] = note
    _memo[key] = out
    return out
