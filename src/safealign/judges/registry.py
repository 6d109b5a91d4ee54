"""Judges discovered by name: a config says `judge: refusal` or `judge: llama-guard` and gets one here.

Built-in judges are listed as import paths so that naming one does not import torch for all the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from safealign.errors import SafealignError
from safealign.judges.base import Judge

DEFAULT_JUDGES = ("refusal", "harm", "toxicity")

_BUILTIN: dict[str, str] = {
    "refusal-rules": "safealign.judges.rules:RefusalRulesJudge",
    "refusal-classifier": "safealign.judges.trained:RefusalClassifierJudge",
    "refusal": "safealign.judges.trained:RefusalJudge",
    "harm": "safealign.judges.trained:HarmJudge",
    "toxicity": "safealign.judges.trained:ToxicityJudge",
    "llama-guard": "safealign.judges.llama_guard:LlamaGuardJudge",
    "openai-compatible": "safealign.judges.openai_compat:OpenAICompatibleJudge",
}
_REGISTERED: dict[str, Callable[..., Judge]] = {}


def register_judge(name: str, factory: Callable[..., Judge] | None = None):
    """Register `factory` (a Judge subclass or any callable returning a Judge) under `name`.

    Usable directly, `register_judge("mine", MyJudge)`, or as a class decorator, `@register_judge("mine")`.
    A later registration under the same name replaces the earlier one.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"judge name must be a non-empty string, found {name!r}")

    def _register(f: Callable[..., Judge]) -> Callable[..., Judge]:
        _REGISTERED[name] = f
        return f

    return _register(factory) if factory is not None else _register


def list_judges() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTERED))


def get_judge(name: str, **kwargs) -> Judge:
    """A judge instance by registry name; kwargs go to its constructor (e.g. `model=` for llama-guard)."""
    if name in _REGISTERED:
        factory = _REGISTERED[name]
    elif name in _BUILTIN:
        module, _, attr = _BUILTIN[name].partition(":")
        factory = getattr(importlib.import_module(module), attr)
    else:
        raise SafealignError(f"unknown judge {name!r}; known judges: {', '.join(list_judges())}")
    judge = factory(**kwargs)
    if not getattr(judge, "name", None):
        judge.name = name
    return judge
