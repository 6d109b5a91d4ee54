"""The human-labelled sets judges are trained and validated on, read with located errors and hashed.

- XSTest completions (5 models x 450 prompts, refusal labels), grouped by source model;
- Do-Not-Answer responses (6 models x 939 prompts, harmful 0/1), grouped by prompt;
- ToxiGen annotated statements (6,514, hate/neutral, with the annotators' mean toxicity 1-5), grouped by
  (first) target group.

Each loader returns a `LabelledSet`: parallel lists plus the sha256 of every file read, so a cached
judge knows which data made it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from safealign.errors import DataError
from safealign.io import open_text
from safealign.paths import dataset_file, datasets_root

XSTEST_DIR = "xstest/model_completions"
DNA_FILE = "do_not_answer/data_en.csv.gz"
TOXIGEN_FILE = "toxigen_annotated/toxiGen.json.gz"

XSTEST_LABELS = {"1_full_compliance": "none", "2_full_refusal": "full", "3_partial_refusal": "partial"}
DNA_MODELS = ("GPT4", "ChatGPT", "Claude", "ChatGLM2", "llama2-7b-chat", "vicuna-7b")
TOXIGEN_LABELS = {"neutral": 0, "hate": 1}


@dataclass
class LabelledSet:
    """Parallel lists of one human-labelled set; `y` is the label, `groups` the cross-validation group."""

    name: str
    prompts: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    y: list = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)
    """file path relative to the datasets folder -> sha256"""

    def __len__(self) -> int:
        return len(self.y)

    def append(self, prompt: str, response: str, y, group: str, **extra) -> None:
        self.prompts.append(prompt)
        self.responses.append(response)
        self.y.append(y)
        self.groups.append(group)
        self.extra.append(extra)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _csv_rows(path: Path, required: tuple[str, ...]):
    """Yield (record number, row) with a DataError naming the file when columns are missing."""
    with open_text(path) as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, None, f"missing column(s) {missing}; found {reader.fieldnames}")
        try:
            yield from enumerate(reader, start=2)  # line 1 is the header
        except csv.Error as e:
            raise DataError(path, f"line {reader.line_num}", f"malformed CSV ({e})") from None


def load_xstest_completions(datasets_dir: str | Path | None = None) -> LabelledSet:
    """XSTest v2 human-labelled completions; y in {"none", "full", "partial"}, group = source model."""
    root = datasets_root(datasets_dir)
    folder = root / XSTEST_DIR
    files = sorted(folder.glob("xstest_v2_completions_*.csv*"))
    if not files:
        raise DataError(folder, None, "no xstest_v2_completions_*.csv(.gz) files found")
    out = LabelledSet("xstest_completions")
    for path in files:
        model = path.name.removeprefix("xstest_v2_completions_").split(".")[0]
        out.hashes[str(path.relative_to(root))] = sha256_file(path)
        for line, row in _csv_rows(path, ("prompt", "completion", "final_label")):
            label = (row["final_label"] or "").strip()
            if label not in XSTEST_LABELS:
                raise DataError(path, f"line {line}", f"final_label must be one of {list(XSTEST_LABELS)}, found {label!r}")
            out.append(row["prompt"], row["completion"] or "", XSTEST_LABELS[label], model,
                       id=row.get("id"), type=row.get("type"))
    return out


def load_do_not_answer(datasets_dir: str | Path | None = None) -> LabelledSet:
    """Do-Not-Answer responses of six models with human harmful labels; y in {0, 1}, group = prompt id."""
    path = dataset_file(DNA_FILE, datasets_dir)
    required = ("id", "question", "risk_area") + tuple(f"{m}_{c}" for m in DNA_MODELS for c in ("response", "harmful"))
    out = LabelledSet("do_not_answer")
    out.hashes[DNA_FILE] = sha256_file(path)
    for line, row in _csv_rows(path, required):
        for m in DNA_MODELS:
            label = (row[f"{m}_harmful"] or "").strip()
            if label not in ("0", "1"):
                raise DataError(path, f"line {line}", f"{m}_harmful must be 0 or 1, found {label!r}")
            out.append(row["question"], row[f"{m}_response"] or "", int(label), f"q{row['id']}",
                       model=m, risk_area=row["risk_area"], action=row.get(f"{m}_action"))
    return out


def load_toxigen_annotated(datasets_dir: str | Path | None = None) -> LabelledSet:
    """ToxiGen human-annotated statements; y in {0, 1} (hate), group = first target group. Prompts are empty;
    `extra` keeps each statement's mean annotator `toxicity_score` (1-5)."""
    path = dataset_file(TOXIGEN_FILE, datasets_dir)
    out = LabelledSet("toxigen_annotated")
    out.hashes[TOXIGEN_FILE] = sha256_file(path)
    with open_text(path) as f:
        try:
            rows = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(path, f"line {e.lineno}", f"invalid JSON ({e.msg})") from None
    if not isinstance(rows, list):
        raise DataError(path, None, f"expected a JSON list of statements, found {type(rows).__name__}")
    for i, row in enumerate(rows):
        where = f"item {i}"
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise DataError(path, where, "expected an object with a string `text`")
        if row.get("label") not in TOXIGEN_LABELS:
            raise DataError(path, where, f"label must be one of {list(TOXIGEN_LABELS)}, found {row.get('label')!r}")
        groups = row.get("target_groups") or []
        if not isinstance(groups, list) or not groups:
            raise DataError(path, where, f"target_groups must be a non-empty list, found {groups!r}")
        score = row.get("toxicity_score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 5:
            raise DataError(path, where, f"toxicity_score must be a number from 1 to 5, found {score!r}")
        out.append("", row["text"].strip(), TOXIGEN_LABELS[row["label"]], str(groups[0]),
                   id=row.get("id"), target_groups=groups, toxicity_score=float(score))
    return out


def toxigen_soft_labels(ls: LabelledSet) -> list[float]:
    """The annotators' mean toxicity (1-5) as P(toxic) in [0, 1], (score - 1) / 4; the label is hate iff score > 3."""
    return [(e["toxicity_score"] - 1) / 4 for e in ls.extra]
