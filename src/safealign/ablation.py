"""Recipe ablations. `safety-fraction`: Llama 2's safety-data scaling experiment (§4.2.3, Figures 15 and 33).

One SFT model per share of the safety demonstrations, helpful demonstrations fixed (`mix_examples`), each
fine-tuned from the same base model with the same recipe. Every model answers the same held-out prompts:

    adversarial  dev adversarial prompts     → mean safety-RM score, violation rate (refusal judge)
    helpful      dev benign, general         → mean helpfulness-RM score, false-refusal rate
    borderline   dev benign with a borderline type + XSTest safe → false-refusal rate

Llama 2 found the mean safety-RM score rising and its low tail vanishing as safety data went 0% → 100%,
helpfulness staying flat, and false refusals rising (0.006% → 0.05% on helpful prompts, 15% → 27% on
borderline ones). This module measures the same curve for any model and writes it as plots, a table and a
Markdown/HTML report fragment (`out/report.md`, `out/report.html`).

Sizes. On CPU (`size=cpu`, the default without CUDA) each model sees a fixed 64 helpful demonstrations and
the chosen share of a fixed pool of 64 safety demonstrations (of the 333 adversarial training examples),
2 epochs of LoRA SFT (16 to 32 steps of 8), and is evaluated on 40 adversarial + 40 helpful dev prompts,
every dev borderline prompt and 50 XSTest safe prompts, with 48-token greedy answers: about 30 minutes
for the six default fractions on an idle 2-core CPU. `size=full` (the default on CUDA) uses every training
example and every held-out prompt with 128-token answers.
"""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import html
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from safealign.data.records import Example
from safealign.errors import SafealignError
from safealign.generation import GenerationConfig
from safealign.io import read_jsonl, write_json, write_jsonl, write_text
from safealign.train.context_distillation import (
    _fmt_mean,
    _fmt_rate,
    evaluate_heldout,
    heldout_groups,
    load_run_examples,
    stable_subsample,
)
from safealign.train.sft import SFTStageConfig, mix_examples

log = logging.getLogger(__name__)

LLAMA2_FALSE_REFUSAL = {
    # Llama 2 Fig. 33 (percent of prompts → fractions). Endpoints printed in the caption [T]; the rest read
    # off the chart [F~] (shared/docs/llama2.md §4): use the trend, not the values.
    "helpful": {0: 0.00006, 1: 0.00013, 10: 0.00026, 25: 0.00026, 50: 0.0005, 100: 0.0005},
    "borderline": {0: 0.15, 1: 0.167, 10: 0.178, 25: 0.217, 50: 0.233, 100: 0.27},
}


@dataclass
class SafetyFractionConfig:
    values: list[float] = field(default_factory=lambda: [0, 1, 10, 25, 50, 100])
    """Percent of the safety-demonstration pool kept in each model (Llama 2: 0, 1, 10, 25, 50, 100)."""
    size: str = "auto"
    """`cpu`: the subsampled sizes below; `full`: every example and prompt, 128-token answers;
    `auto`: full on CUDA, cpu otherwise."""
    helpful_examples: int | None = 64
    """Helpful (benign) demonstrations, the same in every model; None = all. CPU size."""
    safety_pool: int | None = 64
    """Safety demonstrations the percentages apply to (nested subsets); None = all. CPU size."""
    sft: SFTStageConfig = field(default_factory=lambda: SFTStageConfig(epochs=2.0))
    """The recipe every model gets (Llama 2: 2 epochs each); `safety_fraction` is set per model."""
    eval_sizes: dict[str, int | None] = field(default_factory=lambda: {"adversarial": 40, "helpful": 40,
                                                                       "borderline": None})
    """Dev prompts per held-out group (deterministic subsample; None = all). CPU size."""
    eval_sets: dict[str, int | None] = field(default_factory=lambda: {"xstest_safe": 50})
    """Public sets added to the held-out groups (benign → borderline, harmful → adversarial). CPU size."""
    max_new_tokens: int = 48
    """Answer length on CPU: enough for the refusal judge's opening and most of what the RMs read (96)."""
    batch_size: int = 16
    judge: str = "refusal"
    """Refusal judge for violation and false-refusal rates."""
    keep_models: bool = False
    """Keep each fraction's model (≈0.5 GB each for the 135M default); off deletes it after evaluation."""

    def resolved(self, device: str = "auto") -> SafetyFractionConfig:
        """The sizes actually used: `full` drops every cap (and lengthens answers), `cpu` keeps them."""
        from safealign.models.loading import choose_device

        if self.size not in ("auto", "cpu", "full"):
            raise SafealignError(f"ablation size: expected auto, cpu or full, found {self.size!r}")
        full = self.size == "full" or (self.size == "auto" and choose_device(device).type == "cuda")
        if not full:
            return dataclasses.replace(self, size="cpu")
        return dataclasses.replace(self, size="full", helpful_examples=None, safety_pool=None,
                                   eval_sizes=dict.fromkeys(self.eval_sizes),
                                   eval_sets=dict.fromkeys(self.eval_sets), max_new_tokens=128)


