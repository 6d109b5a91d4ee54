"""PPO with a critic, as Llama 2 ran it on top of rejection sampling (§3.2.3); TRL no longer ships one.

One PPO iteration, read top to bottom in `train_ppo`:

    rollout   sample one response per prompt from π_θ (batch_size prompts, temperature T)
    score     raw reward (R_c for the gated reward) → shaped R̃_c = WHITEN(LOGIT(R_c)), WHITEN over the batch
              (Llama 2), over all batches so far, or over each prompt class apart (`whitening`)
    penalise  r_t = −β·(log π_θ − log π_0)(a_t|s_t) + [t = T]·R̃_c            (Eq. 4, per token)
    GAE       δ_t = r_t + γV(s_{t+1}) − V(s_t),  Â_t = Σ_l (γλ)^l δ_{t+l},  returns = Â + V
    update    ppo_epochs × mini-batches: clipped policy objective, clipped value loss, one AdamW step
              per mini-batch for each of policy and value model

The reference π_0 is the frozen starting policy: with LoRA it is the same network with the adapter
disabled, so no second copy is held. The value model is a reward model (AutoModelForSequenceClassification,
num_labels=1) whose `score` head is applied to every position's hidden state to give per-token values.

Runs stop early when the rollout KL to π_0 passes `max_kl` or the held-out reward has not improved for
`patience` evaluations (the best held-out policy is the one exported). With a `work_dir`, the whole
training state is checkpointed atomically every `save_every` iterations and a re-run resumes from it,
reproducing the uninterrupted run exactly on CPU.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from safealign.data.records import Example
from safealign.errors import SafealignError
from safealign.io import atomic_path, write_json
from safealign.train.gated_reward import (
    RunningWhitener,
    kl_penalized_rewards,
    logit,
    whiten,
    whiten_by_group,
)

log = logging.getLogger(__name__)

Conversation = list[dict[str, str]]
RewardFn = Callable[[list[Conversation], list[str], list[bool]], Sequence[float]]
"""(prompts, responses, is_safety) → one raw reward per response; a `GatedReward` returns R_c in [0, 1]."""


@dataclass
class PPOStageConfig:
    """PPO settings. Defaults are sized for the 135M embedded model on 2 CPU cores: one iteration of
    8 rollouts × 48 tokens with LoRA took ~30 s of CPU time (105 s wall on a machine shared 8 ways), so
    the defaults (16 × 64) cost roughly 1–1.5 min per iteration there.

    Llama 2's GPU settings (70B, §3.2.3): learning_rate 1e-6, batch_size 512, mini_batch_size 64 (one
    gradient step each, so 8 per iteration), clip 0.2, kl_beta 0.01 for 7B/13B and 0.005 for 34B/70B,
    AdamW β = (0.9, 0.95), eps 1e-5, weight decay 0.1, gradient clip 1.0, 200–400 iterations with early
    stopping on held-out prompts. `configs/` carries them in the GPU recipe.
    """

    steps: int = 8
    """PPO iterations (rollout + update). Llama 2 ran 200–400; 8 × 16 rollouts fit the CPU recipe's time budget."""
    batch_size: int = 16
    """Prompts (one response each) per iteration. Llama 2: 512."""
    mini_batch_size: int = 4
    """Rollouts per gradient step; batch_size / mini_batch_size steps per PPO epoch. Llama 2: 64 (8 steps)."""
    micro_batch_size: int = 4
    """Rows per forward/backward; gradients accumulate up to a mini-batch. Lower it when a mini-batch does not fit."""
    forward_batch_size: int = 16
    """Rows per no-grad pass (generation, log-probs, values) while collecting rollouts."""
    ppo_epochs: int = 1
    """Passes over each rollout batch. Llama 2 says one gradient step per mini-batch; more epochs re-use data."""
    learning_rate: float = 1e-5
    """Policy AdamW rate, constant. LoRA on 135M needs more than Llama 2's 1e-6 (full fine-tuning of 7B–70B)."""
    value_learning_rate: float = 1e-5
    """Value-model AdamW rate, constant; separate optimiser because the value model is a separate network."""
    adam_betas: tuple[float, float] = (0.9, 0.95)
    """Llama 2's AdamW β1, β2."""
    adam_eps: float = 1e-5
    """Llama 2's AdamW epsilon."""
    weight_decay: float = 0.1
    """Llama 2's AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip per model (Llama 2: 1.0)."""
    kl_beta: float = 0.01
    """β in R̃_c − β·KL(π_θ‖π_0). Llama 2: 0.01 for 7B/13B, 0.005 for 34B/70B."""
    gamma: float = 1.0
    """GAE discount γ; 1 because the only non-KL reward arrives at the last token (paper: not given)."""
    lam: float = 0.95
    """GAE λ; the usual RLHF value (InstructGPT, TRL's former PPO); the paper does not give it."""
    cliprange: float = 0.2
    """PPO policy clip ε: ratio clipped to [1 − ε, 1 + ε] (Llama 2: 0.2)."""
    cliprange_value: float = 0.2
    """Value clip: V clipped to V_old ± this before the squared error (TRL's former default)."""
    whiten_advantages: bool = True
    """Whiten Â over the batch's response tokens before the update."""
    reward_shaping: str = "logit_whiten"
    """How raw rewards become the scalar score: `logit_whiten` (Llama 2, for σ-scores in [0, 1]), `whiten`, `none`."""
    whitening: str = "batch"
    """Statistics for WHITEN: `batch` (per rollout batch, default), `running` (all batches so far) or `class`
    (per rollout batch, safety and other prompts apart: the two reward models score on different scales)."""
    temperature: float = 1.0
    """Rollout sampling temperature; log-probs use the same temperature so the ratio is on-policy (paper: not given)."""
    top_p: float = 1.0
    """Rollout nucleus sampling; below 1 the sampler differs from π_θ and the ratio is biased, so keep 1."""
    max_new_tokens: int = 64
    """Response cap. A refusal or short answer fits; truncated responses still get their score at the last token."""
    max_prompt_tokens: int = 256
    """Prompts longer than this (after the chat template) are skipped with a warning."""
    max_kl: float | None = 8.0
    """Stop when a rollout batch's mean sequence KL(π_θ‖π_0) (nats) exceeds this; None disables."""
    eval_every: int = 4
    """Held-out evaluation period in iterations (also run before the first); needs held-out prompts."""
    heldout_temperature: float = 0.0
    """Held-out decoding: 0 is greedy, as the evaluation decodes, so a held-out change comes from the policy alone;
    above 0 it samples (one fixed draw per evaluation)."""
    patience: int = 2
    """Stop after this many held-out evaluations without a new best; the best policy is exported."""
    min_improvement: float = 0.0
    """A held-out mean reward must beat the best by more than this to count as improved."""
    lora: bool = True
    """Train LoRA adapters (policy and value model); the reference is the adapter-disabled base. False: full FT."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    """0: dropout would make π_θ differ between rollout and update at the same weights, biasing the ratio."""
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                     "gate_proj", "up_proj", "down_proj"])
    lora_layers: int | None = None
    """Adapters on the top N decoder layers of the policy and the value model (None: all); the backward pass
    stops at the lowest adapted layer, as in SFT (`sft.lora_layers`)."""
    save_every: int = 2
    """Checkpoint period in iterations (needs a work_dir); a killed run resumes from the last checkpoint."""
    save_value_model: bool = False
    """Also export the trained value model (to continue PPO later); off because it doubles the disk use."""
    seed: int = 0
    device: str = "auto"
    report_to: list[str] = field(default_factory=list)
    """`tensorboard` adds event files under work_dir/tensorboard; the CSV log is always written."""

    def __post_init__(self):
        if self.batch_size % self.mini_batch_size or self.mini_batch_size % self.micro_batch_size:
            raise SafealignError(f"ppo: batch_size ({self.batch_size}) must be a multiple of mini_batch_size "
                                 f"({self.mini_batch_size}), itself a multiple of micro_batch_size "
                                 f"({self.micro_batch_size})")
        if self.reward_shaping not in ("logit_whiten", "whiten", "none"):
            raise SafealignError(f"ppo.reward_shaping: expected logit_whiten, whiten or none, found "
                                 f"{self.reward_shaping!r}")
        if self.whitening not in ("batch", "running", "class"):
            raise SafealignError(f"ppo.whitening: expected batch, running or class, found {self.whitening!r}")
        if self.temperature <= 0:
            raise SafealignError(f"ppo.temperature must be > 0 (PPO samples), found {self.temperature}")
        if self.heldout_temperature < 0:
            raise SafealignError(f"ppo.heldout_temperature must be ≥ 0 (0: greedy), found {self.heldout_temperature}")


# Fields that do not change the training trajectory, so a run may resume with them changed.
_RESUMABLE_CHANGES = {"steps", "save_every", "report_to", "save_value_model", "device"}


# ---------------------------------------------------------------- math (pure functions on tensors)

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                   lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over right-padded response tokens.

        δ_t = r_t + γ·V(s_{t+1}) − V(s_t),   V(s_{T+1}) = 0 after the last real token
        Â_t = δ_t + γλ·Â_{t+1}  (= Σ_l (γλ)^l δ_{t+l}),   returns R_t = Â_t + V(s_t)

    Shapes [B, T]; padding positions get Â = 0. Hand-worked, one row, r = [0, 0, 1], V = [0.5, 0.5, 0.5],
    γ = 0.9, λ = 0.5: δ = [−0.05, −0.05, 0.5], Â = [0.02875, 0.175, 0.5], R = [0.52875, 0.675, 1.0].
    """
    mask = mask.to(values.dtype)
    T = rewards.shape[1]
    advantages = torch.zeros_like(values)
    next_adv = torch.zeros_like(values[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] * mask[:, t + 1] if t + 1 < T else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = (delta + gamma * lam * next_adv) * mask[:, t]
        advantages[:, t] = next_adv
    returns = (advantages + values) * mask
    return advantages, returns


def clipped_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, cliprange: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (Schulman et al. 2017), as a loss to minimise, averaged over response tokens:

        ρ_t = exp(log π_θ(a_t|s_t) − log π_old(a_t|s_t))
        L   = −E_t[ min(ρ_t·Â_t, clip(ρ_t, 1 − ε, 1 + ε)·Â_t) ]

    Also returns `clip_frac` (share of tokens where the clipped term binds) and `approx_kl`
    (E[½(log ρ)²], the drift from π_old). Hand-worked, ε = 0.2: ρ = 1.5, Â = 1 → 1.2 (clipped);
    ρ = 1.5, Â = −1 → 1.5; ρ = 0.5, Â = 1 → −0.5; ρ = 0.5, Â = −1 → 0.8 (clipped).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clip_frac": masked_mean((clipped > unclipped).to(logprobs.dtype), mask),
                 "approx_kl": masked_mean(0.5 * log_ratio ** 2, mask)}
    return loss, stats


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       mask: torch.Tensor, cliprange_value: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss (PPO2 / TRL's former PPO), averaged over response tokens:

        V_clip = V_old + clip(V − V_old, −ε_v, ε_v)
        L_V    = ½·E_t[ max((V − R)², (V_clip − R)²) ]

    Hand-worked, ε_v = 0.2: V = 2, V_old = 1, R = 1.5 → V_clip = 1.2, max(0.25, 0.09) → 0.125;
    V = 0.9, V_old = 1, R = 3 → V_clip = 0.9, → ½·4.41 = 2.205.
    """
    v_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    err, err_clipped = (values - returns) ** 2, (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        stats = {"value_clip_frac": masked_mean((err_clipped > err).to(values.dtype), mask)}
    return loss, stats


# ---------------------------------------------------------------- models

def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # Generation counts positions from the first attended token; the forward passes must agree.
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int,
                   temperature: float) -> torch.Tensor:
    """log π(a_t | s_t) for the response tokens `input_ids[:, response_start:]`, logits divided by T: [B, R]."""
    n_resp = input_ids.shape[1] - response_start
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=_position_ids(attention_mask),
                logits_to_keep=n_resp + 1, use_cache=False)
    logits = out.logits[:, :-1].float() / temperature
    targets = input_ids[:, response_start:].unsqueeze(-1)
    return logits.gather(-1, targets).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _value_parts(value_model):
    inner = value_model.get_base_model() if hasattr(value_model, "get_base_model") else value_model
    return getattr(inner, inner.base_model_prefix), inner.score


def token_values(value_model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 response_start: int) -> torch.Tensor:
    """V(s_t) before each response token: the RM's `score` head on every position's hidden state: [B, R]."""
    backbone, head = _value_parts(value_model)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask,
                      position_ids=_position_ids(attention_mask), use_cache=False).last_hidden_state
    return head(hidden[:, response_start - 1:-1]).squeeze(-1).float()


def _disable_dropout(model) -> None:
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def load_value_model(spec: str | Path, device: str = "auto"):
    """A reward-model checkpoint (or any causal LM, with a new random head) as AutoModelForSequenceClassification."""
    from transformers import AutoModelForSequenceClassification

    from safealign.models.loading import choose_device, choose_dtype, resolve_model_path

    dev = choose_device(device)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            resolve_model_path(spec), num_labels=1, dtype=choose_dtype(dev))
    except OSError as e:
        raise SafealignError(f"{spec}: cannot load value model ({str(e).splitlines()[0]})") from None
    return model.to(dev)


def _lora(model, cfg: PPOStageConfig, task_type: str):
    from peft import LoraConfig, get_peft_model

    from safealign.train.sft import top_layers

    return get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                            target_modules=cfg.lora_target_modules, task_type=task_type,
                                            layers_to_transform=top_layers(model, cfg.lora_layers)))


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable(model, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in state]
    if missing:
        raise SafealignError(f"checkpoint lacks trainable parameter {missing[0]} (and {len(missing) - 1} more)")
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))


# ---------------------------------------------------------------- rollouts

@dataclass
class Rollout:
    """One iteration's batch: prompt left-padded to P columns, response right-padded to R columns."""

    input_ids: torch.Tensor        # [B, P + R]
    attention_mask: torch.Tensor   # [B, P + R]
    response_mask: torch.Tensor    # [B, R]: 1 up to and including the first end-of-turn token
    prompt_lens: list[int]
    response_lens: list[int]
    texts: list[str]
    P: int

    def rows(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        """The rows `idx` trimmed to their own widths: (input_ids, attention_mask, response_start, n_resp)."""
        p = max(self.prompt_lens[i] for i in idx)
        r = max(self.response_lens[i] for i in idx)
        cols = slice(self.P - p, self.P + r)
        return self.input_ids[idx, cols], self.attention_mask[idx, cols], p, r


def _as_prompts(items: Sequence[Example | tuple[Conversation | str, bool]]) -> list[tuple[Conversation, bool]]:
    out = []
    for it in items:
        if isinstance(it, Example):
            out.append((it.conversation(), it.is_safety))
        else:
            conv, flag = it
            out.append(([{"role": "user", "content": conv}] if isinstance(conv, str) else list(conv), bool(flag)))
    return out


def _encode(tokenizer, conv: Conversation) -> list[int]:
    ids = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


@torch.no_grad()
def generate_rollout(policy, tokenizer, prompts: list[list[int]], cfg: PPOStageConfig, eos_ids: list[int],
                     temperature: float | None = None) -> Rollout:
    """Sample one response per encoded prompt (greedy at temperature 0); keep tokens up to and including the
    first end-of-turn token."""
    device = next(policy.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    temperature = cfg.temperature if temperature is None else temperature
    responses: list[list[int]] = []
    policy.eval()
    for start in range(0, len(prompts), cfg.forward_batch_size):
        chunk = prompts[start:start + cfg.forward_batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        am = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, p in enumerate(chunk):
            ids[row, width - len(p):] = torch.tensor(p)
            am[row, width - len(p):] = 1
        sampling = {"do_sample": True, "temperature": temperature, "top_p": cfg.top_p, "top_k": 0} \
            if temperature > 0 else {"do_sample": False}
        gen = policy.generate(input_ids=ids.to(device), attention_mask=am.to(device), **sampling,
                              max_new_tokens=cfg.max_new_tokens, eos_token_id=eos_ids, pad_token_id=pad)
        for row in gen[:, width:].tolist():
            end = next((j + 1 for j, t in enumerate(row) if t in eos_ids), len(row))
            responses.append(row[:end] or [eos_ids[0]])
    P, R = max(len(p) for p in prompts), max(len(r) for r in responses)
    B = len(prompts)
    input_ids = torch.full((B, P + R), pad, dtype=torch.long)
    attention = torch.zeros((B, P + R), dtype=torch.long)
    response_mask = torch.zeros((B, R), dtype=torch.long)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        input_ids[b, P - len(p):P] = torch.tensor(p)
        input_ids[b, P:P + len(r)] = torch.tensor(r)
        attention[b, P - len(p):P + len(r)] = 1
        response_mask[b, :len(r)] = 1
    texts = [tokenizer.decode([t for t in r if t not in eos_ids], skip_special_tokens=True).strip()
             for r in responses]
    return Rollout(input_ids.to(device), attention.to(device), response_mask.to(device),
                   [len(p) for p in prompts], [len(r) for r in responses], texts, P)


@torch.no_grad()
def _score_pass(rollout: Rollout, fn: Callable[..., torch.Tensor], batch: int) -> torch.Tensor:
    """Run `fn(input_ids, attention_mask, response_start)` in trimmed chunks; reassemble to [B, R]."""
    B, R = rollout.response_mask.shape
    out = torch.zeros((B, R), device=rollout.response_mask.device)
    for start in range(0, B, batch):
        idx = list(range(start, min(B, start + batch)))
        ids, am, p, r = rollout.rows(idx)
        out[idx, :r] = fn(ids, am, p).to(out.device)
    return out


# ---------------------------------------------------------------- checkpoint and log

_LOG_FIELDS = ["step", "reward", "reward_std", "score", "kl", "non_score_reward", "policy_loss", "value_loss",
               "clip_frac", "value_clip_frac", "approx_kl", "response_length", "truncated_frac", "returns",
               "advantage_std", "heldout_reward", "seconds"]


class _Log:
    """CSV per iteration (always) plus TensorBoard when asked; a resume truncates rows past the checkpoint."""

    def __init__(self, path: Path, report_to: list[str], resume_step: int):
        self.path = path
        rows = []
        if resume_step and path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=_LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)
        self.tb = None
        if "tensorboard" in report_to:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise SafealignError("ppo.report_to has tensorboard but it is not installed: "
                                     "pip install 'safealign[tracking]'") from None
            self.tb = SummaryWriter(str(path.parent / "tensorboard"), purge_step=resume_step + 1)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=_LOG_FIELDS).writerow({k: row.get(k, "") for k in _LOG_FIELDS})
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(f"ppo/{k}", v, row["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _config_diff(saved: dict, now: dict) -> list[str]:
    return [k for k in sorted(set(saved) | set(now))
            if k not in _RESUMABLE_CHANGES and saved.get(k) != now.get(k)]


# ---------------------------------------------------------------- the loop

def _data_batch(n: int, position: int, size: int, seed: int) -> list[int]:
    """Prompt indices [position, position + size) of an endless stream of seeded per-epoch permutations."""
    out = []
    for p in range(position, position + size):
        epoch, i = divmod(p, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        out.append(int(perm[i]))
    return out


def train_ppo(policy_spec: str | Path | None, prompts: Sequence[Example | tuple[Conversation | str, bool]],
              reward: RewardFn, out_dir: str | Path, cfg: PPOStageConfig, *,
              value_model_spec: str | Path | None = None,
              heldout: Sequence[Example | tuple[Conversation | str, bool]] | None = None,
              work_dir: str | Path | None = None, policy=None, tokenizer=None, value_model=None,
              on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Run PPO from `policy_spec` (or the given `policy`/`tokenizer`) on `prompts`; return metrics.

    `reward(prompts, responses, is_safety)` gives the raw reward (R_c in [0, 1] from a `GatedReward`),
    shaped per `cfg.reward_shaping`. The value model comes from `value_model_spec` (a reward-model
    directory), or `value_model`, or else the policy checkpoint with a fresh head. `heldout` prompts drive
    early stopping. `work_dir` (must outlive a crash: not inside an atomic stage directory) holds
    `checkpoint.pt`, `log.csv` and `tensorboard/`; an existing checkpoint is resumed. `on_step(step, row)`
    is called after each iteration is logged and before it is checkpointed (progress display; the tests
    raise from it to simulate a kill).

    Writes `out_dir/model/` (the policy, LoRA merged), `out_dir/log.csv`, `out_dir/metrics.json`,
    and `out_dir/value_model/` when `cfg.save_value_model`.
    """
    import tempfile

    from safealign.generation.hf import _stop_ids
    from safealign.models.loading import load_model

    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    tmp_work = None
    if work_dir is None:
        tmp_work = tempfile.TemporaryDirectory(prefix="safealign-ppo-")
        work_dir = tmp_work.name
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = work_dir / "checkpoint.pt"

    # ---- setup: policy, reference, value model, optimisers
    if policy is None:
        policy, tokenizer = load_model(policy_spec, device=cfg.device, for_training=True)
    if value_model is None:
        source = value_model_spec if value_model_spec is not None else policy_spec
        if source is None:
            raise SafealignError("ppo: give value_model_spec (a reward model) or a value_model")
        if value_model_spec is None:
            log.warning("ppo: no value model given; starting from the policy with a random value head")
        value_model = load_value_model(source, cfg.device)
    device = next(policy.parameters()).device
    value_model.to(device)
    if value_model.config.num_labels != 1:
        raise SafealignError(f"value model must have one output (num_labels=1), found {value_model.config.num_labels}")
    if value_model.config.vocab_size < len(tokenizer):
        raise SafealignError(f"value model vocabulary ({value_model.config.vocab_size}) is smaller than the "
                             f"policy tokenizer's ({len(tokenizer)}): the reward model must share the tokenizer")
    _disable_dropout(policy)
    _disable_dropout(value_model)
    reference = None
    if cfg.lora:
        torch.manual_seed(cfg.seed)  # LoRA's A matrices: the same run whatever this process drew before
        policy, value_model = _lora(policy, cfg, "CAUSAL_LM"), _lora(value_model, cfg, "SEQ_CLS")
    else:
        reference = copy.deepcopy(policy).eval().requires_grad_(False)
    opt_args = {"betas": tuple(cfg.adam_betas), "eps": cfg.adam_eps, "weight_decay": cfg.weight_decay}
    policy_params = [p for p in policy.parameters() if p.requires_grad]
    value_params = [p for p in value_model.parameters() if p.requires_grad]
    policy_opt = torch.optim.AdamW(policy_params, lr=cfg.learning_rate, **opt_args)
    value_opt = torch.optim.AdamW(value_params, lr=cfg.value_learning_rate, **opt_args)
    whitener = RunningWhitener() if cfg.whitening == "running" else None
    eos_ids = _stop_ids(tokenizer, policy)

    # ---- data
    train = _encode_prompts(tokenizer, _as_prompts(prompts), cfg.max_prompt_tokens, "prompts")
    held = _encode_prompts(tokenizer, _as_prompts(heldout or []), cfg.max_prompt_tokens, "heldout")
    if not train:
        raise SafealignError("ppo: no training prompts")
    data_fingerprint = hashlib.sha256(json.dumps([[(p[0], p[2]) for p in train], [(p[0], p[2]) for p in held]])
                                      .encode()).hexdigest()[:16]

    # ---- state (fresh, or resumed from the checkpoint)
    cfg_dict = json.loads(json.dumps(asdict(cfg)))  # tuples as lists: a YAML-built config compares equal
    state: dict[str, Any] = {"step": 0, "data_position": 0, "best_heldout": -math.inf, "best_step": 0,
                             "evals_since_best": 0, "heldout_history": [], "best_policy": None, "stopped": None}
    if ckpt_path.exists():
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        diff = _config_diff(saved["config"], cfg_dict)
        if diff or saved["data"] != data_fingerprint:
            what = f"config fields {', '.join(diff)}" if diff else "the prompts"
            raise SafealignError(f"{ckpt_path}: checkpoint was written with different {what}; "
                                 f"delete it to start over")
        _load_trainable(policy, saved["policy"])
        _load_trainable(value_model, saved["value_model"])
        policy_opt.load_state_dict(saved["policy_opt"])
        value_opt.load_state_dict(saved["value_opt"])
        if whitener is not None:
            whitener.load_state_dict(saved["whitener"])
        _set_rng_state(saved["rng"])
        state = saved["state"]
        log.info("ppo: resumed from %s at step %d", ckpt_path, state["step"])
    logger = _Log(work_dir / "log.csv", cfg.report_to, state["step"])

    def save_checkpoint() -> None:
        with atomic_path(ckpt_path) as tmp:
            torch.save({"config": cfg_dict, "data": data_fingerprint, "policy": _trainable(policy),
                        "value_model": _trainable(value_model), "policy_opt": policy_opt.state_dict(),
                        "value_opt": value_opt.state_dict(),
                        "whitener": whitener.state_dict() if whitener is not None else None,
                        "rng": _rng_state(), "state": state}, tmp)

    def evaluate_heldout() -> float:
        torch.manual_seed(cfg.seed + 7919)  # the same draw every evaluation: changes come from the policy
        ro = generate_rollout(policy, tokenizer, [p for p, _, _ in held], cfg, eos_ids, cfg.heldout_temperature)
        scores = reward([c for _, c, _ in held], ro.texts, [f for _, _, f in held])
        return float(torch.tensor(list(scores), dtype=torch.float64).mean())

    if held and state["step"] == 0 and not state["heldout_history"]:
        r0 = evaluate_heldout()
        state.update(best_heldout=r0, best_step=0, heldout_history=[(0, r0)], best_policy=_trainable(policy))
        log.info("ppo: held-out reward before training %.4f", r0)

    ref_ctx = policy.disable_adapter if cfg.lora else None

    def ref_logprobs(ids, am, p):
        if reference is not None:
            return token_logprobs(reference, ids, am, p, cfg.temperature)
        with ref_ctx():
            return token_logprobs(policy, ids, am, p, cfg.temperature)

    # ---- iterations
    while state["step"] < cfg.steps and state["stopped"] is None:
        t0 = time.perf_counter()
        step = state["step"] + 1
        torch.manual_seed(cfg.seed * 1_000_003 + step)  # each iteration's draws depend only on (seed, step)
        idx = _data_batch(len(train), state["data_position"], cfg.batch_size, cfg.seed)
        batch = [train[i] for i in idx]
        convs, flags = [b[1] for b in batch], [b[2] for b in batch]

        # rollout and score
        ro = generate_rollout(policy, tokenizer, [b[0] for b in batch], cfg, eos_ids)
        raw = torch.tensor(list(reward(convs, ro.texts, flags)), dtype=torch.float64)
        if raw.shape != (len(batch),) or not torch.isfinite(raw).all():
            raise SafealignError(f"ppo: reward returned {raw.tolist()[:4]}... for {len(batch)} responses; "
                                 "expected one finite number each")
        score = logit(raw) if cfg.reward_shaping == "logit_whiten" else raw
        if cfg.reward_shaping != "none":
            if whitener is not None:
                score = whitener(score)
            elif cfg.whitening == "class":
                score = whiten_by_group(score, torch.tensor(flags))
            else:
                score = whiten(score)
        score = score.float().to(device)
        policy.eval()
        value_model.eval()
        mask = ro.response_mask.float()
        old_lp = _score_pass(ro, lambda i, a, p: token_logprobs(policy, i, a, p, cfg.temperature),
                             cfg.forward_batch_size) * mask
        ref_lp = _score_pass(ro, ref_logprobs, cfg.forward_batch_size) * mask
        old_values = _score_pass(ro, lambda i, a, p: token_values(value_model, i, a, p), cfg.forward_batch_size) * mask
        rewards, kl = kl_penalized_rewards(score, old_lp, ref_lp, mask, cfg.kl_beta)
        advantages, returns = gae_advantages(rewards, old_values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            advantages = whiten(advantages, mask)

        # update
        policy.train()
        value_model.train()
        stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "clip_frac",
                                                         "value_clip_frac", "approx_kl")}
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(len(batch)).tolist()
            for m0 in range(0, len(batch), cfg.mini_batch_size):
                mini = order[m0:m0 + cfg.mini_batch_size]
                n_tokens = mask[mini].sum().clamp(min=1)
                policy_opt.zero_grad(set_to_none=True)
                value_opt.zero_grad(set_to_none=True)
                acc = {k: 0.0 for k in stats}
                for u0 in range(0, len(mini), cfg.micro_batch_size):
                    micro = mini[u0:u0 + cfg.micro_batch_size]
                    ids, am, p, r = ro.rows(micro)
                    m = mask[micro, :r]
                    share = float(m.sum() / n_tokens)  # token-weighted, so micro-batching equals one pass
                    new_lp = token_logprobs(policy, ids, am, p, cfg.temperature)
                    pg_loss, pg_stats = clipped_policy_loss(new_lp, old_lp[micro, :r], advantages[micro, :r],
                                                            m, cfg.cliprange)
                    (pg_loss * share).backward()
                    new_v = token_values(value_model, ids, am, p)
                    vf_loss, vf_stats = clipped_value_loss(new_v, old_values[micro, :r], returns[micro, :r],
                                                           m, cfg.cliprange_value)
                    (vf_loss * share).backward()
                    for k, v in (("policy_loss", pg_loss), ("value_loss", vf_loss), *pg_stats.items(),
                                 *vf_stats.items()):
                        acc[k] += float(v.detach()) * share
                torch.nn.utils.clip_grad_norm_(policy_params, cfg.max_grad_norm)
                torch.nn.utils.clip_grad_norm_(value_params, cfg.max_grad_norm)
                policy_opt.step()
                value_opt.step()
                for k, v in acc.items():
                    stats[k].append(v)

        seq_kl = kl.sum(1)
        row: dict[str, Any] = {
            "step": step, "reward": float(raw.mean()), "reward_std": float(raw.std(correction=0)),
            "score": float(score.mean()), "kl": float(seq_kl.mean()),
            "non_score_reward": float((-cfg.kl_beta * seq_kl).mean()),
            **{k: sum(v) / len(v) for k, v in stats.items()},
            "response_length": sum(ro.response_lens) / len(batch),
            "truncated_frac": sum(1 for i in range(len(batch)) if int(ro.input_ids[i, ro.P + ro.response_lens[i] - 1])
                                  not in eos_ids) / len(batch),
            "returns": float(masked_mean(returns, mask)), "advantage_std": float(advantages[mask.bool()].std()),
        }
        state["step"], state["data_position"] = step, state["data_position"] + cfg.batch_size

        # early stopping
        if cfg.max_kl is not None and row["kl"] > cfg.max_kl:
            state["stopped"] = f"kl {row['kl']:.3f} > max_kl {cfg.max_kl} at step {step}"
        if held and step % cfg.eval_every == 0:
            r = evaluate_heldout()
            row["heldout_reward"] = r
            state["heldout_history"].append((step, r))
            if r > state["best_heldout"] + cfg.min_improvement:
                state.update(best_heldout=r, best_step=step, evals_since_best=0, best_policy=_trainable(policy))
            else:
                state["evals_since_best"] += 1
                if state["evals_since_best"] >= cfg.patience and state["stopped"] is None:
                    state["stopped"] = (f"held-out reward did not improve on {state['best_heldout']:.4f} "
                                        f"(step {state['best_step']}) for {cfg.patience} evaluations")
        row["seconds"] = time.perf_counter() - t0
        logger.write(row)
        log.info("ppo step %d: reward %.4f kl %.3f clip %.3f len %.1f (%.1fs)", step, row["reward"], row["kl"],
                 row["clip_frac"], row["response_length"], row["seconds"])
        if on_step is not None:
            on_step(step, row)
        if step % cfg.save_every == 0 or state["stopped"] is not None or step == cfg.steps:
            save_checkpoint()
    logger.close()

    # ---- export: the best held-out policy when held-out prompts were given, else the last
    if held and state["best_policy"] is not None and state["best_step"] != state["step"]:
        _load_trainable(policy, state["best_policy"])
    final = policy.merge_and_unload() if cfg.lora else policy
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        final.generation_config.pad_token_id = tokenizer.pad_token_id
        final.save_pretrained(tmp / "model", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "model")
        if cfg.save_value_model:
            vm = value_model.merge_and_unload() if cfg.lora else value_model
            vm.save_pretrained(tmp / "value_model", safe_serialization=True)
        (tmp / "log.csv").write_bytes((work_dir / "log.csv").read_bytes())
        with open(work_dir / "log.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        metrics = {
            "steps": state["step"], "stopped_early": state["stopped"], "exported_step": (
                state["best_step"] if held else state["step"]),
            "reward_first": float(rows[0]["reward"]) if rows else None,
            "reward_last": float(rows[-1]["reward"]) if rows else None,
            "kl_last": float(rows[-1]["kl"]) if rows else None,
            "heldout_history": state["heldout_history"],
            "heldout_before": state["heldout_history"][0][1] if state["heldout_history"] else None,
            "heldout_best": state["best_heldout"] if held else None,
            "prompts": len(train), "heldout_prompts": len(held),
            "seconds_per_step": (sum(float(r["seconds"]) for r in rows) / len(rows)) if rows else None,
            "seconds_this_invocation": time.perf_counter() - t_start, "config": cfg_dict,
        }
        write_json(tmp / "metrics.json", metrics)
    if tmp_work is not None:
        tmp_work.cleanup()
    return metrics


def _encode_prompts(tokenizer, prompts: list[tuple[Conversation, bool]], max_tokens: int,
                    what: str) -> list[tuple[list[int], Conversation, bool]]:
    out, skipped = [], 0
    for conv, flag in prompts:
        ids = _encode(tokenizer, conv)
        if len(ids) > max_tokens:
            skipped += 1
            continue
        out.append((ids, conv, flag))
    if skipped:
        log.warning("ppo: skipped %d %s longer than max_prompt_tokens=%d", skipped, what, max_tokens)
    return out

