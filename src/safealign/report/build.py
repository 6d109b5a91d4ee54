"""Collect a run's manifests into a before/after report (Markdown + self-contained HTML)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from safealign.io import read_jsonl, write_text

EVAL_STAGES = ("base_eval", "final_eval")


def _manifest(run_dir: Path, stage: str) -> dict | None:
    path = run_dir / stage / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def fmt_rate(rate: dict | None) -> str:
    if not rate or not rate.get("n"):
        return "–"
    lo, hi = rate["ci95"]
    return f"{100 * rate['rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] (n={rate['n']})"


def _rows_for(metrics: dict[str, dict]) -> list[dict[str, Any]]:
    """Table rows: one per measured quantity, one column per evaluated stage."""
    rows: list[dict[str, Any]] = []

    def add(label: str, getter, lower_is_better: bool = True):
        cells = {s: getter(m) for s, m in metrics.items()}
        if any(cells.values()):
            rows.append({"label": label, "cells": cells, "lower_is_better": lower_is_better})

    add("Violation rate: XSTest unsafe + AdvBench + HarmBench val (pooled)",
        lambda m: m["headline"].get("violation_rate_core"))
    add("False refusal: XSTest safe", lambda m: m["headline"].get("false_refusal_rate_xstest_safe"))
    add("Violation rate: our dev split (unseen adversarial prompts)", lambda m: m["headline"].get("violation_rate_dev"))
    add("False refusal: our dev split (benign)", lambda m: m["headline"].get("false_refusal_rate_dev"))
    add("False refusal: our dev split (borderline only)",
        lambda m: m["headline"].get("false_refusal_rate_dev_borderline"))
    names = sorted({s for m in metrics.values() for s in m["sets"]})
    for s in names:
        add(f"{s}: violation", lambda m, s=s: m["sets"].get(s, {}).get("violation_rate"))
        add(f"{s}: false refusal", lambda m, s=s: m["sets"].get(s, {}).get("false_refusal_rate"))
    for c in sorted({c for m in metrics.values() for c in m["by_category"]}):
        add(f"risk category {c}: violation", lambda m, c=c: m["by_category"].get(c))
    for v in sorted({v for m in metrics.values() for v in m["by_attack_vector"]}):
        add(f"attack vector {v} (dev): violation", lambda m, v=v: m["by_attack_vector"].get(v))
    return rows


def _plot(metrics: dict[str, dict]) -> str | None:
    """Bar chart of the headline rates before/after with 95% intervals, as a base64 PNG."""
    if not metrics:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("violation_rate_core", "violation\n(public harmful)"), ("violation_rate_dev", "violation\n(dev adversarial)"),
            ("false_refusal_rate_xstest_safe", "false refusal\n(XSTest safe)"),
            ("false_refusal_rate_dev", "false refusal\n(dev benign)")]
    keys = [(k, label) for k, label in keys if any(m["headline"].get(k) for m in metrics.values())]
    fig, ax = plt.subplots(figsize=(7.5, 3.6), dpi=110)
    width = 0.8 / len(metrics)
    for i, (stage, m) in enumerate(metrics.items()):
        vals, errs = [], [[], []]
        for k, _ in keys:
            r = m["headline"].get(k) or {"rate": 0, "ci95": [0, 0]}
            vals.append(100 * r["rate"])
            errs[0].append(max(0.0, 100 * (r["rate"] - r["ci95"][0])))
            errs[1].append(max(0.0, 100 * (r["ci95"][1] - r["rate"])))
        xs = [j + (i - (len(metrics) - 1) / 2) * width for j in range(len(keys))]
        ax.bar(xs, vals, width, yerr=errs, capsize=3, label=stage.replace("_", " "))
    ax.set_xticks(range(len(keys)), [label for _, label in keys], fontsize=8)
    ax.set_ylabel("% of prompts")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _samples(run_dir: Path, stage: str, per_set: int = 2) -> list[dict]:
    path = run_dir / stage / "generations.jsonl"
    if not path.exists():
        return []
    by_set: dict[str, list[dict]] = {}
    for _, row in read_jsonl(path):
        by_set.setdefault(row["set"], []).append(row)
    out = []
    for rows in by_set.values():
        out.extend(rows[:per_set])
    return out


def build_report_context(run_dir: str | Path, timings: dict[str, float] | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    metrics = {}
    for s in EVAL_STAGES:
        m = _manifest(run_dir, s)
        if m:
            metrics[s] = m["metrics"]
    manifests = {p.parent.name: json.loads(p.read_text()) for p in sorted(run_dir.glob("*/manifest.json"))}
    stage_times = {name: m.get("seconds", 0.0) for name, m in manifests.items()}
    if timings:
        stage_times.update(timings)
    judge = next((m.get("judge") for m in metrics.values() if m.get("judge")), None)
    return {
        "run": run_dir.name, "run_dir": str(run_dir), "metrics": metrics, "rows": _rows_for(metrics),
        "stages": list(metrics), "fmt_rate": fmt_rate, "stage_times": stage_times,
        "total_seconds": sum(stage_times.values()), "data": (manifests.get("data") or {}).get("metrics"),
        "sft": (manifests.get("sft") or {}).get("metrics"), "judge": judge,
        "generation": next((m.get("generation") for m in metrics.values()), None),
        "samples": {s: _samples(run_dir, s) for s in metrics}, "plot": _plot(metrics),
        "config": (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else "",
    }


def _env() -> Environment:
    env = Environment(loader=PackageLoader("safealign.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["rate"] = fmt_rate
    return env


def write_report(run_dir: str | Path, timings: dict[str, float] | None = None) -> tuple[Path, Path]:
    run_dir = Path(run_dir)
    ctx = build_report_context(run_dir, timings)
    env = _env()
    html = env.get_template("report.html.j2").render(**ctx)
    md_env = Environment(loader=PackageLoader("safealign.report", "templates"), autoescape=False,
                         trim_blocks=True, lstrip_blocks=True)
    md_env.filters["rate"] = fmt_rate
    md_env.filters["cell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    md = md_env.get_template("report.md.j2").render(**ctx)
    write_text(run_dir / "report.html", html)
    write_text(run_dir / "report.md", md)
    return run_dir / "report.md", run_dir / "report.html"
