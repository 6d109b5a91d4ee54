"""SFT training throughput on the same data: our SFT stage vs TRL's SFTTrainer with its default config vs a
plain PyTorch loop.

    python benchmarks/train_throughput.py [--model embedded] [--steps 6] [--trl-default-steps 2]

- ours: `safealign.train.sft` (TRL SFTTrainer with our completion-only loss off CUDA, our CPU config: fp32,
  no gradient checkpointing, LoRA);
- trl_default: SFTTrainer with SFTConfig's defaults (bf16 + gradient checkpointing), full fine-tuning;
- plain_loop: a hand-written loop doing what ours does (same LoRA model, length-sorted batches, completion-only
  loss).
Tokens/s counts non-padding tokens per optimiser step, after one warm-up step. The ratio ours/plain_loop
is the overhead of going through TRL. Writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from safealign.data.records import load_seed, split_examples
from safealign.models import load_model
from safealign.train.sft import SFTStageConfig, sft_config, sft_trainer_class, to_prompt_completion

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self.tokens = [], []
        self._t = None

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.times.append(time.perf_counter() - self._t)
        self.tokens.append(state.num_input_tokens_seen)


def run_trainer(model, tok, rows, args, steps: int, lora: bool, trainer_class) -> dict:
    from datasets import Dataset
    from peft import LoraConfig

    timer = StepTimer()
    args.max_steps = steps + 1
    args.include_num_input_tokens_seen = "non_padding"
    peft = None
    if lora:
        cfg = SFTStageConfig()
        peft = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=cfg.lora_target_modules,
                          task_type="CAUSAL_LM")
    trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                          peft_config=peft, callbacks=[timer])
    trainer.train()
    toks = [b - a for a, b in zip(timer.tokens, timer.tokens[1:])]
    secs = timer.times[1:]
    return {"steps_timed": len(secs), "seconds": sum(secs), "tokens": sum(toks),
            "tokens_per_s": sum(toks) / sum(secs), "seconds_per_step": sum(secs) / len(secs)}


def plain_loop(model, tok, rows, batch_size: int, steps: int, lr: float) -> dict:
    """What SFT does, by hand: LoRA model, right-padded batches, loss on completion tokens only."""
    from peft import LoraConfig, get_peft_model

    cfg = SFTStageConfig()
    model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                             target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM"))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    encoded = []
    for r in rows:
        prompt = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True)
        full = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=True)
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
        full = list(full["input_ids"] if hasattr(full, "keys") else full)[: cfg.max_length]
        encoded.append((full, len(prompt)))
    # Batches of similar length, as ours gets from group_by_length: the ratio then measures TRL's overhead only.
    encoded.sort(key=lambda e: len(e[0]), reverse=True)
    times, tokens = [], []
    for step in range(steps + 1):
        batch = encoded[(step * batch_size) % len(encoded):][:batch_size]
        width = max(len(f) for f, _ in batch)
        ids = torch.full((len(batch), width), tok.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (f, n_prompt) in enumerate(batch):
            ids[i, : len(f)] = torch.tensor(f)
            mask[i, : len(f)] = 1
            labels[i, n_prompt: len(f)] = torch.tensor(f[n_prompt:])
        t0 = time.perf_counter()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if step:  # the first step is warm-up
            times.append(time.perf_counter() - t0)
            tokens.append(int(mask.sum()))
    return {"steps_timed": len(times), "seconds": sum(times), "tokens": sum(tokens),
            "tokens_per_s": sum(tokens) / sum(times), "seconds_per_step": sum(times) / len(times)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--trl-default-steps", type=int, default=2)
    args = ap.parse_args()
    train, _ = split_examples(load_seed())
    rows = to_prompt_completion(train[:64])
    cfg = SFTStageConfig(device="cpu")
    out = {"model": args.model, "batch_size": cfg.batch_size, "max_length": cfg.max_length}

    model, tok = load_model(args.model, device="cpu", for_training=True)
    ours_args = sft_config(cfg, "/tmp/safealign-bench-ours", len(rows))
    out["ours"] = run_trainer(model, tok, rows, ours_args, args.steps, lora=cfg.lora, trainer_class=sft_trainer_class())

    model, tok = load_model(args.model, device="cpu", for_training=True)
    out["plain_loop"] = plain_loop(model, tok, rows, cfg.batch_size, args.steps, cfg.learning_rate)

    from trl import SFTConfig, SFTTrainer

    model, tok = load_model(args.model, device="cpu", for_training=True)
    default_args = SFTConfig(output_dir="/tmp/safealign-bench-trl", use_cpu=True, report_to=[],
                             save_strategy="no", per_device_train_batch_size=cfg.batch_size,
                             max_length=cfg.max_length)
    out["trl_default"] = {"bf16": default_args.bf16, "gradient_checkpointing": default_args.gradient_checkpointing,
                          **run_trainer(model, tok, rows, default_args, args.trl_default_steps, lora=False,
                                        trainer_class=SFTTrainer)}
    out["ours_vs_plain_loop"] = out["ours"]["tokens_per_s"] / out["plain_loop"]["tokens_per_s"]
    out["ours_vs_trl_default"] = out["ours"]["tokens_per_s"] / out["trl_default"]["tokens_per_s"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
