"""Collect a run's evaluations into one report: Markdown, one self-contained HTML page, a model card, metrics JSON.

Reads any evaluated stage of a run (`runs/<name>/<stage>/manifest.json` whose metrics come from the safety
evaluation or from the evaluation suite) or an evaluation directory written by `safealign eval`
(`metrics.json`). Columns are the evaluated stages in pipeline order, so the tables read as the recipe's
progression; Llama 2's published numbers for the same benchmark sit in their own columns.

Every piece of model text goes through Jinja's HTML autoescaping (the HTML environment escapes by default,
including in templates loaded from strings); plots are PNGs embedded as base64, so the page needs no other file.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from safealign.io import read_jsonl, write_json, write_text
from safealign.report import llama2
from safealign.report.compare import Number, eval_stages, flatten, p_value

EVAL_STAGES = ("base_eval", "final_eval")
BENCHMARK_NAMES = ("safety", "toxigen", "truthfulqa_mc", "truthfulqa_gen", "bold")


def fmt_rate(rate: dict | None) -> str:
    if not rate or not rate.get("n"):
        return "–"
    lo, hi = rate["ci95"]
    return f"{100 * rate['rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] (n={rate['n']})"


def fmt_mean(m: dict | None) -> str:
    if not m or not m.get("n"):
        return "–"
    lo, hi = m["ci95"]
    return f"{m['mean']:.3f} [{lo:.3f}, {hi:.3f}] (n={m['n']})"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}%"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


# --- collecting stages -----------------------------------------------------------------------------


def collect_stages(run_dir: Path) -> dict[str, dict]:
    """stage name → {"metrics", "dir"}: a run's evaluated stages in order, or an eval dir as one stage."""
    stages = {name: {"metrics": m, "dir": run_dir / name} for name, m in eval_stages(run_dir).items()}
    if not stages and (run_dir / "metrics.json").exists():
        m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        if "suite" in m or "headline" in m:
            stages["eval"] = {"metrics": m, "dir": run_dir}
    return stages


# --- tables: one generic shape, rendered by both templates -----------------------------------------


def _cell(metric: Number | None, first: Number | None, is_first: bool) -> dict:
    if metric is None:
        return {"text": "–", "cls": ""}
    cls = ""
    if not is_first and first is not None and metric.higher_is_better is not None:
        p = p_value(first, metric)
        if p is not None and p < 0.05 and metric.value != first.value:
            cls = "better" if (metric.value > first.value) == metric.higher_is_better else "worse"
    return {"text": metric.text(), "cls": cls}


def _table(title: str, stages: list[str], flat: dict[str, dict[str, Number]], keys: list[tuple[str, str]],
           refs: dict[str, dict[str, str]] | None = None, note: str = "") -> dict | None:
    """Rows = (key, label); columns = stages, then reference models. Rows no stage has are dropped."""
    refs = refs or {}
    ref_models = sorted({m for r in refs.values() for m in r}, key=lambda m: (m not in llama2.MODELS, m))
    rows = []
    for key, label in keys:
        vals = [flat[s].get(key) for s in stages]
        if not any(vals):
            continue
        first = vals[0]
        rows.append({"label": label, "cells": [_cell(v, first, i == 0) for i, v in enumerate(vals)],
                     "refs": [refs.get(key, {}).get(m, "–") for m in ref_models]})
    if not rows:
        return None
    return {"title": title, "note": note, "columns": stages, "ref_columns": ref_models, "rows": rows}


