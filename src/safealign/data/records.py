"""Record types between stages, schema validation on load, the deterministic train/dev split.

An `Example` is a prompt with its demonstration: a safe answer that follows the policy guideline
for an adversarial prompt, a helpful answer for a benign one. Seed data lives in `seed/*.jsonl`
(schema in `seed/SCHEMA.md`), written by the safealign team.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from safealign.errors import DataError
from safealign.io import read_jsonl
from safealign.policy import Policy, load_policy

SEED_DIR = Path(__file__).with_name("seed")
KINDS = ("adversarial", "benign")


@dataclass
class Example:
    id: str
    kind: str
    prompt: str
    response: str
    category: str | None = None
    subcategory: str | None = None
    attack_vector: str | None = None
    technique: str | None = None
    borderline_type: str | None = None
    language: str = "en"
    context: list[dict[str, str]] = field(default_factory=list)
    source: str = ""

    @property
    def is_safety(self) -> bool:
        """Llama 2's is_safety(prompt): the prompt is adversarial (a safety prompt)."""
        return self.kind == "adversarial"

    @property
    def borderline(self) -> bool:
        return self.kind == "benign" and self.borderline_type is not None

    def conversation(self) -> list[dict[str, str]]:
        """The messages up to and including the final user turn."""
        return [*self.context, {"role": "user", "content": self.prompt}]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(cond: bool, path, rec, problem: str) -> None:
    if not cond:
        raise DataError(path, rec, problem)


def validate_record(obj: dict[str, Any], policy: Policy, path, where: str,
                    max_prompt_chars: int | None = None) -> Example:
    """Turn a raw JSON object into an Example, or raise DataError naming file, record and problem."""
    rec = f"{where} (id={obj.get('id', '?')})"
    for key in ("id", "kind", "prompt", "response"):
        _check(key in obj, path, rec, f"missing field {key!r}")
        _check(isinstance(obj[key], str), path, rec, f"field {key!r} must be a string")
    _check(obj["kind"] in KINDS, path, rec, f"unknown kind {obj['kind']!r} (expected one of {', '.join(KINDS)})")
    _check(bool(obj["prompt"].strip()), path, rec, "empty prompt")
    _check(bool(obj["response"].strip()), path, rec, "empty response")
    if max_prompt_chars is not None:
        _check(len(obj["prompt"]) <= max_prompt_chars, path, rec,
               f"prompt of {len(obj['prompt'])} characters is longer than the limit {max_prompt_chars}")
    cat, sub, vec = obj.get("category"), obj.get("subcategory"), obj.get("attack_vector")
    if cat is not None:
        _check(cat in policy.risk_categories, path, rec,
               f"unknown category {cat!r} (policy has {', '.join(policy.categories)})")
    if sub is not None:
        _check(cat is not None and sub in policy.subcategories(cat), path, rec,
               f"unknown subcategory {sub!r} for category {cat!r}")
    if vec is not None:
        _check(vec in policy.attack_vectors, path, rec,
               f"unknown attack vector {vec!r} (policy has {', '.join(policy.vectors)})")
    if obj["kind"] == "adversarial":
        for key in ("category", "attack_vector"):
            _check(obj.get(key) is not None, path, rec, f"adversarial record needs {key!r}")
    bt = obj.get("borderline_type")
    if bt is not None and policy.borderline_types:
        _check(bt in policy.borderline_types, path, rec, f"unknown borderline_type {bt!r}")
    context = obj.get("context") or []
    _check(isinstance(context, list) and all(
        isinstance(t, dict) and t.get("role") in ("user", "assistant", "system") and isinstance(t.get("content"), str)
        for t in context), path, rec, "context must be a list of {role, content} turns")
    known = {f for f in Example.__dataclass_fields__}
    return Example(**{k: v for k, v in obj.items() if k in known and k != "context"}, context=context,
                   source=obj.get("source") or Path(path).name)


def load_examples(paths: list[str | Path], policy: Policy | None = None,
                  max_prompt_chars: int | None = None) -> list[Example]:
    """Load and validate JSONL example files; ids must be unique across all of them."""
    policy = policy or load_policy()
    out: list[Example] = []
    seen: dict[str, str] = {}
    for path in paths:
        for lineno, obj in read_jsonl(path):
            ex = validate_record(obj, policy, path, f"line {lineno}", max_prompt_chars)
            _check(ex.id not in seen, path, f"line {lineno}", f"duplicate id {ex.id!r} (first in {seen.get(ex.id)})")
            seen[ex.id] = str(path)
            out.append(ex)
    return out


def seed_files() -> list[Path]:
    """The built-in seed data files shipped with the package."""
    return sorted(SEED_DIR.glob("*.jsonl"))


def load_seed(policy: Policy | None = None) -> list[Example]:
    return load_examples(seed_files(), policy)


def split_examples(examples: list[Example], dev_fraction: float = 0.2, seed: int = 0
                   ) -> tuple[list[Example], list[Example]]:
    """Deterministic train/dev split by a hash of (seed, id): stable when files grow or are reordered."""
    train, dev = [], []
    for ex in examples:
        h = int(hashlib.sha256(f"{seed}:{ex.id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (dev if h < dev_fraction else train).append(ex)
    return train, dev


_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower-cased, accent-folded, punctuation-free, single-spaced text: the key for leakage checks."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()