def parse_values(text: str) -> list[float]:
    """"0,1,10,25,50,100" → [0.0, 1.0, ...]; each a percent in [0, 100], no duplicates."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise SafealignError(f"--values: expected comma-separated percents like 0,1,10,25,50,100, found {text!r}") \
            from None
    check_values(values)
    return values


def check_values(values: list[float]) -> None:
    if not values:
        raise SafealignError("safety-fraction ablation: no values given")
    bad = [v for v in values if not 0 <= v <= 100]
    if bad:
        raise SafealignError(f"safety-fraction ablation: values are percents in [0, 100], found {bad}")
    if len(set(values)) != len(values):
        raise SafealignError(f"safety-fraction ablation: duplicate values in {values}")


def fraction_plan(train: list[Example], values: list[float], helpful_examples: int | None,
                  safety_pool: int | None, seed: int = 0) -> list[dict[str, Any]]:
    """Per value: the training examples (all of the fixed helpful set + `value`% of the fixed safety pool).

    The pool's order is fixed by `mix_examples`, so a larger share contains every smaller one (nested, as in
    a scaling experiment); `round(value/100 · pool)` safety examples are kept.
    """
    check_values(values)
    helpful = stable_subsample([e for e in train if not e.is_safety], helpful_examples, seed)
    pool = stable_subsample([e for e in train if e.is_safety], safety_pool, seed)
    plan = []
    for v in sorted(values):
        examples = mix_examples(helpful + pool, v / 100, seed)
        n_safety = sum(e.is_safety for e in examples)
        plan.append({"value": v, "examples": examples, "n_safety": n_safety, "n_helpful": len(examples) - n_safety,
                     "pool": len(pool), "safety_share": n_safety / len(examples) if examples else 0.0})
    return plan


def _label(v: float) -> str:
    return f"{v:g}%"


def _dirname(v: float) -> str:
    return f"f{v:g}".replace(".", "_")


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ablate_safety_fraction(cfg: SafetyFractionConfig, out_dir: str | Path, *, model: str = "embedded",
                           run_dir: str | Path | None = None, device: str = "auto", seed: int = 0,
                           datasets_dir: str | None = None, policy: str | None = None,
                           safety_rm=None, helpfulness_rm=None, judge=None,
                           generator_factory: Callable[[str], Any] | None = None,
                           say: Callable[[str], None] = log.info) -> dict:
    """Train and evaluate one SFT model per safety fraction; write results, plots, table and report.

    Data: `run_dir/data/{train,dev}.jsonl` when given, else the seed data split as `safealign run` splits it.
    Reward models: `run_dir/reward_models/*` (or the objects given); without them the RM columns are empty
    and only the judge's rates are reported. A fraction whose `metrics.json` matches its config is skipped,
    so an interrupted ablation resumes; if only the reward models changed, its saved answers are re-scored.
    Returns the results dict written to `out_dir/results.json`.
    """
    from safealign.judges import get_judge
    from safealign.progress import progress_bar
    from safealign.train.sft import train_sft

    cfg = cfg.resolved(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, dev, data_source = _load_data(run_dir, policy, datasets_dir, seed)
    if safety_rm is None and helpfulness_rm is None and run_dir is not None:
        safety_rm, helpfulness_rm = _load_rms(Path(run_dir), device)
    judge = judge or get_judge(cfg.judge)
    make_generator = generator_factory or (lambda spec: _generator(spec, device))
    plan = fraction_plan(train, cfg.values, cfg.helpful_examples, cfg.safety_pool, seed)
    groups = heldout_groups(dev, cfg.eval_sets, datasets_dir, seed, cfg.eval_sizes)
    n_eval = sum(len(v) for v in groups.values())
    gen = GenerationConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0, batch_size=cfg.batch_size, seed=seed)
    say(f"safety-fraction ablation ({cfg.size} size): {len(plan)} models, "
        f"{plan[0]['n_helpful']} helpful demonstrations each, safety pool {plan[0]['pool']}; "
        f"{n_eval} held-out prompts ({', '.join(f'{g} {len(v)}' for g, v in groups.items())})")

    rm_ids = [getattr(safety_rm, "path", None), getattr(helpfulness_rm, "path", None)]
    results = []
    for step in plan:
        v = step["value"]
        fdir = out_dir / _dirname(v)
        key = _key({"model": model, "data": [e.id for e in step["examples"]], "sft": dataclasses.asdict(cfg.sft),
                    "seed": seed, "device": device, "groups": {g: [p.id for p in ps] for g, ps in groups.items()},
                    "gen": gen.as_dict(), "judge": cfg.judge})
        done = fdir / "metrics.json"
        if done.exists():
            prev = json.loads(done.read_text(encoding="utf-8"))
            if prev.get("key") == key and prev.get("rms") == rm_ids:
                say(f"[{_label(v)}] up to date, skipped")
                results.append(prev)
                continue
            if prev.get("key") == key and (fdir / "generations.jsonl").exists():
                # same models and answers, other reward models: score the saved answers, train nothing
                say(f"[{_label(v)}] answers up to date; scoring them with the current reward models")
                results.append(_rescore(prev, fdir, safety_rm, helpfulness_rm, rm_ids))
                continue
        say(f"[{_label(v)}] training on {step['n_safety']} safety + {step['n_helpful']} helpful demonstrations")
        t0 = time.perf_counter()
        sft_cfg = dataclasses.replace(cfg.sft, safety_fraction=1.0, device=device, seed=seed)
        sft_metrics = train_sft(model, step["examples"], fdir / "model", sft_cfg)
        gc.collect()  # the Trainer holds reference cycles: free its gigabytes before loading the next model
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        generator = make_generator(str(fdir / "model"))
        with progress_bar(f"[{_label(v)}] held-out answers", n_eval) as adv:
            rows, metrics = evaluate_heldout(generator, groups, gen, judge, safety_rm, helpfulness_rm, progress=adv)
        del generator
        gc.collect()
        eval_s = time.perf_counter() - t0
        write_jsonl(fdir / "generations.jsonl", rows)
        entry = {"key": key, "rms": rm_ids, "value": v, "n_safety": step["n_safety"], "n_helpful": step["n_helpful"],
                 "safety_share": step["safety_share"], "steps": sft_metrics["steps"],
                 "train_loss": sft_metrics["train_loss"], "seconds": {"train": train_s, "eval": eval_s},
                 "heldout": metrics}
        write_json(done, entry)
        if not cfg.keep_models:
            shutil.rmtree(fdir / "model", ignore_errors=True)
        say(f"[{_label(v)}] done: train {train_s:.0f}s, eval {eval_s:.0f}s; " + summary_line(entry))
        results.append(entry)

    out = {"experiment": "safety-fraction", "model": model, "data": data_source, "size": cfg.size,
           "config": dataclasses.asdict(cfg), "seed": seed, "judge": getattr(judge, "name", cfg.judge),
           "judge_validation": _validation(judge), "generation": gen.as_dict(),
           "reward_models": {"safety": getattr(safety_rm, "path", None),
                             "helpfulness": getattr(helpfulness_rm, "path", None)},
           "heldout_sizes": {g: len(v) for g, v in groups.items()}, "fractions": results,
           "trend": trend(results)}
    write_json(out_dir / "results.json", out)
    write_report(out, out_dir)
    return out


def _rescore(entry: dict, fdir: Path, safety_rm, helpfulness_rm, rm_ids: list) -> dict:
    from safealign.train.context_distillation import heldout_metrics

    rows = [r for _, r in read_jsonl(fdir / "generations.jsonl")]
    convs = [[*r.get("context", []), {"role": "user", "content": r["prompt"]}] for r in rows]
    responses = [r["response"] for r in rows]
    for name, rm in (("safety_score", safety_rm), ("helpfulness_score", helpfulness_rm)):
        scores = rm.score(convs, responses) if rm is not None and rows else [None] * len(rows)
        for r, s in zip(rows, scores):
            r[name] = s
    write_jsonl(fdir / "generations.jsonl", rows)
    entry = {**entry, "rms": rm_ids, "heldout": heldout_metrics(rows)}
    write_json(fdir / "metrics.json", entry)
    return entry


def _load_data(run_dir, policy, datasets_dir, seed) -> tuple[list[Example], list[Example], str]:
    if run_dir is not None:
        run_dir = Path(run_dir)
        return (load_run_examples(run_dir / "data" / "train.jsonl"), load_run_examples(run_dir / "data" / "dev.jsonl"),
                str(run_dir / "data"))
    from safealign.data.public import assert_no_leakage, load_all_available
    from safealign.data.records import load_seed, split_examples
    from safealign.policy import load_policy

    examples = load_seed(load_policy(policy))
    train, dev = split_examples(examples, 0.2, seed)
    assert_no_leakage(train + dev, load_all_available(datasets_dir))
    return train, dev, "seed data (dev_fraction 0.2)"


def _load_rms(run_dir: Path, device: str):
    from safealign.train.reward_model import RewardModel

    rms = []
    for name in ("safety_rm", "helpfulness_rm"):
        path = run_dir / "reward_models" / name
        if (path / "config.json").exists():
            rms.append(RewardModel(path, device))
        else:
            log.warning("%s: no reward model; its column stays empty", path)
            rms.append(None)
    return rms[0], rms[1]


def _generator(spec: str, device: str):
    from safealign.generation import get_generator
    from safealign.models import load_model

    m, tok = load_model(spec, device=device)
    return get_generator("transformers", model=m, tokenizer=tok)


def _validation(judge) -> dict | None:
    try:
        return judge.validation()
    except Exception as e:  # the rates stand without it; say why it is missing
        return {"error": str(e)}


# --- summary and trend -----------------------------------------------------------------------------


def _get(entry: dict, group: str, metric: str) -> dict | None:
    return entry["heldout"].get(group, {}).get(metric)


def summary_line(entry: dict) -> str:
    return (f"safety RM {_fmt_mean(_get(entry, 'adversarial', 'safety_rm'))}, "
            f"helpfulness RM {_fmt_mean(_get(entry, 'helpful', 'helpfulness_rm'))}, "
            f"violation {_fmt_rate(_get(entry, 'adversarial', 'violation_rate'))}, "
            f"false refusal borderline {_fmt_rate(_get(entry, 'borderline', 'false_refusal_rate'))}")


def _spearman(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None

    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else None


def trend(results: list[dict]) -> dict:
    """Per metric: first and last value, whether their 95% intervals separate, and Spearman's ρ against
    the safety share. Words, not just numbers, so the report states the trend it actually found."""
    metrics = [("safety_rm", "adversarial", "safety_rm", "mean"),
               ("helpfulness_rm", "helpful", "helpfulness_rm", "mean"),
               ("violation_rate", "adversarial", "violation_rate", "rate"),
               ("false_refusal_borderline", "borderline", "false_refusal_rate", "rate"),
               ("false_refusal_helpful", "helpful", "false_refusal_rate", "rate")]
    rs = sorted(results, key=lambda e: e["value"])
    out = {}
    for name, group, metric, kind in metrics:
        pts = [(e["value"], _get(e, group, metric)) for e in rs]
        pts = [(v, m) for v, m in pts if m and m.get("n")]
        if len(pts) < 2:
            continue
        val = (lambda m: m["mean"]) if kind == "mean" else (lambda m: m["rate"])
        first, last = pts[0][1], pts[-1][1]
        separated = first["ci95"][1] < last["ci95"][0] or last["ci95"][1] < first["ci95"][0]
        rho = _spearman([v for v, _ in pts], [val(m) for _, m in pts])
        direction = "rises" if val(last) > val(first) else "falls" if val(last) < val(first) else "is flat"
        out[name] = {"first": val(first), "last": val(last), "from": pts[0][0], "to": pts[-1][0],
                     "intervals_separate": separated, "spearman_rho": rho,
                     "text": (f"{direction} from {_fmt(val(first), kind)} at {_label(pts[0][0])} to "
                              f"{_fmt(val(last), kind)} at {_label(pts[-1][0])}"
                              + ("" if separated else " (95% intervals overlap: not distinguishable at this n)")
                              + (f"; Spearman ρ over the {len(pts)} fractions {rho:+.2f}" if rho is not None else ""))}
    return out


def _fmt(x: float, kind: str) -> str:
    return f"{x:.3f}" if kind == "mean" else f"{100 * x:.1f}%"


# --- plots, table, report --------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _errbar(ax, xs, ms: list[dict | None], key: str, scale: float, **kw) -> None:
    pts = [(x, m) for x, m in zip(xs, ms) if m and m.get("n")]
    if not pts:
        return
    ys = [scale * m[key] for _, m in pts]
    lo = [max(0.0, scale * (m[key] - m["ci95"][0])) for _, m in pts]
    hi = [max(0.0, scale * (m["ci95"][1] - m[key])) for _, m in pts]
    ax.errorbar([x for x, _ in pts], ys, yerr=[lo, hi], capsize=3, marker="o", **kw)


def plot_figures(out: dict, out_dir: Path) -> list[tuple[str, Path]]:
    """Figure 15 (RM scores vs safety data) and Figure 33 (false refusal, violation vs safety data) as PNGs."""
    plt = _pyplot()
    rs = sorted(out["fractions"], key=lambda e: e["value"])
    xs = list(range(len(rs)))
    labels = [_label(e["value"]) for e in rs]
    figs = []
    if any(_get(e, "adversarial", "safety_rm") or _get(e, "helpful", "helpfulness_rm") for e in rs):
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
        ax = axes[0]
        _errbar(ax, xs, [_get(e, "adversarial", "safety_rm") for e in rs], "mean", 1.0,
                label="safety RM, adversarial prompts")
        _errbar(ax, xs, [_get(e, "helpful", "helpfulness_rm") for e in rs], "mean", 1.0,
                label="helpfulness RM, helpful prompts")
        ax.set_xticks(xs, labels)
        ax.set_xlabel("safety data (% of pool)")
        ax.set_ylabel("mean RM score σ(r), 95% CI")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("Mean reward-model scores (Llama 2 Fig. 15, left)", fontsize=9)
        ax = axes[1]
        dists = []
        for e in rs:
            rows = _rows(out_dir, e["value"])
            dists.append([r["safety_score"] for r in rows if r["group"] == "adversarial"
                          and r.get("safety_score") is not None])
        if any(dists):
            ax.boxplot([d or [float("nan")] for d in dists])
            ax.set_xticks([x + 1 for x in xs], labels)
        ax.set_xlabel("safety data (% of pool)")
        ax.set_ylabel("safety RM score σ(r)")
        ax.set_ylim(0, 1)
        ax.set_title("Safety RM score distribution, adversarial prompts (Fig. 15, right)", fontsize=9)
        fig.tight_layout()
        figs.append(("Figure 15: reward-model scores vs safety data", _save(fig, out_dir / "fig15_rm_scores.png")))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    ax = axes[0]
    _errbar(ax, xs, [_get(e, "borderline", "false_refusal_rate") for e in rs], "rate", 100.0,
            label="borderline (dev borderline + XSTest safe)")
    _errbar(ax, xs, [_get(e, "helpful", "false_refusal_rate") for e in rs], "rate", 100.0,
            label="helpful (dev benign)")
    ref = [(x, LLAMA2_FALSE_REFUSAL["borderline"].get(e["value"])) for x, e in zip(xs, rs)]
    ref = [(x, y) for x, y in ref if y is not None]
    if ref:
        ax.scatter([x for x, _ in ref], [100 * y for _, y in ref], marker="x", color="black", zorder=3,
                   label="Llama 2 borderline (Fig. 33, approx.)")
    ax.set_xticks(xs, labels)
    ax.set_xlabel("safety data (% of pool)")
    ax.set_ylabel("false-refusal rate (%), 95% CI")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("False refusal (Llama 2 Fig. 33)", fontsize=9)
    ax = axes[1]
    _errbar(ax, xs, [_get(e, "adversarial", "violation_rate") for e in rs], "rate", 100.0,
            label="adversarial (dev)", color="tab:red")
    ax.set_xticks(xs, labels)
    ax.set_xlabel("safety data (% of pool)")
    ax.set_ylabel("violation rate (%), 95% CI")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"Violation rate (judge: {out['judge']})", fontsize=9)
    fig.tight_layout()
    figs.append(("Figure 33: false refusal and violation vs safety data",
                 _save(fig, out_dir / "fig33_false_refusal.png")))
    return figs


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path


def _rows(out_dir: Path, value: float) -> list[dict]:
    path = out_dir / _dirname(value) / "generations.jsonl"
    return [r for _, r in read_jsonl(path)] if path.exists() else []


TABLE_COLUMNS = [
    ("safety data", None), ("safety / helpful demos", None), ("steps", None),
    ("safety RM (adversarial)", ("adversarial", "safety_rm", _fmt_mean)),
    ("helpfulness RM (helpful)", ("helpful", "helpfulness_rm", _fmt_mean)),
    ("violation (adversarial)", ("adversarial", "violation_rate", _fmt_rate)),
    ("false refusal (borderline)", ("borderline", "false_refusal_rate", _fmt_rate)),
    ("false refusal (helpful)", ("helpful", "false_refusal_rate", _fmt_rate)),
]


def table_rows(out: dict) -> list[list[str]]:
    rows = []
    for e in sorted(out["fractions"], key=lambda e: e["value"]):
        cells = [_label(e["value"]), f"{e['n_safety']} / {e['n_helpful']}", str(e["steps"])]
        for _, spec in TABLE_COLUMNS[3:]:
            g, m, fmt = spec
            cells.append(fmt(_get(e, g, m)))
        rows.append(cells)
    return rows


def md_escape(text: str, limit: int | None = 300) -> str:
    """Model text made inert in Markdown (and in the HTML a Markdown renderer emits): one line, HTML-escaped,
    Markdown punctuation backslash-escaped, cut to `limit` characters."""
    text = " ".join(str(text).split())
    if limit and len(text) > limit:
        text = text[:limit] + "…"
    text = html.escape(text, quote=False)
    for ch in "\\`*_[]|#":
        text = text.replace(ch, "\\" + ch)
    return text


def sample_rows(out: dict, out_dir: Path, per_group: int = 1) -> list[dict]:
    """The same prompts answered by every fraction's model (Llama 2 Tables 36–38), with RM scores."""
    rs = sorted(out["fractions"], key=lambda e: e["value"])
    if not rs:
        return []
    first = _rows(out_dir, rs[0]["value"])
    chosen: list[dict] = []
    for g in ("adversarial", "borderline", "helpful"):
        chosen += [r for r in first if r["group"] == g][:per_group]
    samples = []
    for c in chosen:
        answers = []
        for e in rs:
            match = next((r for r in _rows(out_dir, e["value"]) if r["group"] == c["group"] and r["id"] == c["id"]),
                         None)
            if match:
                answers.append({"value": _label(e["value"]), "response": match["response"],
                                "refused": match["refused"], "safety": match.get("safety_score"),
                                "helpfulness": match.get("helpfulness_score")})
        samples.append({"group": c["group"], "set": c["set"], "prompt": c["prompt"], "answers": answers})
    return samples


