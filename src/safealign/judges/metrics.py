"""Agreement with human labels as small pure functions: accuracy, precision, recall, F1, Cohen's kappa,
ROC-AUC and the confusion matrix, for a binary decision (1 = refusal / harmful / toxic)."""

from __future__ import annotations

from collections.abc import Sequence

from safealign.stats import wilson


def confusion(y_true: Sequence[int], y_pred: Sequence[int]) -> list[list[int]]:
    """[[tn, fp], [fn, tp]]: rows are the human label, columns the judge's."""
    m = [[0, 0], [0, 0]]
    for t, p in zip(y_true, y_pred, strict=True):
        m[int(bool(t))][int(bool(p))] += 1
    return m


def cohen_kappa(cm: list[list[int]]) -> float:
    """kappa = (p_o - p_e) / (1 - p_e), p_o observed agreement, p_e agreement expected from the marginals."""
    (tn, fp), (fn, tp) = cm
    n = tn + fp + fn + tp
    if n == 0:
        return float("nan")
    p_o = (tn + tp) / n
    p_e = ((tn + fp) * (tn + fn) + (fn + tp) * (fp + tp)) / (n * n)
    return 1.0 if p_e == 1 else (p_o - p_e) / (1 - p_e)


def roc_auc(y_true: Sequence[int], scores: Sequence[float]) -> float:
    """Probability that a random positive outscores a random negative (ties count 1/2): the Mann-Whitney U / (n+ n-)."""
    pairs = sorted(zip(scores, y_true), key=lambda x: x[0])
    n_pos = sum(1 for _, t in pairs if t)
    n_neg = len(pairs) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum, i = 0.0, 0
    while i < len(pairs):  # average ranks over ties
        j = i
        while j + 1 < len(pairs) and pairs[j + 1][0] == pairs[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1
        rank_sum += avg_rank * sum(1 for k in range(i, j + 1) if pairs[k][1])
        i = j + 1
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def _div(a: float, b: float) -> float:
    return a / b if b else 0.0


def binary_metrics(y_true: Sequence[int], y_pred: Sequence[int], scores: Sequence[float] | None = None) -> dict:
    """All agreement figures for one binary judge decision; `scores` (probabilities) adds roc_auc."""
    y_true = [int(bool(t)) for t in y_true]
    y_pred = [int(bool(p)) for p in y_pred]
    cm = confusion(y_true, y_pred)
    (tn, fp), (fn, tp) = cm
    n = tn + fp + fn + tp
    precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
    acc = wilson(tn + tp, n)
    out = {
        "n": n,
        "positives": tp + fn,
        "accuracy": acc.value,
        "accuracy_ci95": [acc.low, acc.high],
        "precision": precision,
        "recall": recall,
        "f1": _div(2 * precision * recall, precision + recall),
        "kappa": cohen_kappa(cm),
        "roc_auc": roc_auc(y_true, scores) if scores is not None else None,
        "confusion": {"labels": ["negative", "positive"], "rows": "human", "cols": "judge", "matrix": cm},
    }
    return out