def _safety_tables(stages: list[str], metrics: dict[str, dict], flat: dict[str, dict[str, Number]]) -> list[dict]:
    """The slice-one before/after table, then categories, XSTest refusal kinds and MultiJail by language."""
    tables = []
    head = [("safety.violation_rate_core", "Violation rate: XSTest unsafe + AdvBench + HarmBench val (pooled)"),
            ("safety.false_refusal_rate_xstest_safe", "False refusal: XSTest safe"),
            ("safety.violation_rate_dev", "Violation rate: our dev split (unseen adversarial prompts)"),
            ("safety.false_refusal_rate_dev", "False refusal: our dev split (benign)"),
            ("safety.false_refusal_rate_dev_borderline", "False refusal: our dev split (borderline only)")]
    sets = sorted({s for m in metrics.values() for s in m.get("sets", {}) if not s.startswith("multijail_")})
    for s in sets:
        head += [(f"safety.sets.{s}.violation", f"{s}: violation"), (f"safety.sets.{s}.false_refusal", f"{s}: false refusal")]
    chat = llama2.SAFETY["Llama 2-Chat 7B"]
    refs = {"safety.violation_rate_core": {"Llama 2-Chat 7B": f"~{100 * chat['violation_rate']:.0f}%*"},
            "safety.false_refusal_rate_xstest_safe": {"Llama 2-Chat 7B": f"~{100 * chat['false_refusal_borderline']:.0f}%*"}}
    t = _table("Safety: violation and false refusal", stages, flat, head, refs,
               "Violation = harmful prompt answered without a refusal; false refusal = benign prompt refused (full or "
               "partial). *Llama 2-Chat: human-rated violation on Meta's own adversarial prompts (Fig. 17, chart "
               "reading) and false refusal on Meta's 210 borderline prompts (Fig. 33): context, not the same test.")
    tables += [t] if t else []
    cats = sorted({c for m in metrics.values() for c in m.get("by_category", {})})
    t = _table("Violation rate per risk category", stages, flat,
               [(f"safety.category.{c}", c) for c in cats],
               note="Harmful prompts of every set, mapped onto the policy's risk categories.")
    tables += [t] if t else []
    xs = [("safety.sets.xstest_safe.false_refusal", "XSTest safe: refused (full or partial)"),
          ("safety.sets.xstest_safe.full_refusal", "XSTest safe: full refusal"),
          ("safety.sets.xstest_safe.partial_refusal", "XSTest safe: partial refusal")]
    t = _table("False refusal on XSTest (full / partial)", stages, flat, xs)
    tables += [t] if t else []
    langs = [s.split("_", 1)[1] for s in sorted({s for m in metrics.values() for s in m.get("sets", {})
                                                  if s.startswith("multijail_")})]
    t = _table("MultiJail: violation rate per language", stages, flat,
               [(f"safety.sets.multijail_{lang}.violation", lang) for lang in langs],
               note="The same harmful prompts in 10 languages (MultiJail, Deng et al. 2024).")
    tables += [t] if t else []
    vecs = sorted({v for m in metrics.values() for v in m.get("by_attack_vector", {})})
    t = _table("Violation rate per attack vector (dev split)", stages, flat,
               [(f"safety.attack_vector.{v}", v) for v in vecs])
    tables += [t] if t else []
    return tables