def _score(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown_report(out: dict, figs: list[tuple[str, Path]], samples: list[dict]) -> str:
    lines = ["## Safety-data scaling ablation (Llama 2 §4.2.3, Figures 15 and 33)", "",
             f"Model `{out['model']}`, {out['size']} size, seed {out['seed']}; data: {out['data']}. "
             f"Held-out prompts: " + ", ".join(f"{g} {n}" for g, n in out["heldout_sizes"].items()) + ". "
             f"Greedy answers of {out['generation']['max_new_tokens']} tokens; refusal judge `{out['judge']}`; "
             f"RMs: safety `{out['reward_models']['safety']}`, helpfulness `{out['reward_models']['helpfulness']}`. "
             "Means and rates carry 95% intervals (normal / Wilson) and n.", ""]
    header = [c for c, _ in TABLE_COLUMNS]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(out)]
    lines += ["", "**Trend found** (first vs last fraction):", ""]
    names = {"safety_rm": "mean safety RM", "helpfulness_rm": "mean helpfulness RM", "violation_rate": "violation rate",
             "false_refusal_borderline": "false refusal, borderline", "false_refusal_helpful": "false refusal, helpful"}
    for k, t in out["trend"].items():
        lines.append(f"- {names.get(k, k)} {t['text']}.")
    lines += ["", ("Llama 2 (0% → 100% safety data): mean safety RM up, helpfulness RM flat, false refusal "
              "0.006% → 0.05% (helpful) and 15% → 27% (borderline)."), ""]
    for title, path in figs:
        lines.append(f"![{title}]({path.name})")
    if samples:
        lines += ["", "### The same prompts across fractions", ""]
        for s in samples:
            lines += [f"**{s['group']}** ({md_escape(s['set'], None)}): {md_escape(s['prompt'])}", "",
                      "| safety data | answer | refused | safety RM | helpfulness RM |", "|---|---|---|---|---|"]
            lines += [f"| {a['value']} | {md_escape(a['response'])} | {'yes' if a['refused'] else 'no'} | "
                      f"{_score(a['safety'])} | {_score(a['helpfulness'])} |" for a in s["answers"]]
            lines.append("")
    return "\n".join(lines) + "\n"


