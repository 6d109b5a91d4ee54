"""The evaluation suite: safety (violation by risk category, XSTest false refusal, MultiJail by language) and
the automatic benchmarks Llama 2 reports (ToxiGen, TruthfulQA, BOLD), on any model, in one call.

    metrics = run_suite("embedded", "quick", "runs/eval-base")          # ≤ 20 min on 2 CPU cores
    metrics = run_suite("runs/default", "full", "runs/eval-final-full")  # Llama 2's sizes (a GPU job)

Two presets: `quick` (subsampled; every group of every benchmark still present) and `full` (Llama 2's sizes:
ToxiGen 13 × 500, all 817 TruthfulQA questions, all 23,638 BOLD prompts; every public safety set whole).
`cfg` (a SuiteConfig, a mapping or None) and `key=value` overrides change any field.

Files written under `out_dir`:
    metrics.json                 everything below plus the config, data hashes and timings
    generations.jsonl            safety prompts, responses, refusal verdicts
    toxigen.jsonl, bold.jsonl, truthfulqa_gen.jsonl, truthfulqa_mc.jsonl
    parts/<benchmark>.json       one per finished benchmark: a killed run resumes at the first unfinished one

The returned metrics keep the safety evaluation's keys at the top level (headline, sets, by_category,
by_attack_vector, judge, generation), so anything reading the slice-one eval stages reads these too.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safealign.errors import SafealignError
from safealign.evaluate.bold import BOLDConfig
from safealign.evaluate.safety import SafetyEvalConfig
from safealign.evaluate.toxigen import ToxiGenConfig
from safealign.evaluate.truthfulqa import TruthfulQAConfig
from safealign.io import read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

BENCHMARKS = ("safety", "toxigen", "truthfulqa_mc", "truthfulqa_gen", "bold")
MULTIJAIL_LANGUAGES = ("en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv")


@dataclass
class SuiteConfig:
    name: str = "quick"
    seed: int = 0
    device: str = "auto"
    datasets_dir: str | None = None
    """Folder of public datasets; default $SAFEALIGN_DATASETS or ../shared/datasets."""
    generation_backend: str = "transformers"
    """transformers (CPU/GPU) or vllm (GPU); TruthfulQA MC always scores with transformers."""
    benchmarks: list[str] = field(default_factory=lambda: list(BENCHMARKS))
    safety: SafetyEvalConfig = field(default_factory=SafetyEvalConfig)
    toxigen: ToxiGenConfig = field(default_factory=ToxiGenConfig)
    truthfulqa: TruthfulQAConfig = field(default_factory=TruthfulQAConfig)
    bold: BOLDConfig = field(default_factory=BOLDConfig)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # Sized for ≤ 20 min on the embedded 135M model on 2 CPU cores; every group stays present, with wide
    # intervals that the report prints.
    "quick": {
        "safety": {"sets": {"xstest_safe": 100, "xstest_unsafe": 50, "advbench": 40, "harmbench_val": 40,
                            "do_not_answer": 40, **{f"multijail_{lang}": 8 for lang in MULTIJAIL_LANGUAGES}},
                   "include_dev": False, "max_new_tokens": 48},
        "toxigen": {"per_group": 8, "max_new_tokens": 32},
        "truthfulqa": {"mc_questions": 60, "gen_questions": 60, "max_new_tokens": 32},
        "bold": {"per_group": 4, "max_new_tokens": 32},
    },
    # Llama 2's sizes (§4.1, A.4.7) and every public safety set whole.
    "full": {
        "safety": {"sets": {"xstest_safe": None, "xstest_unsafe": None, "advbench": None, "harmbench_val": None,
                            "do_not_answer": None, **{f"multijail_{lang}": None for lang in MULTIJAIL_LANGUAGES}},
                   "include_dev": False, "max_new_tokens": 64},
        "toxigen": {"per_group": 500, "max_new_tokens": 48},
        "truthfulqa": {"mc_questions": None, "gen_questions": None, "max_new_tokens": 48},
        "bold": {"per_group": None, "max_new_tokens": 48},
    },
}


def _deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "sets":  # a sets mapping replaces
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def suite_config(suite: str = "quick", cfg: SuiteConfig | dict | None = None, overrides: list[str] | None = None
                 ) -> SuiteConfig:
    """The preset `suite`, then `cfg` (a mapping merges into it; a SuiteConfig is taken as is), then overrides."""
    from safealign.config import _build, _set_dotted  # one validating builder for every config in the project

    if isinstance(cfg, SuiteConfig):
        raw = cfg.as_dict()
    else:
        if suite not in PRESETS:
            raise SafealignError(f"unknown suite {suite!r}; known: {', '.join(PRESETS)}")
        raw = _deep_merge({"name": suite, **PRESETS[suite]}, cfg or {})
    import yaml

    for item in overrides or []:
        if "=" not in item:
            raise SafealignError(f"override {item!r}: expected key=value")
        key, _, value = item.partition("=")
        _set_dotted(raw, key.strip(), yaml.safe_load(value))
    built = _build(SuiteConfig, raw, f"suite {suite}")
    unknown = [b for b in built.benchmarks if b not in BENCHMARKS]
    if unknown:
        raise SafealignError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    return built


# --- helpers ---------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_hashes(cfg: SuiteConfig) -> dict[str, str]:
    """sha256 of every dataset file the configured benchmarks read (relative path → hash)."""
    from safealign.paths import datasets_root

    root = datasets_root(cfg.datasets_dir)
    rels: list[str] = []
    if "safety" in cfg.benchmarks:
        files = {"xstest": "xstest/xstest_prompts.csv", "advbench": "advbench/harmful_behaviors.csv",
                 "harmbench": "harmbench/harmbench_behaviors_text_val.csv",
                 "do_not_answer": "do_not_answer/do_not_answer_en.csv", "multijail": "multijail/MultiJail.csv"}
        rels += [f for k, f in files.items() if any(s.startswith(k) for s in cfg.safety.sets)]
    if "toxigen" in cfg.benchmarks:
        rels += [f"toxigen/prompts/{lab}_{g}_1k.txt.gz" for g in cfg.toxigen.groups for lab in ("hate", "neutral")]
    if "truthfulqa_mc" in cfg.benchmarks:
        rels.append("truthfulqa/mc_task.json")
    if "truthfulqa_gen" in cfg.benchmarks:
        rels.append("truthfulqa/TruthfulQA.csv")
    if "bold" in cfg.benchmarks:
        rels += [f"bold/prompts/{d}_prompt.json" for d in cfg.bold.domains]
    return {r: _sha256(root / r) for r in rels if (root / r).exists()}


def _model_fingerprint(model_spec: str) -> str:
    """The spec plus, for a local model, its weight files' sizes and times: retraining in place invalidates parts."""
    from safealign.models.loading import resolve_model_path

    try:
        path = Path(resolve_model_path(model_spec))
    except SafealignError:
        return str(model_spec)
    if not path.is_dir():
        return str(model_spec)
    stats = sorted((f.name, f.stat().st_size, int(f.stat().st_mtime)) for f in path.iterdir()
                   if f.suffix in (".safetensors", ".bin", ".json"))
    return json.dumps([str(model_spec), stats])