def _benchmark_tables(stages: list[str], metrics: dict[str, dict], flat: dict[str, dict[str, Number]]) -> list[dict]:
    tables = []
    # headline
    refs = {"toxigen.overall": {m: _pct(v["overall"]) for m, v in llama2.TOXIGEN.items()}}
    for k in ("true_info", "true", "info"):
        refs[f"truthfulqa.{k}"] = {m: _pct(v[k]) for m, v in llama2.TRUTHFULQA.items()}
    keys = [("toxigen.overall", "ToxiGen: % toxic generations (13 groups)"),
            ("truthfulqa.true_info", "TruthfulQA: % true and informative"),
            ("truthfulqa.true", "TruthfulQA: % true"), ("truthfulqa.info", "TruthfulQA: % informative"),
            ("truthfulqa.mc1", "TruthfulQA MC1 (lm-eval)"), ("truthfulqa.mc2", "TruthfulQA MC2 (lm-eval)")]
    for d in llama2.DOMAIN_LABELS:
        keys.append((f"bold.{d}", f"BOLD {llama2.DOMAIN_LABELS[d]}: mean VADER sentiment"))
        refs[f"bold.{d}"] = {m: _num(sum(v[d].values()) / len(v[d])) + "†" for m, v in llama2.BOLD.items()}
    t = _table("Automatic safety benchmarks (Llama 2 §4.1)", stages, flat, keys, refs,
               "Llama 2 scored ToxiGen with the ToxiGen RoBERTa classifier and TruthfulQA with fine-tuned GPT-3 "
               "judges; ours uses the judges listed under Judges, so the columns agree in protocol, not in scorer. "
               "Llama 2 reports no MC1/MC2. †Unweighted mean of Llama 2's per-group means.")
    tables += [t] if t else []
    groups = []
    for m in metrics.values():
        for g in (m.get("benchmarks", {}).get("toxigen", {}).get("by_group") or {}):
            if g not in groups:
                groups.append(g)
    order = [g for g in llama2.TOXIGEN_GROUPS if g in groups] + [g for g in groups if g not in llama2.TOXIGEN_GROUPS]
    from safealign.evaluate.toxigen import GROUP_LABELS

    t = _table("ToxiGen: % toxic generations per group", stages, flat,
               [(f"toxigen.group.{g}", GROUP_LABELS.get(g, g)) for g in order],
               {f"toxigen.group.{g}": {m: _pct(v["by_group"].get(g)) for m, v in llama2.TOXIGEN.items()} for g in order},
               "Hate and neutral demonstration prompts pooled per group, as in Llama 2's Table 45.")
    tables += [t] if t else []
    for d, label in llama2.DOMAIN_LABELS.items():
        gs = []
        for m in metrics.values():
            for g in (m.get("benchmarks", {}).get("bold", {}).get("by_domain", {}).get(d, {}).get("groups") or {}):
                if g not in gs:
                    gs.append(g)
        ref_order = list(llama2.BOLD["Llama 2 7B"].get(d, {}))
        gs = [g for g in ref_order if g in gs] + [g for g in gs if g not in ref_order]
        t = _table(f"BOLD {label}: mean VADER compound of prompt + generation", stages, flat,
                   [(f"bold.{d}.{g}", llama2.BOLD_LABELS.get(g, g)) for g in gs],
                   {f"bold.{d}.{g}": {m: _num(v.get(d, {}).get(g)) for m, v in llama2.BOLD.items()} for g in gs})
        tables += [t] if t else []
    return tables


# --- plots -----------------------------------------------------------------------------------------


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _bars(ax, labels: list[str], series: dict[str, list[Number | None]], scale: float = 100.0,
          refs: dict[str, list[float | None]] | None = None, legend: bool = True) -> None:
    width = 0.8 / max(1, len(series))
    for i, (name, vals) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(labels))]
        ys = [scale * v.value if v else 0.0 for v in vals]
        lo = [max(0.0, scale * (v.value - v.ci95[0])) if v and v.ci95 else 0.0 for v in vals]
        hi = [max(0.0, scale * (v.ci95[1] - v.value)) if v and v.ci95 else 0.0 for v in vals]
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=name.replace("_", " "))
    markers = iter("x+^v")
    for name, vals in (refs or {}).items():
        pts = [(j, scale * v) for j, v in enumerate(vals) if v is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=next(markers), color="black", zorder=3,
                       label=name)
    ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30, ha="right")
    ax.grid(axis="y", alpha=0.3)
    if legend:
        ax.legend(fontsize=7)


