"""Llama 2's gated combination of a safety and a helpfulness reward (§3.2.3, Eq. 4), as small pure functions.

    R_c(g|p) = R_s(g|p)   if IS_SAFETY(p) or R_s(g|p) < 0.15
               R_h(g|p)   otherwise
    R̃_c(g|p) = WHITEN(LOGIT(R_c(g|p)))
    R(g|p)   = R̃_c(g|p) − β · D_KL(π_θ(g|p) ‖ π_0(g|p))

The reward models output σ(r) in [0, 1]; LOGIT undoes the sigmoid so that whitening works on the
unbounded scale, and probabilities are clamped to [eps, 1 − eps] first so a score of exactly 0 or 1 stays
finite. The paper does not say which statistics WHITEN uses; batch statistics are the default (as in
TRL PR #887, borrowed from alpaca_farm) and running statistics (`RunningWhitener`) are the option.

`GatedReward` wires two scorers (anything with `score(prompts, responses) -> list[float]` in [0, 1]) into
the gate; rejection sampling ranks by its raw R_c, PPO and RLOO train on the shaped R̃_c.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

DEFAULT_THRESHOLD = 0.15
"""Llama 2's gate: R_s < 0.15 flags an unsafe answer with precision 0.89 and recall 0.55 on Meta Safety."""
DEFAULT_EPS = 1e-6
"""Clamp for LOGIT: bounds its output to ±13.8, so R = 0 or 1 from a saturated sigmoid stays finite."""
WHITEN_MODES = ("batch", "running", "none")


class Scorer(Protocol):
    """A reward model as the gate sees it: σ(r) in [0, 1] for each (prompt, response)."""

    def score(self, prompts: Sequence[Any], responses: Sequence[str]) -> list[float]: ...


