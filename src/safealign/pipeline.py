"""The recipe runner: stages over a run directory, cached by config hash, resumable, atomic.

    runs/<name>/config.yaml        resolved config (with its hash)
    runs/<name>/<stage>/           outputs of one stage + manifest.json
    runs/<name>/final/             the final model
    runs/<name>/report.{md,html}   the report

A stage whose manifest carries the same hash (its own config + its inputs' hashes) is skipped. Each
stage is written into a temporary directory and renamed into place only when complete, so a crash
never leaves a half-written stage that looks finished; a killed run resumes at the first stage that
has no complete manifest.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from safealign.config import RunConfig, stable_hash
from safealign.data.public import assert_no_leakage, load_all_available, load_eval_sets
from safealign.data.records import Example, load_examples, load_seed, split_examples
from safealign.errors import SafealignError
from safealign.io import atomic_path, read_jsonl, write_json, write_jsonl, write_text
from safealign.policy import load_policy

log = logging.getLogger(__name__)


class Stage:
    """One stage's view of the run directory: its hash, whether it is done, its manifest."""

    def __init__(self, run_dir: Path, name: str, config: Any, inputs: dict[str, str]):
        self.run_dir, self.name = run_dir, name
        self.dir = run_dir / name
        self.hash = stable_hash({"stage": name, "config": config, "inputs": inputs})
        self.inputs = inputs

    def manifest(self) -> dict | None:
        path = self.dir / "manifest.json"
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    @property
    def done(self) -> bool:
        m = self.manifest()
        return bool(m) and m.get("hash") == self.hash and m.get("status") == "complete"

    def run(self, fn: Callable[[Path], dict]) -> dict:
        """Run `fn(tmp_dir) -> metrics` unless done; write outputs + manifest atomically."""
        if self.done:
            log.info("stage %s: up to date (hash %s), skipped", self.name, self.hash)
            return self.manifest()["metrics"]
        log.info("stage %s: running", self.name)
        started = datetime.now(timezone.utc).isoformat()
        t0 = time.perf_counter()
        with atomic_path(self.dir) as tmp:
            tmp.mkdir(parents=True)
            metrics = fn(tmp)
            write_json(tmp / "manifest.json", {
                "stage": self.name, "hash": self.hash, "inputs": self.inputs, "status": "complete",
                "started": started, "finished": datetime.now(timezone.utc).isoformat(),
                "seconds": time.perf_counter() - t0, "metrics": metrics,
            })
        return metrics


def prepare_data(cfg: RunConfig) -> tuple[list[Example], list[Example], list]:
    """Load, validate and split the training data; refuse any overlap with the evaluation sets.

    Runs before anything is written, so bad input leaves the run directory as it was.
    """
    policy = load_policy(cfg.policy)
    examples = load_seed(policy) if cfg.data.use_seed else []
    if cfg.data.extra_files:
        examples += load_examples(cfg.data.extra_files, policy, cfg.data.max_prompt_chars)
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SafealignError(f"duplicate example id {dup!r} across seed data and data.extra_files")
    if not examples:
        raise SafealignError("no training examples: enable data.use_seed or give data.extra_files")
    for e in examples:
        if len(e.prompt) > cfg.data.max_prompt_chars:
            raise SafealignError(f"{e.source}: record {e.id}: prompt longer than {cfg.data.max_prompt_chars} chars")
    train, dev = split_examples(examples, cfg.data.dev_fraction, cfg.seed)
    # The evaluated sets must exist now, not after an hour of training.
    load_eval_sets(cfg.eval.sets, cfg.datasets_dir, cfg.seed)
    # Leakage is checked against every public set present, not just the ones evaluated in this run.
    eval_all = load_all_available(cfg.datasets_dir)
    assert_no_leakage(train + dev, eval_all)
    return train, dev, eval_all


def _data_hash(examples: list[Example]) -> str:
    return stable_hash([e.as_dict() for e in examples])


def _load_examples_jsonl(path: Path) -> list[Example]:
    fields = {f.name for f in dataclasses.fields(Example)}
    return [Example(**{k: v for k, v in obj.items() if k in fields}) for _, obj in read_jsonl(path)]


def _model_dir(run_dir: Path, stage: str) -> Path:
    return run_dir / stage / "model"


