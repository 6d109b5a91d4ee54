"""Throughput of the default judges (refusal, harm, toxicity) on 1,000 (prompt, response) pairs.

    python benchmarks/judge_throughput.py [--n 1000] [--datasets-dir DIR] [--out benchmarks/results/judge_throughput.json]

Pairs are sampled (seed 0) from the XSTest and Do-Not-Answer human-labelled completions, so lengths are
those of real chat answers; without the datasets, templated pairs of similar length are used. Judges are
trained (or loaded from cache) before the clock starts. Wall and process CPU time are both recorded: on a
shared machine (see the load average in the result) wall time overstates the cost. The baseline, measured in the same run, is the
bare cost of the work the judges cannot avoid: one MiniLM forward pass over the 1,000 responses and the
1,000 prompts. The ratio says how much the judges add on top of it: mostly the toxicity judge's own pass, the
first 15 layers of SmolLM2-135M over each response's first 48 tokens (`judges/llm_features.py`). Target: <= 60 s
for all three.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sample_pairs(n: int, datasets_dir: str | None) -> tuple[list[str], list[str], str]:
    from safealign.errors import SafealignError
    from safealign.judges import labels as L

    try:
        xs, dna = L.load_xstest_completions(datasets_dir), L.load_do_not_answer(datasets_dir)
        pool = list(zip(xs.prompts, xs.responses)) + list(zip(dna.prompts, dna.responses))
        source = "xstest completions + do-not-answer responses"
    except SafealignError:
        body = "Here is a careful, step by step answer with some background and a few caveats. " * 6
        pool = [(f"Question number {i}: how do I do task {i}?", f"Answer {i}. " + body) for i in range(n)]
        source = "templated (datasets folder not found)"
    rng = random.Random(0)
    pairs = [pool[rng.randrange(len(pool))] for _ in range(n)]
    return [p for p, _ in pairs], [r for _, r in pairs], source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--datasets-dir", default=None)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "judge_throughput.json"))
    args = ap.parse_args()

    import torch

    from safealign.io import write_json
    from safealign.judges import DEFAULT_JUDGES, embed, get_judge, llm_features

    prompts, responses, source = sample_pairs(args.n, args.datasets_dir)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

    t0 = time.perf_counter()
    judges = [get_judge(name, datasets_dir=args.datasets_dir) for name in DEFAULT_JUDGES]
    for j in judges:
        j._load()  # train or read cached weights before the clock starts
    embed._load()
    llm_features._load()  # the toxicity judge's SmolLM2 layers
    setup_s = time.perf_counter() - t0

    # Baseline: one bare MiniLM pass over responses and prompts, batched and length-sorted the same way.
    embed._memo.clear()
    t0 = time.perf_counter()
    embed.embed(responses)
    embed.embed(prompts)
    baseline_s = time.perf_counter() - t0

    embed._memo.clear()  # the judges start cold
    per_judge = {}
    cpu0 = time.process_time()
    t_all = time.perf_counter()
    for j in judges:
        t0 = time.perf_counter()
        verdicts = j.judge_batch(prompts, responses)
        per_judge[j.name] = round(time.perf_counter() - t0, 3)
        assert len(verdicts) == len(prompts)
    total_s = time.perf_counter() - t_all
    cpu_s = time.process_time() - cpu0

    rules = get_judge("refusal-rules")
    t0 = time.perf_counter()
    rules.judge_batch(prompts, responses)
    rules_s = time.perf_counter() - t0

    result = {
        "benchmark": "judge_throughput",
        "n_pairs": len(prompts),
        "pairs_source": source,
        "judges": list(DEFAULT_JUDGES),
        "total_seconds": round(total_s, 3),
        "pairs_per_second": round(len(prompts) / total_s, 1),
        "target_seconds": 60,
        "meets_target": total_s <= 60,
        "per_judge_seconds": per_judge,
        "cpu_seconds": round(cpu_s, 3),
        "cpu_seconds_note": "process CPU time over all threads; wall time above it means the cores were shared",
        "baseline": "bare MiniLM forward over the responses and prompts (same batching)",
        "baseline_seconds": round(baseline_s, 3),
        "ratio_to_baseline": round(total_s / baseline_s, 3),
        "refusal_rules_seconds": round(rules_s, 4),
        "setup_seconds_excluded": round(setup_s, 2),
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1min_at_start": load_before,
        },
        "command": "python benchmarks/judge_throughput.py",
    }
    write_json(args.out, result)
    print(f"{len(prompts)} pairs through {', '.join(DEFAULT_JUDGES)}: {total_s:.1f} s "
          f"({len(prompts) / total_s:.0f} pairs/s; target 60 s) = {total_s / baseline_s:.2f}x the bare MiniLM pass "
          f"({baseline_s:.1f} s); CPU {cpu_s:.1f} s; per judge {per_judge}; rules alone {rules_s * 1000:.0f} ms", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
