"""What changed between two evaluations: every shared number side by side, with a significance test.

    safealign compare runs/default:base_eval runs/default:final_eval
    safealign compare runs/eval-base runs/eval-tuned

A side is a run directory (its last evaluated stage, or `RUN:STAGE`), an evaluation directory written by
`safealign eval` (metrics.json), or a metrics.json file. Rates are compared with a two-proportion z-test,
means (MC2, BOLD sentiment) with Welch's z on their standard errors; p < 0.05 marks a change as significant.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from safealign.errors import SafealignError


@dataclass
class Number:
    key: str
    label: str
    value: float
    kind: str  # "rate" | "mean"
    n: int
    k: int | None = None
    std: float | None = None
    ci95: tuple[float, float] | None = None
    higher_is_better: bool | None = None

    def text(self) -> str:
        if self.kind == "rate":
            lo, hi = self.ci95 or (math.nan, math.nan)
            return f"{100 * self.value:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] (n={self.n})"
        lo, hi = self.ci95 or (math.nan, math.nan)
        return f"{self.value:.3f} [{lo:.3f}, {hi:.3f}] (n={self.n})"


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def p_value(a: Number, b: Number) -> float | None:
    """Two-sided p for 'a and b differ': pooled two-proportion z-test for rates, Welch's z for means."""
    if a.n == 0 or b.n == 0:
        return None
    if a.kind == "rate" and a.k is not None and b.k is not None:
        p = (a.k + b.k) / (a.n + b.n)
        se = math.sqrt(p * (1 - p) * (1 / a.n + 1 / b.n))
        if se == 0:
            return 1.0
        return 2 * _normal_sf(abs(a.value - b.value) / se)
    if a.kind == "mean" and a.std is not None and b.std is not None and a.n > 1 and b.n > 1:
        se = math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n)
        if se == 0:
            return 1.0 if a.value == b.value else 0.0
        return 2 * _normal_sf(abs(a.value - b.value) / se)
    return None


def _rate(key, label, d, higher_is_better=False) -> Number | None:
    if not d or not d.get("n"):
        return None
    return Number(key, label, d["rate"], "rate", d["n"], d.get("k"), ci95=tuple(d["ci95"]),
                  higher_is_better=higher_is_better)


def _mean(key, label, d, higher_is_better=None) -> Number | None:
    if not d or not d.get("n"):
        return None
    return Number(key, label, d["mean"], "mean", d["n"], std=d.get("std"), ci95=tuple(d["ci95"]),
                  higher_is_better=higher_is_better)


def flatten(m: dict) -> dict[str, Number]:
    """Every comparable number in one evaluation's metrics, keyed by a stable dotted name."""
    out: list[Number | None] = []
    head = m.get("headline") or {}
    labels = {"violation_rate_core": "violation: XSTest unsafe + AdvBench + HarmBench val (pooled)",
              "false_refusal_rate_xstest_safe": "false refusal: XSTest safe",
              "violation_rate_dev": "violation: dev split", "false_refusal_rate_dev": "false refusal: dev split",
              "false_refusal_rate_dev_borderline": "false refusal: dev borderline"}
    for k, v in head.items():
        out.append(_rate(f"safety.{k}", labels.get(k, k), v))
    for s, e in (m.get("sets") or {}).items():
        out.append(_rate(f"safety.sets.{s}.violation", f"{s}: violation", e.get("violation_rate")))
        out.append(_rate(f"safety.sets.{s}.false_refusal", f"{s}: false refusal", e.get("false_refusal_rate")))
        out.append(_rate(f"safety.sets.{s}.full_refusal", f"{s}: full refusal", e.get("full_refusal_rate")))
        out.append(_rate(f"safety.sets.{s}.partial_refusal", f"{s}: partial refusal", e.get("partial_refusal_rate")))
    for c, v in (m.get("by_category") or {}).items():
        out.append(_rate(f"safety.category.{c}", f"risk category {c}: violation", v))
    for a, v in (m.get("by_attack_vector") or {}).items():
        out.append(_rate(f"safety.attack_vector.{a}", f"attack vector {a}: violation", v))
    b = m.get("benchmarks") or {}
    if "toxigen" in b:
        t = b["toxigen"]
        out.append(_rate("toxigen.overall", "ToxiGen: % toxic (all groups)", t.get("overall")))
        for g, v in (t.get("by_group") or {}).items():
            out.append(_rate(f"toxigen.group.{g}", f"ToxiGen {v.get('label', g)}: % toxic", v))
    if "truthfulqa_mc" in b:
        t = b["truthfulqa_mc"]
        out.append(_rate("truthfulqa.mc1", "TruthfulQA MC1", t.get("mc1"), True))
        out.append(_mean("truthfulqa.mc2", "TruthfulQA MC2", t.get("mc2"), True))
    if "truthfulqa_gen" in b:
        t = b["truthfulqa_gen"]
        out.append(_rate("truthfulqa.true_info", "TruthfulQA gen: % true and informative", t.get("true_info"), True))
        out.append(_rate("truthfulqa.true", "TruthfulQA gen: % true", t.get("true"), True))
        out.append(_rate("truthfulqa.info", "TruthfulQA gen: % informative", t.get("info"), True))
    if "bold" in b:
        for d, e in (b["bold"].get("by_domain") or {}).items():
            out.append(_mean(f"bold.{d}", f"BOLD {d}: mean sentiment", e.get("mean")))
            for g, v in e.get("groups", {}).items():
                out.append(_mean(f"bold.{d}.{g}", f"BOLD {d} / {g}: mean sentiment", v))
    return {x.key: x for x in out if x is not None}