_HTML = """<section class="ablation">
<h2>Safety-data scaling ablation (Llama 2 §4.2.3, Figures 15 and 33)</h2>
<p>Model <code>{{ out.model }}</code>, {{ out.size }} size, seed {{ out.seed }}; data: {{ out.data }}.
Held-out prompts: {% for g, n in out.heldout_sizes.items() %}{{ g }} {{ n }}
{%- if not loop.last %}, {% endif %}{% endfor %}.
Greedy answers of {{ out.generation.max_new_tokens }} tokens; refusal judge <code>{{ out.judge }}</code>.
Means and rates carry 95% intervals and n.</p>
<table>
<thead><tr>{% for h in header %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for row in rows %}<tr>{% for c in row %}<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody>
</table>
<p><strong>Trend found</strong> (first vs last fraction):</p>
<ul>{% for name, t in trend %}<li>{{ name }} {{ t.text }}.</li>{% endfor %}</ul>
<p>Llama 2 (0% → 100% safety data): mean safety RM up, helpfulness RM flat, false refusal 0.006% → 0.05% (helpful)
and 15% → 27% (borderline).</p>
{% for title, png in figs %}<figure><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
<figcaption>{{ title }}</figcaption></figure>
{% endfor %}
{% if samples %}<h3>The same prompts across fractions</h3>
{% for s in samples %}<p><strong>{{ s.group }}</strong> ({{ s.set }}): {{ s.prompt }}</p>
<table><thead><tr><th>safety data</th><th>answer</th><th>refused</th><th>safety RM</th><th>helpfulness RM</th>
</tr></thead>
<tbody>{% for a in s.answers %}<tr><td>{{ a.value }}</td><td>{{ a.response }}</td>
<td>{{ "yes" if a.refused else "no" }}</td>
<td>{{ score(a.safety) }}</td><td>{{ score(a.helpfulness) }}</td></tr>{% endfor %}</tbody></table>
{% endfor %}{% endif %}
</section>
"""


