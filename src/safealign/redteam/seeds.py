"""Seed requests to attack: our own seed data, a public harmful set, or a user's file.

A seeds spec is one of (optionally `:N` for a stable sample of N):

    seed-dev | seed-train | seed    our adversarial *direct* English seed prompts (dev/train split as the pipeline's)
    advbench | harmbench_val | do_not_answer | xstest_unsafe | multijail      a public harmful set
    FILE.jsonl                      records in the seed schema (benign ones skipped) or just {"prompt": ...}
    FILE.csv                        a `prompt` (or AdvBench `goal`) column, optional `category`

Requests from an evaluation set (public sets, our dev split) are `held_out`: their successful attacks
are measured but never exported as training data. Any seed whose English text is a MultiJail prompt gets
MultiJail's human translations, which the `translate_<lang>` attacks use.
"""

from __future__ import annotations

import csv
import hashlib
import logging
from pathlib import Path

from safealign.data.public import keyword_category, load_eval_sets, load_multijail
from safealign.data.records import load_seed, normalize_text, split_examples
from safealign.errors import DataError, SafealignError
from safealign.io import open_text, read_jsonl
from safealign.paths import datasets_root
from safealign.policy import Policy, load_policy
from safealign.redteam.attacks.base import SeedRequest

log = logging.getLogger(__name__)

OWN_SETS = ("seed", "seed-dev", "seed-train")
PUBLIC_SETS = ("advbench", "harmbench_val", "do_not_answer", "xstest_unsafe", "multijail")


def stable_sample(items: list[SeedRequest], n: int | None, seed: int = 0) -> list[SeedRequest]:
    """At most n items chosen by a hash of (seed, id), kept in input order: stable as the source grows."""
    if n is None or n >= len(items):
        return items
    keyed = sorted(items, key=lambda s: hashlib.sha256(f"{seed}:{s.id}".encode()).hexdigest())
    chosen = {s.id for s in keyed[:n]}
    return [s for s in items if s.id in chosen]


def _split_spec(spec: str) -> tuple[str, int | None]:
    if Path(spec).exists():
        return spec, None
    name, sep, n = spec.rpartition(":")
    if sep and n.isdigit():
        return name, int(n)
    return spec, None


def _own(name: str, policy: Policy, dev_fraction: float, seed: int) -> list[SeedRequest]:
    examples = [e for e in load_seed(policy)
                if e.is_safety and e.attack_vector == "direct" and e.language == "en" and not e.context]
    train, dev = split_examples(examples, dev_fraction, seed)
    chosen = {"seed": examples, "seed-dev": dev, "seed-train": train}[name]
    held = {e.id for e in dev}
    return [SeedRequest(e.id, e.prompt, e.category, e.subcategory, source=name, held_out=e.id in held)
            for e in chosen]


def _multijail(root: Path) -> list[SeedRequest]:
    """One seed per MultiJail row: the English prompt, with the nine human translations attached."""
    prompts = load_multijail(root)
    rows = {p.id.rsplit("-", 1)[0]: SeedRequest(p.id.rsplit("-", 1)[0], p.prompt, p.category, None,
                                                source="multijail", held_out=True)
            for p in prompts if p.language == "en"}
    for p in prompts:
        if p.language != "en" and p.prompt.strip():
            rows[p.id.rsplit("-", 1)[0]].translations[p.language] = p.prompt
    return list(rows.values())


def _public(name: str, datasets_dir, seed: int) -> list[SeedRequest]:
    if name == "multijail":
        return _multijail(datasets_root(datasets_dir))
    prompts = load_eval_sets({name: None}, datasets_dir, seed)[name]
    return [SeedRequest(p.id, p.prompt, p.category, None, source=name, held_out=True)
            for p in prompts if p.harmful and not p.context]


def _file(path: Path, policy: Policy) -> list[SeedRequest]:
    out = []
    if path.suffix in (".csv", ".gz") and not path.name.endswith(".jsonl.gz"):
        with open_text(path) as f:
            reader = csv.DictReader(f)
            col = next((c for c in ("prompt", "goal") if c in (reader.fieldnames or [])), None)
            if col is None:
                raise DataError(path, "header", f"needs a `prompt` or `goal` column; found {reader.fieldnames}")
            rows = [(i, r) for i, r in enumerate(reader, start=2)]
        records = [(f"line {i}", {"prompt": r[col], "category": r.get("category") or None}) for i, r in rows]
    else:
        records = [(f"line {n}", obj) for n, obj in read_jsonl(path)]
    for where, obj in records:
        if obj.get("kind", "adversarial") != "adversarial":
            continue
        prompt = obj.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(path, where, "needs a non-empty string `prompt`")
        cat, sub = obj.get("category"), obj.get("subcategory")
        if cat is not None and cat not in policy.risk_categories:
            raise DataError(path, where, f"unknown category {cat!r} (policy has {', '.join(policy.categories)})")
        if sub is not None and (cat is None or sub not in policy.subcategories(cat)):
            raise DataError(path, where, f"unknown subcategory {sub!r} for category {cat!r}")
        translations = obj.get("translations") or {}
        if not isinstance(translations, dict) or not all(isinstance(v, str) for v in translations.values()):
            raise DataError(path, where, "`translations` must map language codes to strings")
        out.append(SeedRequest(
            id=str(obj.get("id") or f"{path.stem}-{where.split()[-1]}"), prompt=prompt,
            category=cat or keyword_category(prompt), subcategory=sub, source=path.name,
            translations=dict(translations), held_out=bool(obj.get("held_out", False))))
    return out


def _add_multijail_translations(seeds: list[SeedRequest], datasets_dir) -> None:
    try:
        mj = {normalize_text(s.prompt): s.translations for s in _multijail(datasets_root(datasets_dir))}
    except SafealignError as e:  # no datasets folder or no MultiJail: translations simply stay absent
        log.info("MultiJail translations unavailable (%s)", e)
        return
    for s in seeds:
        found = mj.get(normalize_text(s.prompt))
        if found:
            s.translations = {**found, **s.translations}
            s.held_out = True  # a MultiJail prompt is an evaluation prompt, whatever file it came from


def load_seeds(specs: str | Path | list[str | Path], datasets_dir: str | None = None, policy: Policy | None = None,
               seed: int = 0, dev_fraction: float = 0.2, limit: int | None = None) -> list[SeedRequest]:
    """Seed requests from one or more specs (see the module docstring), ids unique, at most `limit` in all."""
    policy = policy or load_policy()
    if isinstance(specs, (str, Path)):
        specs = [s for s in str(specs).split(",") if s.strip()] if not Path(specs).exists() else [specs]
    seeds: list[SeedRequest] = []
    for spec in specs:
        name, n = _split_spec(str(spec).strip())
        if name in OWN_SETS:
            found = _own(name, policy, dev_fraction, seed)
        elif name in PUBLIC_SETS:
            found = _public(name, datasets_dir, seed)
        elif Path(name).exists():
            found = _file(Path(name), policy)
        else:
            sets = ", ".join((*OWN_SETS, *PUBLIC_SETS))
            raise SafealignError(f"seeds {spec!r}: not a file and not a known set ({sets}); add :N to sample N")
        seeds += stable_sample(found, n, seed)
    ids = [s.id for s in seeds]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SafealignError(f"seeds: duplicate seed id {dup!r} across {', '.join(map(str, specs))}")
    if not seeds:
        raise SafealignError(f"seeds {', '.join(map(str, specs))}: no harmful requests found")
    _add_multijail_translations(seeds, datasets_dir)
    return stable_sample(seeds, limit, seed)

