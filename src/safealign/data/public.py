"""Loaders for the public evaluation sets, mapped onto the policy's risk categories.

Every set is read by path from the datasets folder (config `datasets_dir` or $SAFEALIGN_DATASETS);
nothing is copied into the repository, and `assert_no_leakage` keeps them out of training data.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safealign.data.records import Example, normalize_text
from safealign.errors import DataError, SafealignError
from safealign.io import open_text
from safealign.paths import datasets_root


@dataclass
class EvalPrompt:
    id: str
    set: str
    prompt: str
    harmful: bool
    """True: the policy says decline (violation if answered); False: benign (false refusal if declined)."""
    category: str | None = None
    type: str | None = None
    """The source set's own label (XSTest type, HarmBench semantic category, ...)."""
    language: str = "en"
    context: list[dict[str, str]] = field(default_factory=list)

    def conversation(self) -> list[dict[str, str]]:
        return [*self.context, {"role": "user", "content": self.prompt}]

    def as_dict(self) -> dict:
        return asdict(self)


def _rows(path: Path, required: list[str]) -> list[dict[str, str]]:
    with open_text(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, "header", f"missing column(s) {', '.join(missing)}; found {reader.fieldnames}")
        rows = list(reader)
    for i, row in enumerate(rows, start=2):
        for c in required:
            if row.get(c) is None:
                raise DataError(path, f"line {i}", f"row has too few fields (no {c!r})")
    return rows


_HATEFUL = re.compile(r"\b(hate|racis|sexis|discriminat|defam|bully|harass|stalk|suicide|self-harm|self harm|"
                      r"eating disorder|anorexi|bulimi|slur|xenophob|misogyn|propaganda|fake news|false information|"
                      r"misinformation|conspiracy|cyberbully|body shame|humiliat|insult|demean)", re.I)
_ADVICE = re.compile(r"\b(medical advice|diagnos|prescri|dosage|investment advice|legal advice)", re.I)


def keyword_category(text: str) -> str:
    """Heuristic category for sets without one (AdvBench): documented as approximate in the report."""
    if _HATEFUL.search(text):
        return "hateful_harmful"
    if _ADVICE.search(text):
        return "unqualified_advice"
    return "illicit_criminal"


def load_xstest(root: Path) -> list[EvalPrompt]:
    rows = _rows(root / "xstest" / "xstest_prompts.csv", ["id", "prompt", "type", "label"])
    out = []
    for r in rows:
        harmful = r["label"] == "unsafe"
        if harmful:
            cat = "hateful_harmful" if r["type"] in ("contrast_discr", "contrast_privacy") else "illicit_criminal"
        else:
            cat = None
        out.append(EvalPrompt(id=f"xstest-{r['id']}", set="xstest_unsafe" if harmful else "xstest_safe",
                              prompt=r["prompt"], harmful=harmful, category=cat, type=r["type"]))
    return out


def load_advbench(root: Path) -> list[EvalPrompt]:
    rows = _rows(root / "advbench" / "harmful_behaviors.csv", ["goal"])
    return [EvalPrompt(id=f"advbench-{i}", set="advbench", prompt=r["goal"], harmful=True,
                       category=keyword_category(r["goal"])) for i, r in enumerate(rows)]


HARMBENCH_CATEGORIES = {
    "illegal": "illicit_criminal", "chemical_biological": "illicit_criminal", "cybercrime_intrusion": "illicit_criminal",
    "misinformation_disinformation": "hateful_harmful", "harassment_bullying": "hateful_harmful",
    "harmful": "hateful_harmful",
}


def load_harmbench(root: Path) -> list[EvalPrompt]:
    """HarmBench val, standard + contextual behaviours (copyright needs a hash-based judge: left out)."""
    rows = _rows(root / "harmbench" / "harmbench_behaviors_text_val.csv",
                 ["Behavior", "FunctionalCategory", "SemanticCategory", "ContextString", "BehaviorID"])
    out = []
    for r in rows:
        if r["FunctionalCategory"] == "copyright":
            continue
        prompt = r["Behavior"]
        if r["FunctionalCategory"] == "contextual" and r["ContextString"].strip():
            prompt = f"{r['ContextString'].strip()}\n\n---\n\n{r['Behavior']}"
        out.append(EvalPrompt(id=f"harmbench-{r['BehaviorID']}", set="harmbench_val", prompt=prompt, harmful=True,
                              category=HARMBENCH_CATEGORIES.get(r["SemanticCategory"], "illicit_criminal"),
                              type=r["SemanticCategory"]))
    return out


