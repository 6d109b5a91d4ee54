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
from safealign.data.records import Example, load_examples, seed_files, split_examples
from safealign.errors import SafealignError
from safealign.evaluate.safety import SafetyEvalConfig
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
        for stale in self.run_dir.glob(f".{self.name}.*.tmp"):  # left by a run killed with SIGKILL
            shutil.rmtree(stale, ignore_errors=True)
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


def prepare_data(cfg: RunConfig) -> tuple[list[Example], list[Example]]:
    """Load, validate and split the training data; refuse any overlap with the evaluation sets.

    Runs before anything is written, so bad input leaves the run directory as it was.
    """
    policy = load_policy(cfg.policy)
    files = (seed_files() if cfg.data.use_seed else []) + list(cfg.data.extra_files)
    if not files:
        raise SafealignError("no training examples: enable data.use_seed or give data.extra_files")
    examples = load_examples(files, policy, cfg.data.max_prompt_chars)  # ids unique across all files
    train, dev = split_examples(examples, cfg.data.dev_fraction, cfg.seed)
    # The evaluated sets must exist now, not after an hour of training.
    load_eval_sets(cfg.eval.sets, cfg.datasets_dir, cfg.seed)
    # Leakage is checked against every public set present, not just the ones evaluated in this run.
    assert_no_leakage(train + dev, load_all_available(cfg.datasets_dir))
    return train, dev


def _data_hash(examples: list[Example]) -> str:
    return stable_hash([e.as_dict() for e in examples])


def _load_examples_jsonl(path: Path) -> list[Example]:
    fields = {f.name for f in dataclasses.fields(Example)}
    return [Example(**{k: v for k, v in obj.items() if k in fields}) for _, obj in read_jsonl(path)]


