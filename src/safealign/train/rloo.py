"""RLOO through TRL's RLOOTrainer with Llama 2's gated reward: the critic-free alternative to our PPO.

REINFORCE with a leave-one-out baseline (Ahmadian et al. 2024): K completions per prompt, each one's
advantage is its reward minus the mean reward of its K − 1 siblings, so no value model is trained.
The reward is the same gated reward PPO uses, passed to TRL as a reward function; the dataset's
`is_safety` column reaches it as a keyword argument. TRL applies β·KL(π_θ‖π_0) at the sequence level
(the summed per-token log-ratio, subtracted from the reward), not per token as our PPO does.
"""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from safealign.data.records import Example
from safealign.errors import SafealignError
from safealign.io import atomic_path, write_json
from safealign.models.loading import choose_device, load_model

log = logging.getLogger(__name__)


@dataclass
class RLOOStageConfig:
    """RLOO settings; defaults sized for the 135M embedded model on 2 CPU cores."""

    steps: int = 12
    """Optimiser steps (TRL max_steps)."""
    num_generations: int = 4
    """K completions per prompt; the leave-one-out baseline needs K ≥ 2."""
    batch_size: int = 16
    """Completions per optimiser step (TRL per_device_train_batch_size): batch_size / K prompts per step."""
    grad_accum: int = 1
    learning_rate: float = 1e-5
    """Constant AdamW rate; LoRA on 135M needs more than Llama 2's PPO 1e-6."""
    kl_beta: float = 0.01
    """β for the sequence-level KL penalty in the reward (TRL's `beta`); Llama 2's PPO β for 7B/13B."""
    temperature: float = 1.0
    max_new_tokens: int = 64
    """TRL max_completion_length."""
    normalize_advantages: bool = False
    """Whiten advantages across the batch (TRL option); the gated reward is already whitened."""
    lora: bool = True
    """LoRA adapters, merged on export; the reference is the adapter-disabled base (no second model)."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                     "gate_proj", "up_proj", "down_proj"])
    max_grad_norm: float = 1.0
    save_every: int = 4
    """Trainer checkpoint period in steps when a work_dir is given; a re-run resumes from the last one."""
    logging_steps: int = 1
    seed: int = 0
    device: str = "auto"
    report_to: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.num_generations < 2:
            raise SafealignError(f"rloo.num_generations must be ≥ 2 (leave-one-out), found {self.num_generations}")
        if self.batch_size % self.num_generations:
            raise SafealignError(f"rloo.batch_size ({self.batch_size}) must be a multiple of num_generations "
                                 f"({self.num_generations})")


def rloo_dataset(prompts: Sequence[Example | tuple[list[dict] | str, bool]]):
    """A datasets.Dataset with a conversational `prompt` column and the `is_safety` column the gate reads."""
    from datasets import Dataset

    rows = []
    for p in prompts:
        if isinstance(p, Example):
            conv, flag = p.conversation(), p.is_safety
        else:
            conv, flag = p
            conv = [{"role": "user", "content": conv}] if isinstance(conv, str) else list(conv)
        rows.append({"prompt": conv, "is_safety": bool(flag)})
    return Dataset.from_list(rows)


def rloo_config(cfg: RLOOStageConfig, output_dir: str | Path, save: bool):
    """TRL's RLOOConfig with dtype and checkpointing chosen by device (its bf16 + checkpointing defaults are
    ~18x slower on our CPUs)."""
    from trl import RLOOConfig

    on_gpu = choose_device(cfg.device).type == "cuda"
    return RLOOConfig(
        output_dir=str(output_dir), max_steps=cfg.steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, num_generations=cfg.num_generations,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_p=1.0, top_k=0,
        learning_rate=cfg.learning_rate, lr_scheduler_type="constant", beta=cfg.kl_beta,
        normalize_advantages=cfg.normalize_advantages, max_grad_norm=cfg.max_grad_norm, disable_dropout=True,
        bf16=on_gpu and torch.cuda.is_bf16_supported(), fp16=False, use_cpu=not on_gpu,
        gradient_checkpointing=on_gpu, save_strategy="steps" if save else "no", save_steps=cfg.save_every,
        report_to=cfg.report_to, logging_steps=cfg.logging_steps, seed=cfg.seed, data_seed=cfg.seed,
        dataloader_num_workers=0, disable_tqdm=True,
    )


def train_rloo(model_spec: str | Path | None, prompts: Sequence[Example | tuple[list[dict] | str, bool]],
               reward: Any, out_dir: str | Path, cfg: RLOOStageConfig, *, work_dir: str | Path | None = None,
               model=None, tokenizer=None) -> dict:
    """RLOO-train `model_spec` (or `model`/`tokenizer`) on `prompts` with `reward`; return metrics.

    `reward` is a `GatedReward` (its `reward_func()` gives TRL the shaped R̃_c) or any TRL reward function
    `(prompts, completions, is_safety, **kwargs) -> list[float]`. `work_dir` keeps Trainer checkpoints so
    a killed run resumes. Writes `out_dir/model/` (LoRA merged), `out_dir/log.csv`, `out_dir/metrics.json`.
    """
    import tempfile

    from peft import LoraConfig
    from transformers.trainer_utils import get_last_checkpoint
    from trl import RLOOTrainer

    t0 = time.perf_counter()
    reward_func: Callable = reward.reward_func() if hasattr(reward, "reward_func") else reward
    if model is None:
        model, tokenizer = load_model(model_spec, device=cfg.device, for_training=True)
    if not cfg.lora and cfg.kl_beta != 0 and not getattr(model.config, "_name_or_path", ""):
        # TRL rebuilds the full-fine-tuning reference from the policy's checkpoint path.
        raise SafealignError("rloo: full fine-tuning with kl_beta > 0 needs a model loaded from a path or hub id "
                             "(TRL reloads it as the reference); pass model_spec, or use lora=true")
    dataset = rloo_dataset(prompts)
    if len(dataset) * cfg.num_generations < cfg.batch_size:
        raise SafealignError(f"rloo: {len(dataset)} prompts × {cfg.num_generations} generations is less than "
                             f"one batch of {cfg.batch_size}")
    peft_config = None
    if cfg.lora:
        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                 target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
    tmp_work = tempfile.TemporaryDirectory(prefix="safealign-rloo-") if work_dir is None else None
    work = Path(tmp_work.name if tmp_work else work_dir)
    work.mkdir(parents=True, exist_ok=True)
    args = rloo_config(cfg, work, save=tmp_work is None)
    trainer = RLOOTrainer(model=model, reward_funcs=reward_func, args=args, train_dataset=dataset,
                          processing_class=tokenizer, peft_config=peft_config)
    resume = get_last_checkpoint(str(work)) if tmp_work is None else None
    if resume:
        log.info("rloo: resuming from %s", resume)
    trainer.train(resume_from_checkpoint=resume)
    history = [h for h in trainer.state.log_history if "reward" in h]
    trained = trainer.model.merge_and_unload() if cfg.lora else trainer.model
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        trained.generation_config.pad_token_id = tokenizer.pad_token_id
        trained.save_pretrained(tmp / "model", safe_serialization=True)
        tokenizer.save_pretrained(tmp / "model")
        keys = sorted({k for h in history for k in h})
        with open(tmp / "log.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(history)
        metrics = {
            "steps": trainer.state.global_step, "resumed_from": resume,
            "reward_first": history[0]["reward"] if history else None,
            "reward_last": history[-1]["reward"] if history else None,
            "kl_last": history[-1].get("kl") if history else None,
            "seconds_this_invocation": time.perf_counter() - t0, "config": asdict(cfg),
        }
        write_json(tmp / "metrics.json", metrics)
    if tmp_work is not None:
        tmp_work.cleanup()
    return metrics