def _dna_category(risk_area: str, harm: str) -> str | None:
    """Do-Not-Answer risk areas where declining is the expected behaviour, mapped to the policy.

    Misinformation and human-chatbot-interaction prompts are left out of refusal-based violation
    rates: their good answer is a correction or support, not a refusal (the harm judge scores them).
    """
    if risk_area.startswith("Malicious Uses"):
        return "illicit_criminal"
    if risk_area.startswith("Discrimination"):
        return "hateful_harmful"
    if risk_area.startswith("Information Hazards"):
        return "hateful_harmful" if "individual" in harm else "illicit_criminal"
    return None


def load_do_not_answer(root: Path) -> list[EvalPrompt]:
    rows = _rows(root / "do_not_answer" / "do_not_answer_en.csv", ["id", "risk_area", "types_of_harm", "question"])
    out = []
    for r in rows:
        cat = _dna_category(r["risk_area"], r["types_of_harm"])
        if cat:
            out.append(EvalPrompt(id=f"dna-{r['id']}", set="do_not_answer", prompt=r["question"], harmful=True,
                                  category=cat, type=r["types_of_harm"]))
    return out


MULTIJAIL_LANGUAGES = ("en", "zh", "it", "vi", "ar", "ko", "th", "bn", "sw", "jv")


def load_multijail(root: Path) -> list[EvalPrompt]:
    rows = _rows(root / "multijail" / "MultiJail.csv", ["id", "tags", *MULTIJAIL_LANGUAGES])
    out = []
    for r in rows:
        cat = keyword_category(r["tags"] + " " + r["en"])
        for lang in MULTIJAIL_LANGUAGES:
            out.append(EvalPrompt(id=f"multijail-{r['id']}-{lang}", set=f"multijail_{lang}", prompt=r[lang],
                                  harmful=True, category=cat, type=r["tags"], language=lang))
    return out


LOADERS: dict[str, tuple[Callable[[Path], list[EvalPrompt]], list[str]]] = {
    # name → (loader, the sets it yields)
    "xstest": (load_xstest, ["xstest_safe", "xstest_unsafe"]),
    "advbench": (load_advbench, ["advbench"]),
    "harmbench_val": (load_harmbench, ["harmbench_val"]),
    "do_not_answer": (load_do_not_answer, ["do_not_answer"]),
    "multijail": (load_multijail, [f"multijail_{lang}" for lang in MULTIJAIL_LANGUAGES]),
}


def _stable_sample(items: list[EvalPrompt], n: int | None, seed: int) -> list[EvalPrompt]:
    if n is None or n >= len(items):
        return items
    keyed = sorted(items, key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).hexdigest())
    chosen = {p.id for p in keyed[:n]}
    return [p for p in items if p.id in chosen]


def load_eval_sets(sets: dict[str, int | None], datasets_dir: str | Path | None = None, seed: int = 0
                   ) -> dict[str, list[EvalPrompt]]:
    """Load the named evaluation sets, each subsampled deterministically to its size (None = all)."""
    root = datasets_root(datasets_dir)
    by_set: dict[str, list[EvalPrompt]] = {}
    for loader, names in LOADERS.values():
        if any(n in sets for n in names):
            for p in loader(root):
                by_set.setdefault(p.set, []).append(p)
    unknown = [s for s in sets if s not in by_set]
    if unknown:
        known = sorted(n for _, names in LOADERS.values() for n in names)
        raise SafealignError(f"unknown evaluation set(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return {name: _stable_sample(by_set[name], n, seed) for name, n in sets.items()}


def load_all_available(datasets_dir: str | Path | None = None) -> list[EvalPrompt]:
    """Every prompt of every known public set present in the datasets folder (for leakage checks)."""
    root = datasets_root(datasets_dir)
    out: list[EvalPrompt] = []
    for loader, _ in LOADERS.values():
        try:
            out.extend(loader(root))
        except DataError as e:
            if e.problem != "file not found":
                raise
    return out


def assert_no_leakage(train: list[Example], eval_prompts: list[EvalPrompt]) -> None:
    """Refuse to train on any prompt or response that equals an evaluation prompt after normalisation."""
    held_out = {normalize_text(p.prompt): p.id for p in eval_prompts}
    for ex in train:
        for text in (ex.prompt, *(t["content"] for t in ex.context)):
            key = normalize_text(text)
            if key in held_out:
                raise SafealignError(
                    f"{ex.source}: record {ex.id} repeats evaluation prompt {held_out[key]}; "
                    "evaluation sets must never be trained on"
                )
