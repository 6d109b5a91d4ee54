"""Audit throughput and memory: documents/s in-process and on a local 2-worker Ray cluster, same corpus, one run.

    python benchmarks/audit_throughput.py                    # 100k + 20k short documents, toxicity off
    python benchmarks/audit_throughput.py --docs 20000 --small 5000 --skip-ray   # a quick look

Each audit runs in a fresh child process so that its peak memory is its own: `peak_rss_mb` is the driver's
peak resident set, `tree_peak_rss_mb` the peak summed over the driver and all its descendants (for Ray: the
raylet, GCS and the worker actors). Memory is "flat" when the in-process peak barely moves from the small
corpus to the large one. The baseline of every ratio is the in-process audit of this run.
`docs_per_s` divides by the whole wall time (imports, planning, Ray start-up, report);
`docs_per_s_pass_only` by the shard pass alone, without the Ray cluster's start-up.
Writes benchmarks/results/audit_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "audit_throughput.json"
LIMIT_SECONDS = 300  # the bar: 100k short documents audited in at most 5 minutes on this machine


def make_corpus_file(path: Path, n_docs: int, seed: int) -> dict:
    from safealign.audit.synthetic import make_corpus

    corpus = make_corpus(n_docs, seed=seed)
    with open(path, "w", encoding="utf-8") as f:
        for r in corpus.records:
            f.write(json.dumps(r) + "\n")
    return {
        "documents": n_docs,
        "bytes": path.stat().st_size,
        "mean_chars": round(sum(len(r["text"]) for r in corpus.records) / n_docs, 1),
    }


def _tree_rss(pid: int) -> int:
    try:
        import psutil
    except ImportError:
        return 0
    try:
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def child(args: argparse.Namespace) -> None:
    """One audit in this process; prints a JSON line with timings and memory."""
    from safealign.audit import run_audit

    peak_tree = 0
    stop = threading.Event()

    def sample():
        nonlocal peak_tree
        while not stop.is_set():
            peak_tree = max(peak_tree, _tree_rss(os.getpid()))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    options = dict(toxicity_sample=0.0, shard_mb=args.shard_mb, fresh=True)
    if args.backend == "ray":
        options.update(ray_address="local", ray_workers=args.workers)
    t0 = time.perf_counter()
    summary = run_audit([args.corpus], args.out, **options)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    n = summary["documents"]
    startup = summary["meta"]["backend_info"].get("startup_seconds", 0.0)
    print(
        json.dumps(
            {
                "backend": args.backend,
                "workers": args.workers if args.backend == "ray" else 1,
                "documents": n,
                "shards": summary["meta"]["shards"],
                "seconds": round(seconds, 2),
                "pass_seconds": summary["meta"]["pass_seconds"],
                "docs_per_s": round(n / seconds, 1),
                "backend_startup_seconds": startup,
                "docs_per_s_pass_only": round(n / (summary["meta"]["pass_seconds"] - startup), 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "tree_peak_rss_mb": round(peak_tree / 2**20, 1),
                "counts": {k: summary[k] for k in ("pii", "pronouns", "identity", "languages")},
            }
        )
    )


def run_child(backend: str, corpus: Path, out: Path, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--backend",
        backend,
        "--corpus",
        str(corpus),
        "--out",
        str(out),
        "--shard-mb",
        str(args.shard_mb),
        "--workers",
        str(args.workers),
    ]
    print(f"  {backend}: {corpus.name} ...", flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.stderr.write(res.stdout[-4000:] + res.stderr[-4000:])
        raise SystemExit(f"{backend} audit failed (exit {res.returncode})")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    print(
        f"    {row['documents']:,} docs in {row['seconds']:.1f} s = {row['docs_per_s']:,.0f} docs/s "
        f"(pass without cluster start {row['docs_per_s_pass_only']:,.0f}); peak RSS {row['peak_rss_mb']:.0f} MB, "
        f"process tree {row['tree_peak_rss_mb']:.0f} MB",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000, help="documents in the large corpus")
    ap.add_argument("--small", type=int, default=20_000, help="documents in the small corpus (memory comparison)")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers (local cluster)")
    ap.add_argument("--shard-mb", type=float, default=2.0, help="shard size; small enough that Ray has work to spread")
    ap.add_argument("--skip-ray", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="in-process", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as tmp:
        tmp = Path(tmp)
        print(f"generating corpora ({args.small:,} and {args.docs:,} short documents) ...", flush=True)
        small, large = tmp / "small.jsonl", tmp / "large.jsonl"
        corpora = {
            "small": make_corpus_file(small, args.small, args.seed),
            "large": make_corpus_file(large, args.docs, args.seed + 1),
        }
        runs = {
            "in_process_small": run_child("in-process", small, tmp / "o1", args),
            "in_process_large": run_child("in-process", large, tmp / "o2", args),
        }
        if not args.skip_ray:
            runs["ray_large"] = run_child("ray", large, tmp / "o3", args)

    base = runs["in_process_large"]
    result = {
        "benchmark": "audit_throughput",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "note": "cores shared with other work: see loadavg",
            "loadavg_1_5_15_before": [round(x, 2) for x in load_before],
            "loadavg_1_5_15_after": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": _versions(),
        "settings": {"toxicity_sample": 0.0, "shard_mb": args.shard_mb, "ray_workers": args.workers},
        "corpora": corpora,
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "counts"} for k, v in runs.items()},
        "memory": {
            "in_process_peak_rss_mb": {"small": runs["in_process_small"]["peak_rss_mb"], "large": base["peak_rss_mb"]},
            "growth_ratio_large_over_small": round(base["peak_rss_mb"] / runs["in_process_small"]["peak_rss_mb"], 3),
            "corpus_ratio_large_over_small": round(args.docs / args.small, 2),
        },
        "criteria": {
            "large_in_process_seconds": base["seconds"],
            "limit_seconds": LIMIT_SECONDS,
            "within_limit": base["seconds"] <= LIMIT_SECONDS,
        },
    }
    if "ray_large" in runs:
        ray = runs["ray_large"]
        result["ratios_vs_in_process"] = {
            "ray_docs_per_s": round(ray["docs_per_s"] / base["docs_per_s"], 3),
            "ray_docs_per_s_pass_only": round(ray["docs_per_s_pass_only"] / base["docs_per_s_pass_only"], 3),
        }
        result["ray_counts_equal_in_process"] = ray["counts"] == base["counts"]
        result["criteria"]["large_ray_seconds"] = ray["seconds"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = RESULTS.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_out, RESULTS)
    print(
        json.dumps(
            {k: result[k] for k in ("memory", "criteria")}
            | {
                "ratios": result.get("ratios_vs_in_process"),
                "ray_counts_equal": result.get("ray_counts_equal_in_process"),
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("safealign", "ray", "py3langid", "pyarrow", "names"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


if __name__ == "__main__":
    main()