def _torch_threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return None


def _samples(rows: list[dict], n: int, key: str) -> list[dict]:
    """Up to n rows spread over the values of `key` (group, domain, set), for the report."""
    seen: dict[str, list[dict]] = {}
    for r in rows:
        seen.setdefault(str(r.get(key)), []).append(r)
    out: list[dict] = []
    while len(out) < n and any(seen.values()):
        for k in list(seen):
            if seen[k] and len(out) < n:
                out.append(seen[k].pop(0))
    return out


class _Parts:
    """Finished benchmarks under out_dir/parts/, keyed by a hash of what produced them."""

    def __init__(self, out_dir: Path):
        self.dir = out_dir / "parts"

    def get(self, name: str, key: str) -> dict | None:
        path = self.dir / f"{name}.json"
        if not path.exists():
            return None
        try:
            part = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None
        return part if part.get("hash") == key else None

    def put(self, name: str, key: str, metrics: dict, seconds: float, cpu_seconds: float) -> None:
        write_json(self.dir / f"{name}.json", {"hash": key, "seconds": seconds, "cpu_seconds": cpu_seconds,
                                               "metrics": metrics})


# --- the suite -------------------------------------------------------------------------------------


def run_suite(model_spec: str, suite: str = "quick", out_dir: str | Path = "runs/eval", cfg: SuiteConfig | dict | None = None,
              dev: list | None = None, overrides: list[str] | None = None, say=None, resume: bool = True) -> dict:
    """Evaluate `model_spec` (hub id, model dir, run dir or `embedded`) with the `suite` preset; return metrics.

    `dev`: the run's held-out dev examples (safealign.data.records.Example), scored as dev_adversarial /
    dev_benign beside the public sets when given (the pipeline passes them; `safealign eval` has none).
    `resume`: reuse benchmarks already finished in out_dir/parts with the same model, config and data (their
    key does not cover judge code or weights: pass resume=False after changing a judge).
    """
    from safealign.progress import progress_bar

    cfg = suite_config(suite, cfg, overrides)
    if dev:
        cfg.safety.include_dev = True
    say = say or (lambda m: log.info(m))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = _Parts(out)
    t_start, c_start = time.perf_counter(), time.process_time()
    fingerprint = _model_fingerprint(model_spec)
    hashes = data_hashes(cfg)
    state: dict[str, Any] = {}

    def model_and_tokenizer():
        if "hf" not in state:
            from safealign.models import load_model

            state["hf"] = load_model(model_spec, device=cfg.device)
        return state["hf"]

    def generator():
        if "gen" not in state:
            from safealign.generation import get_generator

            if cfg.generation_backend == "vllm":
                from safealign.models.loading import resolve_model_path

                state["gen"] = get_generator("vllm", model_path=resolve_model_path(model_spec))
            else:
                model, tok = model_and_tokenizer()
                state["gen"] = get_generator(cfg.generation_backend, model=model, tokenizer=tok)
        return state["gen"]

    def judge(name: str):
        if ("judge", name) not in state:
            from safealign.judges import get_judge

            state[("judge", name)] = get_judge(name)
        return state[("judge", name)]

    def tqa_judge(spec: str, kind: str):
        if ("tqa", spec, kind) not in state:
            from safealign.evaluate.truthfulqa import get_truthfulqa_judge

            state[("tqa", spec, kind)] = get_truthfulqa_judge(spec, kind, cfg.datasets_dir, **cfg.truthfulqa.judge_kwargs)
        return state[("tqa", spec, kind)]

    results: dict[str, dict] = {}
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name in cfg.benchmarks:
        sub = {"safety": cfg.safety, "toxigen": cfg.toxigen, "truthfulqa_mc": cfg.truthfulqa,
               "truthfulqa_gen": cfg.truthfulqa, "bold": cfg.bold}[name]
        key = hashlib.sha256(json.dumps({"model": fingerprint, "config": dataclasses.asdict(sub), "seed": cfg.seed,
                                         "backend": cfg.generation_backend, "data": hashes,
                                         "dev": [getattr(e, "id", str(e)) for e in dev or []]},
                                        sort_keys=True, default=str).encode()).hexdigest()[:16]
        done = parts.get(name, key) if resume else None
        if done:
            say(f"[{name}] already done in {out}/parts (hash {key}), reused")
            results[name], timings[name], cpu[name] = done["metrics"], done["seconds"], done.get("cpu_seconds", 0.0)
            continue
        say(f"[{name}] ...")
        t0, c0 = time.perf_counter(), time.process_time()
        results[name] = _RUNNERS[name](cfg, out, generator, model_and_tokenizer, judge, tqa_judge, dev, progress_bar)
        timings[name] = time.perf_counter() - t0
        # CPU seconds of this process: with one thread, an upper bound on the wall time on an idle machine.
        cpu[name] = time.process_time() - c0
        parts.put(name, key, results[name], timings[name], cpu[name])
        say(f"[{name}] done in {timings[name]:.0f}s wall, {cpu[name]:.0f}s CPU")

    metrics = assemble(cfg, model_spec, results, timings, hashes)
    metrics["timings"]["total_seconds"] = time.perf_counter() - t_start
    metrics["timings"]["cpu_seconds"] = {k: round(v, 1) for k, v in cpu.items()}
    metrics["timings"]["cpu_total_seconds"] = time.process_time() - c_start
    metrics["timings"]["torch_threads"] = _torch_threads()
    write_json(out / "metrics.json", metrics)
    return metrics


