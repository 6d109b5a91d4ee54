"""Scoring with the safety and helpfulness RMs at once (`RewardModel.score_both`) vs one after the other.

    python benchmarks/rm_shared_trunk.py RUN_DIR [--n 128]

RUN_DIR is a finished run with `reward_models/` and `preferences/dev_pairs.jsonl` (the CPU RLHF recipe: both RMs
trained from the SFT model with their top layers only, so they share the rest). Scores the dev pairs' answers
(first `--n`) both ways in this process, checks the scores agree, and writes
benchmarks/results/rm_shared_trunk.json with the ratio shared / separate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from safealign.data.preferences import load_pairs
from safealign.train.reward_model import RewardModel

RESULTS = Path(__file__).parent / "results" / "rm_shared_trunk.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    safety = RewardModel(args.run_dir / "reward_models" / "safety_rm", "cpu")
    helpful = RewardModel(args.run_dir / "reward_models" / "helpfulness_rm", "cpu")
    pairs = load_pairs(args.run_dir / "preferences" / "dev_pairs.jsonl")
    prompts = [p.prompt for p in pairs for _ in (0, 1)][:args.n]
    responses = [r for p in pairs for r in (p.chosen, p.rejected)][:args.n]
    safety.score(prompts[:16], responses[:16])  # warm-up
    t = time.perf_counter()
    separate = safety.score(prompts, responses), helpful.score(prompts, responses)
    separate_s = time.perf_counter() - t
    t = time.perf_counter()
    shared = safety.score_both(helpful, prompts, responses)
    shared_s = time.perf_counter() - t
    diff = max(abs(a - b) for x, y in zip(separate, shared) for a, b in zip(x, y))
    result = {"run_dir": str(args.run_dir), "answers": len(responses),
              "shared_layers": safety.shared_layers(helpful), "layers": safety.model.config.num_hidden_layers,
              "separate_s": separate_s, "shared_s": shared_s, "ratio_shared_vs_separate": shared_s / separate_s,
              "max_abs_score_difference": diff, "threads": torch.get_num_threads()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
