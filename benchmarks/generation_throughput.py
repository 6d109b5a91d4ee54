"""Generation throughput: our batched generator vs one-prompt-at-a-time `generate`, same 64 prompts.

    python benchmarks/generation_throughput.py [--model embedded] [--prompts 64] [--max-new-tokens 32]

Both decode greedily to the same token cap; tokens/s counts generated tokens. Writes
benchmarks/results/generation_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from safealign.data.records import load_seed, split_examples
from safealign.generation import GenerationConfig, get_generator
from safealign.models import load_model

RESULTS = Path(__file__).parent / "results" / "generation_throughput.json"


def one_at_a_time(model, tok, convs, max_new_tokens: int) -> tuple[int, float]:
    tokens, t0 = 0, time.perf_counter()
    for conv in convs:
        ids = tok.apply_chat_template(conv, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        tokens += out.shape[1] - ids["input_ids"].shape[1]
    return tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = load_model(args.model)
    _, dev = split_examples(load_seed())
    convs = [e.conversation() for e in dev[: args.prompts]]
    gen = get_generator("transformers", model=model, tokenizer=tok)
    gen.generate(convs[:2], GenerationConfig(max_new_tokens=4))  # warm-up
    t0 = time.perf_counter()
    recs = gen.generate(convs, GenerationConfig(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size))
    ours_s = time.perf_counter() - t0
    ours_tokens = sum(r.response_tokens for r in recs)
    base_tokens, base_s = one_at_a_time(model, tok, convs, args.max_new_tokens)
    result = {
        "model": args.model, "prompts": len(convs), "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size, "ours": {"tokens": ours_tokens, "seconds": ours_s,
                                                "tokens_per_s": ours_tokens / ours_s},
        "one_at_a_time": {"tokens": base_tokens, "seconds": base_s, "tokens_per_s": base_tokens / base_s},
        "speedup_tokens_per_s": (ours_tokens / ours_s) / (base_tokens / base_s),
        "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