class Runner:
    """Runs the recipe's stages in order; each stage hashes its config with its inputs' hashes."""

    def __init__(self, cfg: RunConfig, run_dir: Path, progress_log: Callable[[str], None]):
        self.cfg, self.run_dir, self.say = cfg, run_dir, progress_log
        self.results: dict[str, Any] = {"stages": {}}
        self.timings: dict[str, float] = {}

    def stage(self, name: str, config: Any, inputs: dict[str, str], work: Callable[[Path], dict]) -> str:
        st = Stage(self.run_dir, name, config, inputs)
        t0 = time.perf_counter()
        self.say(f"[{name}] ...")
        self.results["stages"][name] = st.run(work)
        manifest = st.manifest()
        self.timings[name] = manifest["seconds"]
        self.say(f"[{name}] done in {manifest['seconds']:.0f}s (this invocation {time.perf_counter() - t0:.0f}s)")
        return st.hash

    # -- stages ------------------------------------------------------------------------------------------
    def data(self, train: list[Example], dev: list[Example]) -> str:
        cfg = self.cfg

        def work(tmp: Path) -> dict:
            from safealign.audit import headline, run_audit

            write_jsonl(tmp / "train.jsonl", [e.as_dict() for e in train])
            write_jsonl(tmp / "dev.jsonl", [e.as_dict() for e in dev])
            # Llama 2 audited its training data before training; we audit the fine-tuning mix (PII,
            # pronouns, identity terms, languages; toxicity off here: the judge costs minutes on first use).
            audit = headline(run_audit([tmp / "train.jsonl"], tmp / "audit", toxicity_sample=0.0))
            return {"train": len(train), "dev": len(dev), "audit": audit,
                    "train_adversarial": sum(e.is_safety for e in train),
                    "train_benign": sum(not e.is_safety for e in train),
                    "train_borderline": sum(e.borderline for e in train),
                    "dev_adversarial": sum(e.is_safety for e in dev), "dev_benign": sum(not e.is_safety for e in dev),
                    "leakage_check": "no training or dev prompt equals a public evaluation prompt (normalised text)"}

        return self.stage("data", {"data": dataclasses.asdict(cfg.data), "seed": cfg.seed, "policy": cfg.policy},
                          {"examples": _data_hash(train + dev)}, work)

    def evaluate(self, name: str, model: ModelRef, dev: list[Example], data_hash: str,
                 eval_cfg: SafetyEvalConfig | None = None, rm_hash: str | None = None) -> str:
        """Safety evaluation of `model`; with reward models, also the mean gated reward on the dev split."""
        cfg = self.cfg
        ecfg = eval_cfg or cfg.eval

        def work(tmp: Path) -> dict:
            from safealign.evaluate.safety import collect_prompts, run_safety_eval
            from safealign.judges import get_judge
            from safealign.progress import progress_bar

            prompts = collect_prompts(ecfg, dev, cfg.datasets_dir, cfg.seed)
            judge = get_judge(ecfg.judge)
            generator = self.generator(model.spec)
            with progress_bar(f"{name}: generating", len(prompts)) as advance:
                rows, metrics = run_safety_eval(generator, prompts, ecfg, judge, cfg.seed, progress=advance)
            if rm_hash:
                metrics["reward"] = self.dev_rewards([r for r in rows if r["set"].startswith("dev_")])
            write_jsonl(tmp / "generations.jsonl", rows)
            write_json(tmp / "metrics.json", metrics)
            metrics["model"] = model.spec
            return metrics

        return self.stage(name, {"eval": dataclasses.asdict(ecfg), "seed": cfg.seed,
                                 "backend": cfg.generation_backend},
                          {"model": model.hash, "data": data_hash, "reward_models": rm_hash or ""}, work)

    def dev_rewards(self, rows: list[dict]) -> dict:
        """Mean gated reward R_c and both RM scores over held-out dev answers (Llama 2 Figure 11's axes)."""
        gated = self.gated_reward()
        convs = [[*r["context"], {"role": "user", "content": r["prompt"]}] for r in rows]
        parts = gated.components(convs, [r["response"] for r in rows], [r["harmful"] for r in rows])
        n = max(1, len(rows))
        return {"n": len(rows), "mean_gated": sum(parts.gated) / n, "mean_safety_rm": sum(parts.safety) / n,
                "mean_helpfulness_rm": sum(parts.helpfulness) / n,
                "gate_threshold": self.cfg.reward_models.gate_threshold}

    def gated_reward(self):
        if getattr(self, "_gated", None) is None:
            from safealign.train.gated_reward import GatedReward
            from safealign.train.reward_model import RewardModel

            rms = self.run_dir / "reward_models"
            self._gated = GatedReward(RewardModel(rms / "safety_rm", self.cfg.device),
                                      RewardModel(rms / "helpfulness_rm", self.cfg.device),
                                      threshold=self.cfg.reward_models.gate_threshold, lazy=False)
        return self._gated

    def rejection_sampling(self, model: ModelRef, rm_hash: str, data_hash: str, heldout: bool = True) -> ModelRef:
        """`heldout`: also measure the mean greedy reward on held-out prompts before and after (off when
        stage evaluations measure it on the whole dev split anyway)."""
        cfg = self.cfg
        rs = dataclasses.replace(cfg.rlhf.rejection_sampling, device=cfg.device, seed=cfg.seed)
        config = {"rs": dataclasses.asdict(rs), "heldout": cfg.rlhf.heldout_prompts if heldout else 0}
        inputs = {"model": model.hash, "reward_models": rm_hash, "data": data_hash}
        work_dir = self.run_dir / ".work" / f"rejection_sampling-{stable_hash([config, inputs])}"

        def work(tmp: Path) -> dict:
            from safealign.train.rejection_sampling import run_rejection_sampling

            train = _load_examples_jsonl(self.run_dir / "data" / "train.jsonl")
            return run_rejection_sampling(model.spec, train, self.gated_reward(), tmp, rs,
                                          heldout=self.heldout() if heldout else None, work_dir=work_dir)

        h = self.stage("rejection_sampling", config, inputs, work)
        shutil.rmtree(work_dir, ignore_errors=True)
        return ModelRef(str(self.run_dir / "rejection_sampling" / "model"), h)

    def rl(self, model: ModelRef, rm_hash: str, data_hash: str) -> ModelRef:
        cfg = self.cfg
        algo = cfg.rlhf.algorithm
        if algo not in ("ppo", "rloo"):
            raise SafealignError(f"rlhf.algorithm must be ppo or rloo, found {algo!r}")
        stage_cfg = dataclasses.replace(getattr(cfg.rlhf, algo), device=cfg.device, seed=cfg.seed)
        config = {algo: dataclasses.asdict(stage_cfg), "heldout": cfg.rlhf.heldout_prompts,
                  "gate": cfg.reward_models.gate_threshold}
        inputs = {"model": model.hash, "reward_models": rm_hash, "data": data_hash}
        work_dir = self.run_dir / ".work" / f"{algo}-{stable_hash([config, inputs])}"

        def work(tmp: Path) -> dict:
            train = _load_examples_jsonl(self.run_dir / "data" / "train.jsonl")
            if algo == "ppo":
                from safealign.train.ppo import train_ppo

                return train_ppo(model.spec, train, self.gated_reward(), tmp, stage_cfg,
                                 value_model_spec=self.run_dir / "reward_models" / "safety_rm",
                                 heldout=self.heldout(), work_dir=work_dir)
            from safealign.train.rloo import train_rloo

            return train_rloo(model.spec, train, self.gated_reward(), tmp, stage_cfg, work_dir=work_dir)

        h = self.stage(algo, config, inputs, work)
        shutil.rmtree(work_dir, ignore_errors=True)
        return ModelRef(str(self.run_dir / algo / "model"), h)

    def context_distillation(self, model: ModelRef, rm_hash: str, data_hash: str) -> ModelRef:
        cfg = self.cfg

        def work(tmp: Path) -> dict:
            from safealign.train.context_distillation import run_context_distillation

            return run_context_distillation(cfg.context_distillation, model.spec, self.run_dir, tmp,
                                            device=cfg.device, seed=cfg.seed, datasets_dir=cfg.datasets_dir,
                                            policy=cfg.policy, say=self.say)

        h = self.stage("context_distillation", dataclasses.asdict(cfg.context_distillation),
                       {"model": model.hash, "reward_models": rm_hash, "data": data_hash}, work)
        return ModelRef(str(self.run_dir / "context_distillation" / "model"), h)

    def suite(self, model: ModelRef, dev: list[Example]) -> str:
        cfg = self.cfg

        def work(tmp: Path) -> dict:
            from safealign.evaluate.suite import run_suite

            return run_suite(model.spec, cfg.suite, tmp, {"seed": cfg.seed, "device": cfg.device,
                                                         "datasets_dir": cfg.datasets_dir,
                                                         "generation_backend": cfg.generation_backend},
                             dev=dev, say=self.say)

        return self.stage("suite", {"suite": cfg.suite, "seed": cfg.seed}, {"model": model.hash}, work)

    def redteam(self, base: ModelRef, final: ModelRef) -> str:
        """Attack the base model, then the final one; the final run's fix rate is against the base run."""
        cfg = self.cfg

        def work(tmp: Path) -> dict:
            from safealign.redteam.run import run_redteam

            rc = dataclasses.replace(cfg.redteam, seed=cfg.seed, datasets_dir=cfg.datasets_dir)
            before = run_redteam(base.spec, cfg.redteam_seeds, tmp / "base", rc)
            after = run_redteam(final.spec, cfg.redteam_seeds, tmp / "final",
                                dataclasses.replace(rc, previous=str(tmp / "base")))
            return {"base": before, "final": after}

        return self.stage("redteam", {"redteam": dataclasses.asdict(cfg.redteam), "seeds": cfg.redteam_seeds},
                          {"base": base.hash, "final": final.hash}, work)

    def heldout(self) -> list[Example]:
        dev = _load_examples_jsonl(self.run_dir / "data" / "dev.jsonl")
        adv = [e for e in dev if e.is_safety][: self.cfg.rlhf.heldout_prompts // 2]
        ben = [e for e in dev if not e.is_safety][: self.cfg.rlhf.heldout_prompts - len(adv)]
        return adv + ben

    def sft(self, model: ModelRef, data_hash: str) -> ModelRef:
        cfg = self.cfg

        def work(tmp: Path) -> dict:
            from safealign.train.sft import train_sft

            examples = _load_examples_jsonl(self.run_dir / "data" / "train.jsonl")
            return train_sft(model.spec, examples, tmp / "model", dataclasses.replace(cfg.sft, device=cfg.device,
                                                                                     seed=cfg.seed))

        h = self.stage("sft", {"sft": dataclasses.asdict(cfg.sft), "device": cfg.device},
                       {"model": model.hash, "data": data_hash}, work)
        return ModelRef(str(self.run_dir / "sft" / "model"), h)

    def preferences(self, variants: dict[str, ModelRef], data_hash: str) -> str:
        cfg = self.cfg

        def work(tmp: Path) -> dict:
            from safealign.judges import get_judge
            from safealign.progress import progress_bar
            from safealign.train.preference_data import build_pairs

            pc = cfg.preferences
            judge = get_judge(pc.judge)
            harm = get_judge(pc.harm_judge) if pc.harm_judge else None
            gens = {name: self.generator(ref.spec) for name, ref in variants.items()}
            out = {}
            for split, n in (("train", pc.n_prompts), ("dev", pc.n_dev_prompts)):
                examples = _load_examples_jsonl(self.run_dir / "data" / f"{split}.jsonl")
                total = min(n, len(examples)) * len(gens)
                with progress_bar(f"preferences ({split}): sampling", total) as advance:
                    pairs, stats = build_pairs(examples, gens, dataclasses.replace(pc, n_prompts=n), judge, harm,
                                               progress=advance)
                write_jsonl(tmp / f"{split}_pairs.jsonl", [p.as_dict() for p in pairs])
                out[split] = stats
            return out

        return self.stage("preferences", {"preferences": dataclasses.asdict(cfg.preferences), "seed": cfg.seed},
                          {**{k: v.hash for k, v in variants.items()}, "data": data_hash}, work)

    def reward_models(self, init: ModelRef, pairs_hash: str) -> str:
        cfg = self.cfg

        def work(tmp: Path) -> dict:
            from safealign.data.preferences import load_pairs
            from safealign.train.reward_model import safety_mix, train_reward_model

            rc = cfg.reward_models
            pairs = load_pairs(self.run_dir / "preferences" / "train_pairs.jsonl")
            safety_pairs = safety_mix(pairs, rc.helpfulness_share_in_safety, cfg.seed)
            helpful_pairs = [p for p in pairs if not p.is_safety]
            return {
                "safety_rm": train_reward_model(init.spec, safety_pairs, tmp / "safety_rm",
                                                dataclasses.replace(rc.safety, device=cfg.device, seed=cfg.seed)),
                "helpfulness_rm": train_reward_model(init.spec, helpful_pairs, tmp / "helpfulness_rm",
                                                     dataclasses.replace(rc.helpfulness, device=cfg.device,
                                                                         seed=cfg.seed)),
            }

        rc = dataclasses.asdict(cfg.reward_models)
        return self.stage("reward_models", {k: rc[k] for k in ("safety", "helpfulness",
                                                               "helpfulness_share_in_safety", "init_from")},
                          {"init": init.hash, "pairs": pairs_hash}, work)

    def rm_eval(self, rm_hash: str) -> str:
        cfg = self.cfg

        def work(tmp: Path) -> dict:
            from safealign.data.preferences import load_hh_rlhf, load_pairs
            from safealign.evaluate.reward_models import evaluate_reward_models
            from safealign.paths import dataset_file
            from safealign.train.reward_model import RewardModel

            rc = cfg.reward_models
            dev = load_pairs(self.run_dir / "preferences" / "dev_pairs.jsonl")
            hh_s = hh_h = []
            if rc.hh_eval_pairs:
                hh_s = load_hh_rlhf(dataset_file("hh_rlhf/harmless-base/test.jsonl.gz", cfg.datasets_dir), True,
                                    rc.hh_eval_pairs)
                hh_h = load_hh_rlhf(dataset_file("hh_rlhf/helpful-base/test.jsonl.gz", cfg.datasets_dir), False,
                                    rc.hh_eval_pairs)
            rms = self.run_dir / "reward_models"
            metrics, plots = evaluate_reward_models(
                RewardModel(rms / "safety_rm", cfg.device), RewardModel(rms / "helpfulness_rm", cfg.device),
                dev, hh_s, hh_h, rc.gate_threshold)
            write_json(tmp / "metrics.json", metrics)
            write_json(tmp / "plots.json", plots)
            return metrics

        return self.stage("rm_eval", {"hh_eval_pairs": cfg.reward_models.hh_eval_pairs,
                                      "gate_threshold": cfg.reward_models.gate_threshold},
                          {"reward_models": rm_hash}, work)

    # -- helpers -----------------------------------------------------------------------------------------
    def generator(self, spec: str):
        from safealign.generation import get_generator
        from safealign.models import load_model
        from safealign.models.loading import resolve_model_path

        if self.cfg.generation_backend == "vllm":
            return get_generator("vllm", model_path=resolve_model_path(spec))
        model, tok = load_model(spec, device=self.cfg.device)
        return get_generator("transformers", model=model, tokenizer=tok)


@dataclasses.dataclass(frozen=True)
class ModelRef:
    spec: str
    hash: str


def run_pipeline(cfg: RunConfig, out: str | Path, progress_log: Callable[[str], None] = print) -> dict:
    run_dir = Path(out)
    train, dev = prepare_data(cfg)  # validation first: bad input must not touch the run directory
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg_dict = cfg.as_dict()
    write_text(run_dir / "config.yaml",
               f"# config hash: {stable_hash(cfg_dict)}\n" + yaml.safe_dump(cfg_dict, sort_keys=False))
    r = Runner(cfg, run_dir, progress_log)
    on = cfg.stages.get
    data_hash = r.data(train, dev)
    dev = _load_examples_jsonl(run_dir / "data" / "dev.jsonl")
    base = ModelRef(str(cfg.model), stable_hash(str(cfg.model)))
    if on("base_eval", True):
        r.evaluate("base_eval", base, dev, data_hash)
    model = r.sft(base, data_hash) if on("sft", True) else base
    rm_hash = None
    if on("reward_models", True):
        pairs_hash = r.preferences({"base": base, "sft": model} if model != base else {"base": base}, data_hash)
        init = model if cfg.reward_models.init_from == "sft" else base
        rm_hash = r.reward_models(init, pairs_hash)
        r.rm_eval(rm_hash)
    evals = on("stage_evals", True) and rm_hash is not None
    if evals and model != base:
        r.evaluate("sft_eval", model, dev, data_hash, cfg.stage_eval, rm_hash)
    if rm_hash and on("rejection_sampling", True):
        model = r.rejection_sampling(model, rm_hash, data_hash, heldout=not evals)
        if evals:
            r.evaluate("rejection_sampling_eval", model, dev, data_hash, cfg.stage_eval, rm_hash)
    if rm_hash and on("rl", True):
        model = r.rl(model, rm_hash, data_hash)
        # When RL trains the final model, the final evaluation (dev split and gated reward included) is its
        # stage evaluation: a second pass over the same dev prompts would cost minutes for nothing new.
        final_eval_is_rl_eval = on("final_eval", True) and not on("context_distillation", False)
        if evals and not final_eval_is_rl_eval:
            r.evaluate(f"{cfg.rlhf.algorithm}_eval", model, dev, data_hash, cfg.stage_eval, rm_hash)
    if rm_hash and on("context_distillation", False):
        model = r.context_distillation(model, rm_hash, data_hash)
    if on("final_eval", True):
        r.evaluate("final_eval", model, dev, data_hash, rm_hash=rm_hash)
    if on("suite", False):
        r.suite(model, dev)
    if on("redteam", False):
        r.redteam(base, model)
    export_final(run_dir, model.spec, model.hash)
    from safealign.report import write_report

    write_report(run_dir, r.timings)
    r.results["timings"] = r.timings
    return r.results


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