def _eval_stage(cfg: RunConfig, run_dir: Path, name: str, model_spec: str, dev: list[Example],
                inputs: dict[str, str]) -> dict:
    from safealign.evaluate.safety import collect_prompts, run_safety_eval
    from safealign.generation import get_generator
    from safealign.judges import get_judge
    from safealign.models import load_model

    stage = Stage(run_dir, name, {"eval": dataclasses.asdict(cfg.eval), "seed": cfg.seed,
                                  "backend": cfg.generation_backend}, inputs)

    def work(tmp: Path) -> dict:
        prompts = collect_prompts(cfg.eval, dev, cfg.datasets_dir, cfg.seed)
        judge = get_judge(cfg.eval.judge)
        if cfg.generation_backend == "vllm":
            from safealign.models.loading import resolve_model_path

            generator = get_generator("vllm", model_path=resolve_model_path(model_spec))
        else:
            model, tok = load_model(model_spec, device=cfg.device)
            generator = get_generator("transformers", model=model, tokenizer=tok)
        from safealign.progress import progress_bar

        with progress_bar(f"{name}: generating", len(prompts)) as advance:
            rows, metrics = run_safety_eval(generator, prompts, cfg.eval, judge, cfg.seed, progress=advance)
        write_jsonl(tmp / "generations.jsonl", rows)
        write_json(tmp / "metrics.json", metrics)
        metrics["model"] = str(model_spec)
        return metrics

    return stage.run(work) | {"hash": stage.hash}


def run_pipeline(cfg: RunConfig, out: str | Path, progress_log: Callable[[str], None] = print) -> dict:
    run_dir = Path(out)
    train, dev, _ = prepare_data(cfg)  # validation first: bad input must not touch the run directory
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_dict = cfg.as_dict()
    write_text(run_dir / "config.yaml",
               f"# config hash: {stable_hash(cfg_dict)}\n" + yaml.safe_dump(cfg_dict, sort_keys=False))
    results: dict[str, Any] = {"stages": {}}
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], dict]) -> dict:
        t0 = time.perf_counter()
        progress_log(f"[{name}] ...")
        out = fn()
        manifest = json.loads((run_dir / name / "manifest.json").read_text())
        timings[name] = manifest["seconds"]
        progress_log(f"[{name}] done in {manifest['seconds']:.0f}s (this invocation {time.perf_counter() - t0:.0f}s)")
        results["stages"][name] = out
        return out

    data_stage = Stage(run_dir, "data", {"data": dataclasses.asdict(cfg.data), "seed": cfg.seed,
                                         "policy": cfg.policy}, {"examples": _data_hash(train + dev)})

    def data_work(tmp: Path) -> dict:
        write_jsonl(tmp / "train.jsonl", [e.as_dict() for e in train])
        write_jsonl(tmp / "dev.jsonl", [e.as_dict() for e in dev])
        return {"train": len(train), "dev": len(dev),
                "train_adversarial": sum(e.is_safety for e in train),
                "train_benign": sum(not e.is_safety for e in train),
                "train_borderline": sum(e.borderline for e in train),
                "dev_adversarial": sum(e.is_safety for e in dev), "dev_benign": sum(not e.is_safety for e in dev),
                "leakage_check": "no training or dev prompt equals a public evaluation prompt (normalised text)"}

    timed("data", lambda: data_stage.run(data_work) | {"hash": data_stage.hash})
    dev = _load_examples_jsonl(run_dir / "data" / "dev.jsonl")
    data_hash = data_stage.hash

    if cfg.stages.get("base_eval", True):
        timed("base_eval", lambda: _eval_stage(cfg, run_dir, "base_eval", cfg.model, dev,
                                               {"model": str(cfg.model), "data": data_hash}))
    model_spec, model_hash = cfg.model, stable_hash(str(cfg.model))
    if cfg.stages.get("sft", True):
        sft_stage = Stage(run_dir, "sft", {"sft": dataclasses.asdict(cfg.sft), "device": cfg.device},
                          {"model": str(cfg.model), "data": data_hash})

        def sft_work(tmp: Path) -> dict:
            from safealign.train.sft import train_sft

            examples = _load_examples_jsonl(run_dir / "data" / "train.jsonl")
            sft_cfg = dataclasses.replace(cfg.sft, device=cfg.device, seed=cfg.seed)
            return train_sft(cfg.model, examples, tmp / "model", sft_cfg)

        timed("sft", lambda: sft_stage.run(sft_work) | {"hash": sft_stage.hash})
        model_spec, model_hash = str(_model_dir(run_dir, "sft")), sft_stage.hash

    if cfg.stages.get("final_eval", True):
        timed("final_eval", lambda: _eval_stage(cfg, run_dir, "final_eval", model_spec, dev,
                                                {"model": model_hash, "data": data_hash}))
    export_final(run_dir, model_spec, model_hash)
    from safealign.report import write_report

    write_report(run_dir, timings)
    results["timings"] = timings
    return results


def export_final(run_dir: Path, model_spec: str, model_hash: str) -> Path:
    """runs/<name>/final/: the last stage's model (hard links, so no second copy on disk)."""
    from safealign.models.loading import resolve_model_path

    final = run_dir / "final"
    marker = final / "SOURCE"
    if marker.exists() and marker.read_text().strip() == model_hash:
        return final
    src = Path(resolve_model_path(model_spec))
    with atomic_path(final) as tmp:
        tmp.mkdir()
        for f in src.iterdir():
            if f.is_file():
                try:
                    os.link(f, tmp / f.name)
                except OSError:
                    shutil.copy2(f, tmp / f.name)
        (tmp / "SOURCE").write_text(model_hash + "\n")
    return final
