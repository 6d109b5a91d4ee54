"""The audit's options: one dataclass, a docstring on every field saying what it does and why its default."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from safealign.errors import SafealignError

PII_TYPES = (
    "email",
    "phone",
    "street_address",
    "credit_card",
    "us_ssn",
    "uk_nino",
    "iban",
    "ip_address",
    "person_name",
)
"""Every personal-information type the detectors know, in report order."""


@dataclass
class AuditConfig:
    text_field: str = "auto"
    """Field (JSONL key / Parquet column / HF column) holding the document text. "auto" takes `text`, else
    `content`, else the chat shape of safealign's own records (`context` turns + `prompt` + `response`, or a
    `messages` list), so the recipe's fine-tuning mix audits without options. A record with none of these is
    counted as "missing text field"."""
    source_field: str = "source"
    """Field naming the document's source (site, dataset). Absent → the file name (or HF id) is the source."""
    text_unit: str = "line"
    """For plain-text files: "line" (each non-blank line is a document) or "file" (the whole file is one)."""
    pii_types: tuple[str, ...] = PII_TYPES
    """Which personal-information detectors run (see `safealign.audit.pii`)."""
    scrub: bool = False
    """Write a redacted copy under OUT/redacted/ with typed placeholders ([EMAIL], [PHONE], ...). The input
    is only ever opened for reading."""
    exclude_sources: tuple[str, ...] = ()
    """Source blocklist (exact names or fnmatch globs such as `*.forum.example`). Their documents are counted
    as excluded and neither audited nor copied, the way Llama 2 dropped sites known to hold personal data."""
    max_pii_per_doc: float | None = None
    """Exclude a source whose PII items per document exceed this (decided after the pass, reported with its
    density; its documents are dropped from the redacted copy). None: no density exclusion."""
    min_source_docs: int = 20
    """A source needs at least this many documents before the density rule may exclude it, so that one
    e-mail in a two-document source does not exclude it."""
    toxicity_sample: float = 0.1
    """Share of documents scored by the toxicity judge (Llama 2 scored a 10% sample). 0 disables."""
    toxicity_judge: str = "toxicity"
    """Registry name of the judge (`safealign.judges.get_judge`) whose `Verdict.toxicity` scores each line."""
    toxicity_batch: int = 64
    """Lines per judge call."""
    seed: int = 0
    """Seed of the document sample for toxicity (a hash of seed and document location: the same documents
    are sampled in-process and on Ray, and after a resume)."""
    lang_threshold: float = 0.5
    """Minimum language-ID confidence; below it a document counts as "unknown" (Llama 2 used 0.5)."""
    lang_max_chars: int = 2000
    """Language ID reads the first this-many characters of a document: enough for a confident call and it
    keeps long documents from dominating run time."""
    holistic_bias_version: str = "v1.1"
    """HolisticBias descriptor list version; v1.1 holds the terms Llama 2's Table 9 shows (lgbt, latin)."""
    identity_axes: tuple[str, ...] = (
        "gender_and_sex",
        "sexual_orientation",
        "nationality",
        "race_ethnicity",
        "religion",
    )
    """The HolisticBias axes counted: Llama 2's five."""
    identity_stopterms: tuple[str, ...] = ("straight", "white", "black")
    """Descriptors dropped before counting because their everyday sense dominates (Llama 2 removed these)."""
    datasets_dir: str | None = None
    """Folder holding holistic_bias/ (default: $SAFEALIGN_DATASETS or ../shared/datasets)."""
    shard_mb: float = 32.0
    """Target shard size in MiB of input. A shard is the unit of work, of resume and of Ray tasks; one
    in-flight shard bounds memory. Gzip files are one shard each (they cannot be split by byte range)."""
    hf_split: str = "train"
    """Split read from a Hugging Face dataset id."""
    hf_config: str | None = None
    """Configuration (subset) name of a Hugging Face dataset id."""
    ray_address: str | None = None
    """None: run in-process (default, no cluster). "local": start a local Ray cluster with `ray_workers`
    CPUs; anything else (e.g. "auto", "ray://head:10001") is passed to `ray.init(address=...)`."""
    ray_workers: int | None = None
    """Concurrent shard workers on Ray; default: the cluster's CPU count."""
    fresh: bool = False
    """Ignore finished shards from an earlier run in OUT and redo them all."""

    @classmethod
    def from_options(cls, options: dict) -> AuditConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise SafealignError(f"audit: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        cfg = cls(**options)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        bad = sorted(set(self.pii_types) - set(PII_TYPES))
        if bad:
            raise SafealignError(f"audit: unknown PII type(s) {', '.join(bad)}; known: {', '.join(PII_TYPES)}")
        if self.text_unit not in ("line", "file"):
            raise SafealignError(f"audit: text_unit must be 'line' or 'file', found {self.text_unit!r}")
        if not 0.0 <= self.toxicity_sample <= 1.0:
            raise SafealignError(f"audit: toxicity_sample must be in [0, 1], found {self.toxicity_sample}")
        if not 0.0 <= self.lang_threshold <= 1.0:
            raise SafealignError(f"audit: lang_threshold must be in [0, 1], found {self.lang_threshold}")
        if self.shard_mb <= 0:
            raise SafealignError(f"audit: shard_mb must be positive, found {self.shard_mb}")
        self.pii_types = tuple(self.pii_types)
        self.exclude_sources = tuple(self.exclude_sources)
        self.identity_axes = tuple(self.identity_axes)
        self.identity_stopterms = tuple(self.identity_stopterms)

    def shard_hash(self) -> str:
        """Hash of the options that change what one shard computes; finished shards are reused only when it matches.

        Options applied after the pass (density exclusion) or that only schedule work (Ray, fresh) are left
        out, so changing them does not redo the audit.
        """
        keep = {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k not in ("max_pii_per_doc", "min_source_docs", "ray_address", "ray_workers", "fresh", "datasets_dir")
        }
        keep["version"] = SHARD_FORMAT
        return hashlib.sha1(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:12]

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


SHARD_FORMAT = 1
"""Bumped whenever a shard result's meaning changes, so stale results are never merged."""


def load_blocklist(path: str | Path) -> tuple[str, ...]:
    """Source names / globs from a file, one a line; `#` starts a comment."""
    from safealign.io import open_text

    with open_text(path) as f:
        return tuple(s for s in (line.split("#", 1)[0].strip() for line in f) if s)