def plots(stages: list[str], metrics: dict[str, dict], flat: dict[str, dict[str, Number]]) -> list[dict]:
    """Figures as base64 PNGs: safety headline, ToxiGen per group, TruthfulQA, BOLD per domain."""
    if not stages:
        return []
    plt = _pyplot()
    out = []
    keys = [("safety.violation_rate_core", "violation\n(public harmful)"), ("safety.violation_rate_dev", "violation\n(dev adversarial)"),
            ("safety.false_refusal_rate_xstest_safe", "false refusal\n(XSTest safe)"),
            ("safety.false_refusal_rate_dev", "false refusal\n(dev benign)")]
    keys += [(f"safety.sets.multijail_{lang}.violation", f"MultiJail\n{lang}") for lang in ("en", "zh", "ar", "sw")]
    keys = [(k, lab) for k, lab in keys if any(flat[s].get(k) for s in stages)]
    if keys:
        fig, ax = plt.subplots(figsize=(8, 3.6), dpi=100)
        _bars(ax, [lab for _, lab in keys], {s: [flat[s].get(k) for k, _ in keys] for s in stages})
        ax.set_ylabel("% of prompts")
        ax.set_ylim(0, 100)
        ax.set_title("Safety: violation and false refusal (95% intervals)", fontsize=9)
        out.append({"title": "Safety headline rates", "png": _png(fig)})
    from safealign.evaluate.toxigen import GROUP_LABELS

    groups = [g for g in llama2.TOXIGEN_GROUPS if any(flat[s].get(f"toxigen.group.{g}") for s in stages)]
    if groups:
        fig, ax = plt.subplots(figsize=(9, 3.6), dpi=100)
        _bars(ax, [GROUP_LABELS[g] for g in groups], {s: [flat[s].get(f"toxigen.group.{g}") for g in groups] for s in stages},
              refs={m: [llama2.TOXIGEN[m]["by_group"][g] for g in groups] for m in llama2.MODELS})
        ax.set_ylabel("% toxic generations")
        ax.set_title("ToxiGen per group (bars: ours with 95% intervals; markers: Llama 2)", fontsize=9)
        out.append({"title": "ToxiGen per group", "png": _png(fig)})
    tkeys = [("truthfulqa.true_info", "true+info"), ("truthfulqa.true", "true"), ("truthfulqa.info", "info"),
             ("truthfulqa.mc1", "MC1"), ("truthfulqa.mc2", "MC2")]
    tkeys = [(k, lab) for k, lab in tkeys if any(flat[s].get(k) for s in stages)]
    if tkeys:
        fig, ax = plt.subplots(figsize=(6, 3.4), dpi=100)
        _bars(ax, [lab for _, lab in tkeys], {s: [flat[s].get(k) for k, _ in tkeys] for s in stages},
              refs={m: [llama2.TRUTHFULQA[m].get(k.split(".")[1]) for k, _ in tkeys] for m in llama2.MODELS})
        ax.set_ylabel("%")
        ax.set_ylim(0, 100)
        ax.set_title("TruthfulQA (markers: Llama 2, GPT-judge)", fontsize=9)
        out.append({"title": "TruthfulQA", "png": _png(fig)})
    doms = [d for d in llama2.DOMAIN_LABELS if any(flat[s].get(f"bold.{d}") for s in stages)]
    if doms:
        fig, axes = plt.subplots(len(doms), 1, figsize=(10, 2.6 * len(doms)), dpi=100, squeeze=False)
        for i, (ax, d) in enumerate(zip(axes[:, 0], doms)):
            gs = [g for g in llama2.BOLD["Llama 2 7B"][d] if any(flat[s].get(f"bold.{d}.{g}") for s in stages)]
            _bars(ax, [llama2.BOLD_LABELS.get(g, g) for g in gs],
                  {s: [flat[s].get(f"bold.{d}.{g}") for g in gs] for s in stages}, scale=1.0,
                  refs={m: [llama2.BOLD[m][d].get(g) for g in gs] for m in llama2.MODELS}, legend=i == 0)
            ax.axhline(0, color="grey", lw=0.6)
            ax.set_ylim(-1, 1)
            ax.set_title(f"BOLD {llama2.DOMAIN_LABELS[d]}: mean VADER compound", fontsize=9)
        out.append({"title": "BOLD per group", "png": _png(fig)})
    return out


# --- samples, judges, decoding ---------------------------------------------------------------------


def _safety_samples(stage_dir: Path, per_set: int = 2) -> list[dict]:
    path = stage_dir / "generations.jsonl"
    if not path.exists():
        return []
    by_set: dict[str, list[dict]] = {}
    for _, row in read_jsonl(path):
        by_set.setdefault(row.get("set", "?"), []).append(row)
    out = []
    for name, rows in by_set.items():
        for r in rows[:per_set]:
            out.append({"benchmark": "safety", "tag": name, "prompt": r.get("prompt", ""), "response": r.get("response", ""),
                        "verdict": "refused" if r.get("refused") else "answered", "refused": r.get("refused"),
                        "set": name})
    return out


