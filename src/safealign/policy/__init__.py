"""The safety policy as data: risk categories, response guideline, attack vectors, preprompts.

The default lives in `default.yaml` beside this module; a config's `policy:` key may point to a
user-edited copy. Everything downstream (data validation, evaluation breakdowns, red-teaming,
context distillation, the report) reads the policy through `load_policy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from safealign.errors import DataError

DEFAULT_POLICY = Path(__file__).with_name("default.yaml")


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    risk_categories: dict[str, dict[str, Any]]
    response_guideline: list[str]
    behaviours_to_avoid: list[str]
    attack_vectors: dict[str, dict[str, Any]]
    borderline_types: dict[str, str]
    preprompts: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def categories(self) -> list[str]:
        return list(self.risk_categories)

    @property
    def vectors(self) -> list[str]:
        return list(self.attack_vectors)

    def subcategories(self, category: str) -> list[str]:
        return list(self.risk_categories[category]["subcategories"])

    def category_of(self, subcategory: str) -> str | None:
        for cat, spec in self.risk_categories.items():
            if subcategory in spec["subcategories"]:
                return cat
        return None

    def preprompt(self, category: str | None) -> str:
        """The category's context-distillation preprompt, or the first generic one."""
        if category and isinstance(self.preprompts.get(category), str):
            return self.preprompts[category]
        return self.preprompts["generic"][0]


def load_policy(path: str | Path | None = None) -> Policy:
    path = Path(path) if path else DEFAULT_POLICY
    if not path.exists():
        raise DataError(path, None, "policy file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(path, None, f"invalid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(path, None, "expected a mapping at the top level")
    required = ["risk_categories", "response_guideline", "behaviours_to_avoid", "attack_vectors"]
    for key in required:
        if key not in raw:
            raise DataError(path, key, "missing required section")
    for cat, spec in raw["risk_categories"].items():
        if not isinstance(spec, dict) or not spec.get("subcategories"):
            raise DataError(path, f"risk_categories.{cat}", "needs a non-empty `subcategories` mapping")
    return Policy(
        name=raw.get("name", path.stem), version=int(raw.get("version", 1)),
        risk_categories=raw["risk_categories"], response_guideline=list(raw["response_guideline"]),
        behaviours_to_avoid=list(raw["behaviours_to_avoid"]), attack_vectors=raw["attack_vectors"],
        borderline_types=dict(raw.get("borderline_types") or {}), preprompts=dict(raw.get("preprompts") or {}),
        path=str(path),
    )