def assemble(cfg: SuiteConfig, model_spec: str, results: dict[str, dict], timings: dict[str, float],
             hashes: dict[str, str]) -> dict:
    """One metrics mapping: safety keys on top (slice-one compatible), benchmarks and judges beside them."""
    safety = results.get("safety") or {}
    metrics: dict[str, Any] = {k: v for k, v in safety.items() if k != "samples"}
    metrics.setdefault("headline", {})
    metrics.setdefault("sets", {})
    metrics.setdefault("by_category", {})
    metrics.setdefault("by_attack_vector", {})
    if safety:
        metrics["by_language"] = {s.split("_", 1)[1]: v["violation_rate"] for s, v in safety["sets"].items()
                                  if s.startswith("multijail_")}
    bench = {k: v for k, v in results.items() if k != "safety"}
    judges: dict[str, Any] = {}
    if safety.get("judge"):
        judges["refusal"] = safety["judge"]
    if bench.get("toxigen", {}).get("judges"):
        judges["toxicity"] = bench["toxigen"]["judges"]
    judges.update(bench.get("truthfulqa_gen", {}).get("judges") or {})
    metrics.update({
        "suite": cfg.name, "model": str(model_spec), "benchmarks": bench, "judges": judges,
        "timings": {k: round(v, 1) for k, v in timings.items()}, "data_hashes": hashes, "config": cfg.as_dict(),
    })
    return metrics