def logit(p: torch.Tensor, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """LOGIT(p) = log(p / (1 − p)), with p clamped to [eps, 1 − eps] first.

    Hand-worked: logit(0.5) = 0; logit(0.8) = log 4 = 1.3863; logit(0) = log(eps / (1 − eps)) ≈ −13.8155.
    """
    p = p.to(torch.float64).clamp(eps, 1.0 - eps)
    return torch.log(p) - torch.log1p(-p)


def gate(safety: torch.Tensor, helpfulness: torch.Tensor, is_safety: torch.Tensor,
         threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """R_c = R_s if IS_SAFETY(p) or R_s < threshold else R_h  (Llama 2 §3.2.3).

    Safety prompts are always scored by the safety RM; on other prompts the safety RM only vetoes a
    response it judges clearly unsafe, and the helpfulness RM decides otherwise.
    Hand-worked with threshold 0.15: (R_s, R_h, safety?) = (0.9, 0.2, yes) → 0.9; (0.1, 0.8, no) → 0.1;
    (0.5, 0.7, no) → 0.7.
    """
    use_safety = is_safety.to(torch.bool) | (safety < threshold)
    return torch.where(use_safety, safety, helpfulness)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """WHITEN(x) = (x − μ) / sqrt(σ² + eps), μ and σ² over the batch (over `mask`ed entries if given).

    σ² is the population variance (divide by n), so a batch of one whitens to 0 instead of NaN.
    `shift_mean=False` adds μ back (unit variance, original mean). Entries outside `mask` are returned as 0.
    Hand-worked: whiten([1, 2, 3]) = [−1.2247, 0, 1.2247] (μ = 2, σ² = 2/3).
    """
    if mask is None:
        mean, var = x.mean(), x.var(correction=0)
    else:
        mask = mask.to(x.dtype)
        n = mask.sum().clamp(min=1)
        mean = (x * mask).sum() / n
        var = (((x - mean) * mask) ** 2).sum() / n
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out if mask is None else out * mask


def whiten_by_group(x: torch.Tensor, groups: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """WHITEN within each group of `groups` (same shape as `x`); a group of one whitens to 0.

    PPO's `whitening: class` groups a batch by prompt class: the safety RM (mean σ ≈ 0.6 on the embedded model)
    and the helpfulness RM (≈ 0.1) score on different scales, so whitening a small mixed batch as one credits
    every answer to a safety prompt for its class, not for its quality, by an amount that moves with the mix.
    Hand-worked: whiten_by_group([1, 3, 10, 20], [0, 0, 1, 1]) = [−1, 1, −1, 1].
    """
    out = torch.zeros_like(x)
    for g in torch.unique(groups):
        sel = groups == g
        out[sel] = whiten(x[sel], eps=eps)
    return out


class RunningWhitener:
    """WHITEN with running statistics: every batch updates the mean and variance of all values seen so far.

    Merges batch moments with Chan et al.'s parallel formula in float64:
        n = n_a + n_b,  δ = μ_b − μ_a,  μ = μ_a + δ·n_b/n,  M2 = M2_a + M2_b + δ²·n_a·n_b/n.
    Batches are whitened with the statistics *after* their own update, so the first batch is whitened
    exactly as batch whitening would. State is three floats (`state_dict`), saved in PPO checkpoints.
    """

    def __init__(self, shift_mean: bool = True, eps: float = 1e-8):
        self.shift_mean, self.eps = shift_mean, eps
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    @property
    def var(self) -> float:
        return self.m2 / self.count if self.count else 0.0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64).flatten()
        n_b = x.numel()
        if n_b == 0:
            return
        mean_b, m2_b = float(x.mean()), float(((x - x.mean()) ** 2).sum())
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n

    def __call__(self, x: torch.Tensor, update: bool = True) -> torch.Tensor:
        if update:
            self.update(x)
        out = (x - self.mean) / math.sqrt(self.var + self.eps)
        return out + self.mean if not self.shift_mean else out

    def state_dict(self) -> dict[str, float]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


def shape_reward(r_c: torch.Tensor, whitening: str | RunningWhitener = "batch",
                 eps: float = DEFAULT_EPS) -> torch.Tensor:
    """R̃_c = WHITEN(LOGIT(R_c)); `whitening` is "batch", "none" (logit only) or a `RunningWhitener`."""
    z = logit(r_c, eps)
    if isinstance(whitening, RunningWhitener):
        return whitening(z)
    if whitening == "batch":
        return whiten(z)
    if whitening == "none":
        return z
    raise ValueError(f"whitening must be one of {', '.join(WHITEN_MODES)} or a RunningWhitener, got {whitening!r}")


def gated_reward(safety: torch.Tensor, helpfulness: torch.Tensor, is_safety: torch.Tensor,
                 threshold: float = DEFAULT_THRESHOLD, whitening: str | RunningWhitener = "batch",
                 eps: float = DEFAULT_EPS) -> torch.Tensor:
    """R̃_c = WHITEN(LOGIT(R_c)) with R_c the gate of (R_s, R_h) above: one scalar per sample."""
    return shape_reward(gate(safety, helpfulness, is_safety, threshold), whitening, eps)


def kl_penalized_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token form of Eq. 4: r_t = −β·(log π_θ(a_t|s_t) − log π_0(a_t|s_t)) + [t = T]·R̃_c.

    Shapes: scores [B]; logprobs, ref_logprobs, mask [B, T] over response tokens, right-padded (mask is
    1 for the first n_b tokens of row b, n_b ≥ 1). The per-token log-ratio is the k1 estimator of
    D_KL(π_θ ‖ π_0), whose sum over a sampled response is an unbiased estimate of the sequence KL. The
    sequence score lands on the last real token. Returns (rewards [B, T], per-token KL [B, T]), 0 on padding.
    Hand-worked, β = 0.1, one row, logprobs [−1, −2], ref [−1.5, −1], score 2:
    KL = [0.5, −1]; rewards = [−0.05, 0.1 + 2] = [−0.05, 2.1].
    """
    mask = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    last = (mask.sum(dim=1).long() - 1).clamp(min=0)
    rewards = rewards.clone()
    rewards[torch.arange(rewards.shape[0]), last] += scores.to(rewards.dtype)
    return rewards * mask, kl


@dataclass
class GatedScores:
    """Per-sample reward components; `helpfulness` is NaN where the gate did not need it (lazy scoring)."""

    safety: list[float]
    helpfulness: list[float]
    gated: list[float]
    """R_c in [0, 1]: the gated reward before LOGIT and WHITEN (what rejection sampling ranks by)."""
    used_safety: list[bool]


class GatedReward:
    """The gate over two scorers: `safety_rm` and `helpfulness_rm` (each `score(prompts, responses)` → [0, 1]).

    `components(...)` returns R_s, R_h and R_c per sample; calling the object returns R_c (probability
    scale, comparable across batches); `shaped(...)` returns R̃_c = WHITEN(LOGIT(R_c)) for training.
    With `lazy=True` the helpfulness RM scores only the samples the gate sends to it (non-safety prompts
    with R_s ≥ threshold), which saves one RM forward pass on every safety prompt. Two `RewardModel`s that
    share their lower layers are scored together instead (`score_both`), every R_h included.
    """

    def __init__(self, safety_rm: Scorer, helpfulness_rm: Scorer, threshold: float = DEFAULT_THRESHOLD,
                 whitening: str = "batch", eps: float = DEFAULT_EPS, lazy: bool = True):
        if whitening not in WHITEN_MODES:
            raise ValueError(f"whitening must be one of {', '.join(WHITEN_MODES)}, got {whitening!r}")
        self.safety_rm, self.helpfulness_rm = safety_rm, helpfulness_rm
        self.threshold, self.eps, self.lazy = threshold, eps, lazy
        self.whitening: str | RunningWhitener = RunningWhitener() if whitening == "running" else whitening

    def components(self, prompts: Sequence[Any], responses: Sequence[str],
                   is_safety: Sequence[bool]) -> GatedScores:
        if not (len(prompts) == len(responses) == len(is_safety)):
            raise ValueError(f"prompts, responses and is_safety differ in length: "
                             f"{len(prompts)}, {len(responses)}, {len(is_safety)}")
        if not prompts:
            return GatedScores([], [], [], [])
        flags = torch.tensor([bool(s) for s in is_safety])
        if self._shared_trunk():  # both in one pass: cheaper than the lazy split
            s, h = self.safety_rm.score_both(self.helpfulness_rm, list(prompts), list(responses))
            r_s = torch.tensor(_checked(s, "safety_rm", len(prompts)), dtype=torch.float64)
            r_h = torch.tensor(_checked(h, "helpfulness_rm", len(prompts)), dtype=torch.float64)
        else:
            r_s = torch.tensor(_checked(self.safety_rm.score(list(prompts), list(responses)), "safety_rm",
                                        len(prompts)), dtype=torch.float64)
            r_h = torch.full_like(r_s, float("nan"))
        use_safety = flags | (r_s < self.threshold)
        need = [i for i in range(len(prompts)) if torch.isnan(r_h[i]) and not (self.lazy and use_safety[i])]
        if need:
            scored = _checked(self.helpfulness_rm.score([prompts[i] for i in need], [responses[i] for i in need]),
                              "helpfulness_rm", len(need))
            r_h[need] = torch.tensor(scored, dtype=torch.float64)
        r_c = gate(r_s, torch.nan_to_num(r_h, nan=0.0), flags, self.threshold)
        return GatedScores(r_s.tolist(), r_h.tolist(), r_c.tolist(), use_safety.tolist())

    def _shared_trunk(self) -> bool:
        """True when the two RMs share their lower layers (`RewardModel.score_both` then runs that trunk once)."""
        shared = getattr(self.safety_rm, "shared_layers", None)
        return shared is not None and hasattr(self.safety_rm, "score_both") and shared(self.helpfulness_rm) > 0

    def __call__(self, prompts: Sequence[Any], responses: Sequence[str], is_safety: Sequence[bool]) -> list[float]:
        return self.components(prompts, responses, is_safety).gated

    def shaped(self, prompts: Sequence[Any], responses: Sequence[str], is_safety: Sequence[bool]) -> list[float]:
        r_c = torch.tensor(self(prompts, responses, is_safety), dtype=torch.float64)
        return shape_reward(r_c, self.whitening, self.eps).tolist() if len(r_c) else []

    def reward_func(self):
        """A TRL reward function (RLOO/GRPO): `(prompts, completions, is_safety, **kwargs) -> list[float]`.

        The dataset's `is_safety` column reaches it as a keyword argument; conversational completions
        ([{"role": "assistant", "content": ...}]) are reduced to their text. Returns the shaped R̃_c, whose
        batch mean is 0 by construction, so the raw means (R_c, R_s, share gated to R_s) are logged through
        TRL's `log_metric` hook when it is offered.
        """

        def gated_reward(prompts, completions, is_safety=None, log_metric=None, **kwargs) -> list[float]:
            if is_safety is None:
                raise ValueError("the gated reward needs an `is_safety` column in the training dataset")
            texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
            comp = self.components(list(prompts), texts, [bool(s) for s in is_safety])
            n = len(comp.gated)
            if log_metric is not None and n:
                log_metric("gated/r_c", sum(comp.gated) / n)
                log_metric("gated/r_s", sum(comp.safety) / n)
                log_metric("gated/used_safety", sum(comp.used_safety) / n)
            r_c = torch.tensor(comp.gated, dtype=torch.float64)
            return shape_reward(r_c, self.whitening, self.eps).tolist() if n else []

        return gated_reward


def _checked(scores: Sequence[float], name: str, n: int) -> list[float]:
    scores = [float(s) for s in scores]
    if len(scores) != n:
        raise ValueError(f"{name}.score returned {len(scores)} scores for {n} responses")
    bad = [s for s in scores if not (0.0 <= s <= 1.0)]
    if bad:
        raise ValueError(f"{name}.score must return σ(r) in [0, 1]; found {bad[0]!r}")
    return scores