def samples(stage: dict) -> list[dict]:
    m, out = stage["metrics"], _safety_samples(stage["dir"])
    b = m.get("benchmarks") or {}
    for r in (b.get("toxigen") or {}).get("samples", []):
        out.append({"benchmark": "ToxiGen", "tag": f"{r['group']} ({r['label']} prompt)", "prompt": r["prompt"],
                    "response": r["response"], "verdict": f"P(toxic) = {r['toxicity']:.2f}"})
    for r in (b.get("truthfulqa_gen") or {}).get("samples", []):
        out.append({"benchmark": "TruthfulQA", "tag": r["category"], "prompt": r["question"], "response": r["response"],
                    "verdict": f"P(true) = {r['p_true']:.2f}, P(info) = {r['p_info']:.2f}"})
    for r in (b.get("bold") or {}).get("samples", []):
        out.append({"benchmark": "BOLD", "tag": f"{r['domain']} / {r['group']}", "prompt": r["prompt"],
                    "response": r["response"], "verdict": f"VADER = {r['sentiment']:+.2f}"})
    return out


VALIDATION_KEYS = ("accuracy", "precision", "recall", "f1", "kappa", "roc_auc", "accuracy_3class")


def judges(metrics: dict) -> list[dict]:
    """Each judge of an evaluation with its validation figures against human labels."""
    found = dict(metrics.get("judges") or {})
    if metrics.get("judge") and "refusal" not in found:
        found["refusal"] = metrics["judge"]
    out = []
    for role, j in found.items():
        v = j.get("validation") or {}
        figures = {k: v[k] for k in VALIDATION_KEYS if isinstance(v.get(k), (int, float)) and not math.isnan(v[k])}
        out.append({"role": role, "name": j.get("name", "?"), "figures": figures, "n": v.get("n"),
                    "dataset": v.get("dataset", ""), "method": v.get("method", ""),
                    "error": v.get("error") or ("" if v else "no validation figures")})
    return out


def decoding(metrics: dict) -> list[dict]:
    out = []
    if metrics.get("generation"):
        out.append({"benchmark": "safety", **metrics["generation"]})
    for name, b in (metrics.get("benchmarks") or {}).items():
        if b.get("generation"):
            out.append({"benchmark": name, **b["generation"]})
    return out


def reward_models(run_dir: Path) -> dict | None:
    """The rm_eval stage, if the run has one: accuracy per rating, unsafe recall, the gate, its plots."""
    path = run_dir / "rm_eval" / "manifest.json"
    if not path.exists():
        return None
    try:
        m = json.loads(path.read_text(encoding="utf-8")).get("metrics") or {}
        plots_path = run_dir / "rm_eval" / "plots.json"
        pngs = json.loads(plots_path.read_text(encoding="utf-8")) if plots_path.exists() else {}
    except json.JSONDecodeError:
        return None
    rows = []
    for rm_name, sets in (m.get("accuracy") or {}).items():
        for set_name, by_rating in sets.items():
            rows.append({"label": f"{rm_name} on {set_name}", "cells": {r: fmt_rate(v) for r, v in by_rating.items()}})
    ratings = list(dict.fromkeys(r for row in rows for r in row["cells"]))
    gate = m.get("gate") or {}
    return {"ratings": ratings, "rows": rows, "unsafe_recall": fmt_rate(m.get("unsafe_recall_at_0.5")),
            "gate": gate, "plots": [v for v in pngs.values() if isinstance(v, str)],
            "reference": "Llama 2: Safety RM 64.5% on Meta Safety and 74.7% on Anthropic Harmless (Table 7); unsafe "
                         "recall at σ < 0.5 90.4% with the auxiliary loss (Table 29); gate R_s < 0.15 precision 0.89, "
                         "recall 0.55 (§3.2.2)."}


# --- context and writers ---------------------------------------------------------------------------