# --- one function per benchmark: (cfg, out, ...) -> metrics; rows go to out/<name>.jsonl ------------------


def _judge_entry(j) -> dict:
    try:
        v = j.validation()
    except Exception as e:  # the numbers stand without it; say why it is missing
        log.warning("judge %s: validation unavailable (%s)", j.name, e)
        v = {"error": str(e)}
    return {"name": j.name, "validation": v}


def _safety(cfg, out, generator, _mt, judge, _tq, dev, progress_bar) -> dict:
    from safealign.evaluate.safety import collect_prompts, run_safety_eval

    prompts = collect_prompts(cfg.safety, dev or [], cfg.datasets_dir, cfg.seed)
    with progress_bar("safety: generating", len(prompts)) as advance:
        rows, metrics = run_safety_eval(generator(), prompts, cfg.safety, judge(cfg.safety.judge), cfg.seed,
                                        progress=advance)
    write_jsonl(out / "generations.jsonl", rows)
    return metrics


def _toxigen(cfg, out, generator, _mt, judge, _tq, _dev, progress_bar) -> dict:
    from safealign.evaluate.toxigen import load_toxigen_prompts, run_toxigen

    c = cfg.toxigen
    prompts = load_toxigen_prompts(c.groups, c.per_group, cfg.seed, cfg.datasets_dir)
    j = judge(c.judge)
    with progress_bar("toxigen: generating", len(prompts)) as advance:
        rows, metrics = run_toxigen(generator(), prompts, j, c, cfg.seed, progress=advance)
    write_jsonl(out / "toxigen.jsonl", rows)
    metrics["judges"] = _judge_entry(j)
    metrics["samples"] = _samples(rows, c.samples, "group")
    return metrics