# --- loading a side --------------------------------------------------------------------------------


def eval_stages(run_dir: Path) -> dict[str, dict]:
    """Evaluated stages of a run in pipeline order: stage name → metrics (safety eval or suite)."""
    found = []
    for p in run_dir.glob("*/manifest.json"):
        try:
            man = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            continue
        m = man.get("metrics") or {}
        if isinstance(m, dict) and ("suite" in m or ("headline" in m and "sets" in m)):
            found.append((man.get("started") or "", 0 if p.parent.name.startswith("base") else 1, p.parent.name, m))
    found.sort()
    return {name: m for _, _, name, m in found}


def load_side(spec: str) -> tuple[str, dict]:
    """(label, metrics) for `RUN`, `RUN:STAGE`, an evaluation dir or a metrics.json file."""
    path, _, stage = spec.partition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    p = Path(path)
    if p.is_file():
        return spec, json.loads(p.read_text(encoding="utf-8"))
    if not p.is_dir():
        raise SafealignError(f"{path}: not a run directory, evaluation directory or metrics.json")
    stages = eval_stages(p)
    if stage:
        if stage not in stages:
            raise SafealignError(f"{path}: no evaluated stage {stage!r}; found: {', '.join(stages) or 'none'}")
        return spec, stages[stage]
    if stages:
        last = list(stages)[-1]
        return f"{path}:{last}", stages[last]
    if (p / "metrics.json").exists():
        m = json.loads((p / "metrics.json").read_text(encoding="utf-8"))
        if "suite" in m or "headline" in m:
            return spec, m
    raise SafealignError(f"{path}: no evaluated stage and no metrics.json from `safealign eval`")


@dataclass
class Change:
    label: str
    a: Number | None
    b: Number | None
    p: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b.value - self.a.value

    @property
    def significant(self) -> bool:
        return self.p is not None and self.p < 0.05

    @property
    def verdict(self) -> str:
        if self.a is None or self.b is None:
            return "only in " + ("B" if self.a is None else "A")
        if not self.significant:
            return "no significant change" if self.delta else "same"
        hib = self.a.higher_is_better
        if hib is None:
            return "changed (p<0.05)"
        return "better (p<0.05)" if (self.delta > 0) == hib else "worse (p<0.05)"


def compare_metrics(a: dict, b: dict) -> list[Change]:
    fa, fb = flatten(a), flatten(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    return [Change((fa.get(k) or fb.get(k)).label, fa.get(k), fb.get(k),
                   p_value(fa[k], fb[k]) if k in fa and k in fb else None) for k in keys]


def _delta_text(c: Change) -> str:
    if c.delta is None:
        return "–"
    return f"{100 * c.delta:+.1f} pts" if c.a.kind == "rate" else f"{c.delta:+.3f}"


def compare_markdown(spec_a: str, spec_b: str, show_all: bool = False) -> str:
    la, a = load_side(spec_a)
    lb, b = load_side(spec_b)
    changes = compare_metrics(a, b)
    sig = [c for c in changes if c.significant]
    lines = [f"# {la} → {lb}", "",
             f"A = `{la}` ({a.get('model', '?')}, suite {a.get('suite', 'safety eval')}); "
             f"B = `{lb}` ({b.get('model', '?')}, suite {b.get('suite', 'safety eval')}).",
             f"{len(changes)} numbers compared; {len(sig)} changed significantly (p < 0.05; two-proportion z-test "
             "for rates, Welch's z for means).", ""]
    for side, m, name in (("A", a, la), ("B", b, lb)):
        ja, jb = (m.get("judges") or {}), (m.get("judge") or {})
        names = sorted({v.get("name", "?") for v in ja.values()} | ({jb["name"]} if jb.get("name") else set()))
        if names:
            lines.append(f"Judges {side}: {', '.join(names)}.")
    if (a.get("judge") or {}).get("name") != (b.get("judge") or {}).get("name"):
        lines.append("**The refusal judges differ between A and B: safety rates are not comparable.**")
    lines += ["", "| measure | A | B | change | p | verdict |", "|---|---|---|---|---|---|"]
    for c in changes:
        if not show_all and not c.significant and c.a is not None and c.b is not None:
            continue
        lines.append(f"| {c.label} | {c.a.text() if c.a else '–'} | {c.b.text() if c.b else '–'} | {_delta_text(c)} | "
                     f"{'–' if c.p is None else f'{c.p:.3g}'} | {c.verdict} |")
    if not show_all:
        lines += ["", f"({len(changes) - len(sig)} numbers without a significant change hidden; --all shows them.)"]
    return "\n".join(lines) + "\n"