def build_report_context(run_dir: str | Path, timings: dict[str, float] | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    stages_info = collect_stages(run_dir)
    stages = list(stages_info)
    metrics = {s: v["metrics"] for s, v in stages_info.items()}
    flat = {s: flatten(m) for s, m in metrics.items()}
    manifests = {}
    for p in sorted(run_dir.glob("*/manifest.json")):
        try:
            manifests[p.parent.name] = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
    stage_times = {name: m.get("seconds", 0.0) for name, m in manifests.items()}
    if "eval" in metrics and not manifests:
        t = metrics["eval"].get("timings") or {}
        cpu = t.get("cpu_seconds") or {}
        stage_times = {f"eval: {k}" + (f" ({cpu[k]:.0f} s CPU)" if k in cpu else ""): v for k, v in t.items()
                       if k in BENCHMARK_NAMES and isinstance(v, (int, float))}
    if timings:
        stage_times.update(timings)
    last = metrics[stages[-1]] if stages else {}
    judge = next((m.get("judge") for m in metrics.values() if m.get("judge")), None)
    return {
        "run": run_dir.name, "run_dir": str(run_dir), "stages": stages, "metrics": metrics,
        "models": {s: m.get("model", "?") for s, m in metrics.items()},
        "suites": {s: m.get("suite", "safety eval") for s, m in metrics.items()},
        "safety_tables": _safety_tables(stages, metrics, flat),
        "benchmark_tables": _benchmark_tables(stages, metrics, flat),
        "plots": plots(stages, metrics, flat),
        "judges": judges(last), "judge": judge, "decoding": decoding(last),
        "data_hashes": last.get("data_hashes") or {},
        "samples": {s: samples(v) for s, v in stages_info.items()},
        "stage_times": stage_times, "total_seconds": sum(stage_times.values()),
        "data": (manifests.get("data") or {}).get("metrics"), "sft": (manifests.get("sft") or {}).get("metrics"),
        "config": (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").exists() else "",
        "llama2_models": list(llama2.MODELS), "reward_models": reward_models(run_dir),
    }


def _env(autoescape: bool) -> Environment:
    env = Environment(loader=PackageLoader("safealign.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True)
                      if autoescape else False, trim_blocks=True, lstrip_blocks=True)
    env.filters["rate"] = fmt_rate
    env.filters["cell"] = lambda s: " ".join(str(s).replace("|", "\\|").split())
    env.filters["clip"] = lambda s, n: (str(s)[:n] + "…") if len(str(s)) > n else str(s)
    return env


def metrics_summary(ctx: dict) -> dict:
    """The report's numbers as JSON: every stage's metrics (samples stripped) plus the Llama 2 references."""
    def strip(m: dict) -> dict:
        m = json.loads(json.dumps(m, default=str))
        for b in (m.get("benchmarks") or {}).values():
            b.pop("samples", None)
        return m

    return {"run": ctx["run"], "stages": {s: strip(m) for s, m in ctx["metrics"].items()},
            "llama2_reference": {"toxigen": llama2.TOXIGEN, "truthfulqa": llama2.TRUTHFULQA, "bold": llama2.BOLD,
                                 "safety": llama2.SAFETY}}


def write_model_card(run_dir: str | Path, ctx: dict | None = None) -> Path:
    run_dir = Path(run_dir)
    ctx = ctx or build_report_context(run_dir)
    md = _env(False).get_template("model_card.md.j2").render(**ctx)
    write_text(run_dir / "model_card.md", md)
    return run_dir / "model_card.md"


def write_report(run_dir: str | Path, timings: dict[str, float] | None = None) -> tuple[Path, Path]:
    """report.md and report.html (self-contained), plus model_card.md and report_metrics.json beside them."""
    run_dir = Path(run_dir)
    ctx = build_report_context(run_dir, timings)
    write_text(run_dir / "report.html", _env(True).get_template("report.html.j2").render(**ctx))
    write_text(run_dir / "report.md", _env(False).get_template("report.md.j2").render(**ctx))
    write_model_card(run_dir, ctx)
    write_json(run_dir / "report_metrics.json", metrics_summary(ctx))
    return run_dir / "report.md", run_dir / "report.html"
