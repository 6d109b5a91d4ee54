"""Cost of one LoRA training step with adapters on every decoder layer vs on the top N only (`sft.lora_layers`).

    python benchmarks/lora_layers_step.py [--model embedded] [--top 15] [--steps 5]

With adapters on the top N layers only, nothing below them needs a gradient, so the backward pass stops at the
lowest adapted layer. Each variant: forward + backward + AdamW step on the same random 4 x 150-token batch
(full-vocabulary loss), median of `--steps` after one warm-up step, both in this process. Writes
benchmarks/results/lora_layers_step.json with the ratio top-N / all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from safealign.models import load_model
from safealign.train.sft import SFTStageConfig, top_layers

RESULTS = Path(__file__).parent / "results" / "lora_layers_step.json"


def step_seconds(model_spec: str, n_layers: int | None, steps: int) -> float:
    from peft import LoraConfig, get_peft_model

    cfg = SFTStageConfig()
    model, _ = load_model(model_spec, for_training=True)
    model = get_peft_model(model, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                             target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM",
                                             layers_to_transform=top_layers(model, n_layers)))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randint(0, model.config.vocab_size, (4, 150), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(steps + 1):
        t = time.perf_counter()
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    all_s = step_seconds(args.model, None, args.steps)
    top_s = step_seconds(args.model, args.top, args.steps)
    result = {"model": args.model, "batch": [4, 150], "steps": args.steps, "all_layers_s": all_s,
              f"top_{args.top}_s": top_s, "ratio_top_vs_all": top_s / all_s, "threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
