"""The attack registry: small named plugins that turn a seed request into the user turns of an attack.

An attack is a pure function `seed -> list of user turns` (one turn for single-turn attacks, several for
multi-turn ones), or None when it does not apply to that seed (a translation the seed does not have).
It is deterministic: any variation is chosen by a hash of (attack name, seed id), never by global state,
so the same seeds give the same attacks on every machine. Each plugin is tagged with the policy's
attack vector and technique (policy `attack_vectors`), which is how results are broken down.

    @register_attack("authority", vector="psychological", technique="authority")
    def authority(seed: SeedRequest) -> list[str]:
        return [f"As a police detective ... {seed.prompt}"]
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from safealign.errors import SafealignError


@dataclass
class SeedRequest:
    """A harmful request to attack with; what every attack transforms."""

    id: str
    prompt: str
    category: str | None = None
    subcategory: str | None = None
    source: str = ""
    """Where it came from: a seed file name or a public set (advbench, multijail, seed-dev, ...)."""
    translations: dict[str, str] = field(default_factory=dict)
    """Human translations of `prompt` by language code (MultiJail's, or a seeds file's `translations`)."""
    held_out: bool = False
    """True when the request belongs to an evaluation set: its attacks are never exported for training."""

    def as_dict(self) -> dict:
        return {"id": self.id, "prompt": self.prompt, "category": self.category, "subcategory": self.subcategory,
                "source": self.source, "held_out": self.held_out, "languages": sorted(self.translations)}


AttackFn = Callable[[SeedRequest], "list[str] | None"]


@dataclass(frozen=True)
class Attack:
    name: str
    vector: str
    """Policy attack vector (psychological, logic, syntactic, semantic, perspective, non_english, multi_turn)."""
    technique: str
    fn: AttackFn
    language: str = "en"
    """Language of the attack's prompt (and of the answer it asks for)."""
    description: str = ""

    def __call__(self, seed: SeedRequest) -> list[str] | None:
        turns = self.fn(seed)
        if turns is not None and (not turns or not all(isinstance(t, str) and t.strip() for t in turns)):
            raise SafealignError(f"attack {self.name!r} returned {turns!r} for seed {seed.id}; "
                                 "expected a list of non-empty user turns")
        return turns

    @property
    def multi_turn(self) -> bool:
        return self.vector == "multi_turn"


_REGISTRY: dict[str, Attack] = {}


def register_attack(name: str, vector: str, technique: str, language: str = "en"):
    """Register a plugin function under `name`; a later registration under the same name replaces it."""

    def deco(fn: AttackFn) -> AttackFn:
        doc = (fn.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = Attack(name, vector, technique, fn, language, doc[0] if doc else "")
        return fn

    return deco


def _load_builtin() -> None:
    from safealign.redteam.attacks import (  # noqa: F401  (each module registers its plugins)
        direct,
        language,
        logic,
        multi_turn,
        perspective,
        psychological,
        semantic,
        syntactic,
    )


def list_attacks() -> list[Attack]:
    _load_builtin()
    return sorted(_REGISTRY.values(), key=lambda a: (a.vector, a.name))


def get_attack(name: str) -> Attack:
    _load_builtin()
    if name not in _REGISTRY:
        raise SafealignError(f"unknown attack {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def resolve_attacks(names: list[str]) -> list[Attack]:
    """Attack names, vector names (`vector:syntactic`) or `all`, expanded in order without repeats."""
    _load_builtin()
    out: list[Attack] = []
    for name in names:
        if name == "all":
            chosen = list_attacks()
        elif name.startswith("vector:"):
            vector = name.split(":", 1)[1]
            chosen = [a for a in list_attacks() if a.vector == vector]
            if not chosen:
                vectors = sorted({a.vector for a in _REGISTRY.values()})
                raise SafealignError(f"no attacks for vector {vector!r}; vectors: {', '.join(vectors)}")
        else:
            chosen = [get_attack(name)]
        out += [a for a in chosen if a not in out]
    return out


def rng_for(attack: str, seed: SeedRequest) -> random.Random:
    """A random generator fixed by (attack, seed id): the same seed always gets the same variation."""
    digest = hashlib.sha256(f"{attack}\x00{seed.id}\x00{seed.prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def pick(attack: str, seed: SeedRequest, options: list[str]) -> str:
    return rng_for(attack, seed).choice(options)


def lower_first(text: str) -> str:
    """`How do I ...` → `how do I ...`, to embed a request mid-sentence (acronyms stay as they are)."""
    text = text.strip()
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        return text[0].lower() + text[1:]
    return text