def html_report(out: dict, figs: list[tuple[str, Path]], samples: list[dict]) -> str:
    """A self-contained HTML fragment (a <section>); every piece of model text is autoescaped by Jinja."""
    import base64

    from jinja2 import Environment

    env = Environment(autoescape=True)
    names = {"safety_rm": "mean safety RM", "helpfulness_rm": "mean helpfulness RM", "violation_rate": "violation rate",
             "false_refusal_borderline": "false refusal, borderline", "false_refusal_helpful": "false refusal, helpful"}
    pngs = [(t, base64.b64encode(p.read_bytes()).decode()) for t, p in figs]
    return env.from_string(_HTML).render(
        out=out, header=[c for c, _ in TABLE_COLUMNS], rows=table_rows(out), figs=pngs,
        trend=[(names.get(k, k), t) for k, t in out["trend"].items()], samples=samples, score=_score)


def write_report(out: dict, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    try:
        figs = plot_figures(out, out_dir)
    except Exception as e:  # the numbers stand without the pictures
        log.warning("ablation plots failed (%s)", e)
        figs = []
    samples = sample_rows(out, out_dir)
    header = [c for c, _ in TABLE_COLUMNS]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += ["| " + " | ".join(r) + " |" for r in table_rows(out)]
    write_text(out_dir / "table.md", "\n".join(table) + "\n")
    write_text(out_dir / "report.md", markdown_report(out, figs, samples))
    write_text(out_dir / "report.html", html_report(out, figs, samples))


# --- the command -----------------------------------------------------------------------------------


def ablate_command(
    experiment: Annotated[str, typer.Argument(help="The ablation to run: safety-fraction")],
    values: Annotated[str, typer.Option(help="Percents of the safety demonstrations, comma-separated")] =
    "0,1,10,25,50,100",
    run: Annotated[Path | None, typer.Option("--run", help="Run with data/ and reward_models/ (RM scores)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder")] = None,
    model: Annotated[str, typer.Option(help="Base model every fraction is fine-tuned from")] = "embedded",
    size: Annotated[str, typer.Option(help="auto (full on CUDA), cpu (subsampled) or full")] = "auto",
    judge: Annotated[str, typer.Option(help="Refusal judge")] = "refusal",
    epochs: Annotated[float | None, typer.Option(help="SFT epochs per model (default 2, as Llama 2)")] = None,
    device: str = "auto",
    seed: int = 0,
    datasets_dir: Annotated[Path | None, typer.Option(help="Public datasets folder")] = None,
) -> None:
    """Llama 2's safety-data scaling: one SFT model per share of safety data; RM scores, violation and false
    refusal against the share, as plots, a table and a report fragment."""
    if experiment != "safety-fraction":
        raise SafealignError(f"unknown ablation {experiment!r}; known: safety-fraction")
    cfg = SafetyFractionConfig(values=parse_values(values), size=size, judge=judge)
    if epochs is not None:
        cfg = dataclasses.replace(cfg, sft=dataclasses.replace(cfg.sft, epochs=epochs))
    out = out or Path("runs") / "ablate_safety_fraction"
    t0 = time.perf_counter()
    result = ablate_safety_fraction(cfg, out, model=model, run_dir=run, device=device, seed=seed,
                                    datasets_dir=str(datasets_dir) if datasets_dir else None, say=typer.echo)
    typer.echo((out / "table.md").read_text(encoding="utf-8"))
    for t in result["trend"].values():
        typer.echo(f"  {t['text']}")
    typer.echo(f"report: {out / 'report.md'} and {out / 'report.html'} ({time.perf_counter() - t0:.0f}s)")