def _truthfulqa_mc(cfg, out, _gen, model_and_tokenizer, _j, _tq, _dev, progress_bar) -> dict:
    from safealign.evaluate.truthfulqa import QA_PRIMER, LoglikScorer, load_mc_items, run_truthfulqa_mc, stable_sample

    c = cfg.truthfulqa
    items = stable_sample(load_mc_items(cfg.datasets_dir), c.mc_questions, cfg.seed, key=lambda it: it.question)
    model, tok = model_and_tokenizer()
    scorer = LoglikScorer(model, tok, c.mc_batch_size, shared_prefix=QA_PRIMER)
    n_choices = sum(len(set(it.mc1_choices) | set(it.mc2_choices)) for it in items)
    with progress_bar("truthfulqa mc: scoring choices", n_choices) as advance:
        rows, metrics = run_truthfulqa_mc(scorer, items, progress=advance)
    write_jsonl(out / "truthfulqa_mc.jsonl", rows)
    return metrics


def _truthfulqa_gen(cfg, out, generator, _mt, _j, tqa_judge, _dev, progress_bar) -> dict:
    from safealign.evaluate.truthfulqa import load_qa_items, run_truthfulqa_gen, stable_sample
    from safealign.generation import GenerationConfig

    c = cfg.truthfulqa
    if c.prompt_format not in ("chat", "continuation"):
        raise SafealignError(f"truthfulqa.prompt_format must be chat or continuation, found {c.prompt_format!r}")
    items = stable_sample(load_qa_items(cfg.datasets_dir), c.gen_questions, cfg.seed, key=lambda it: it.question)
    truth, info = tqa_judge(c.truth_judge, "truth"), tqa_judge(c.info_judge, "info")
    gcfg = GenerationConfig(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p,
                            batch_size=c.batch_size, seed=cfg.seed, chat=c.prompt_format == "chat")
    with progress_bar("truthfulqa gen: generating", len(items)) as advance:
        rows, metrics = run_truthfulqa_gen(generator(), items, truth, info, gcfg, progress=advance)
    write_jsonl(out / "truthfulqa_gen.jsonl", rows)
    metrics["generation"] = {**gcfg.as_dict(), "backend": getattr(generator(), "name", "?"),
                             "prompt_format": c.prompt_format}
    metrics["judges"] = {"truthfulqa_truth": _judge_entry(truth), "truthfulqa_info": _judge_entry(info)}
    metrics["samples"] = _samples(rows, c.samples, "category")
    return metrics


def _bold(cfg, out, generator, _mt, _j, _tq, _dev, progress_bar) -> dict:
    from safealign.evaluate.bold import load_bold_prompts, run_bold

    c = cfg.bold
    prompts = load_bold_prompts(c.domains, c.per_group, c.drop_groups, cfg.seed, cfg.datasets_dir)
    with progress_bar("bold: generating", len(prompts)) as advance:
        rows, metrics = run_bold(generator(), prompts, c, cfg.seed, progress=advance)
    write_jsonl(out / "bold.jsonl", rows)
    metrics["samples"] = _samples(rows, c.samples, "domain")
    return metrics


_RUNNERS = {"safety": _safety, "toxigen": _toxigen, "truthfulqa_mc": _truthfulqa_mc,
            "truthfulqa_gen": _truthfulqa_gen, "bold": _bold}


def load_eval_metrics(path: str | Path) -> dict:
    """metrics.json of an eval directory (what `run_suite` wrote)."""
    p = Path(path)
    p = p / "metrics.json" if p.is_dir() else p
    if not p.exists():
        raise SafealignError(f"{p}: no metrics.json (not an evaluation directory)")
    return json.loads(p.read_text(encoding="utf-8"))


def read_rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl(path)] if path.exists() else []
