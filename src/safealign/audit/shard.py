"""One shard, audited: stream its documents once and return mergeable counts (plain dicts of ints).

`audit_shard` is the whole per-document algorithm; the in-process and Ray backends both call it, so they
give the same numbers. A finished shard's result is written atomically to OUT/shards/<config-hash>/<id>.json
after its redacted copy, so a result file on disk means the shard is complete and is never redone.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from safealign.audit import language, pii, toxicity
from safealign.audit.config import AuditConfig
from safealign.audit.readers import BadRecord, Doc, ShardSpec, iter_shard, set_path
from safealign.audit.representation import IdentityLexicon, pronoun_groups, tokenize
from safealign.io import atomic_path, write_json

MAX_EXAMPLES = 5
"""Bad-record locations kept per file (the counts are complete; the examples show where to look)."""


def empty_stats() -> dict[str, Any]:
    return {
        "documents": 0,
        "characters": 0,
        "blocklisted_documents": 0,
        "blocklisted_sources": {},  # source -> documents excluded by the blocklist
        "files": {},  # display -> {"documents": n, <bad kind>: n, "examples": [...]}
        "sources": {},  # source -> {"documents": n, "pii_documents": n, "pii_items": n, "by_type": {type: n}}
        "pii": {"documents_with_any": 0, "documents": {}, "items": {}},
        "pronouns": {},  # group -> documents
        "identity": {},  # axis -> {"documents": n, "terms": {term: documents}}
        "languages": {},  # code -> documents
        "toxicity": {
            "documents": 0,
            "unscored_documents": 0,
            "lines": 0,
            "ge_0_5": 0,
            "sum": 0.0,
            "histogram": [0] * toxicity.N_BINS,
        },
        "redacted": {},  # shard file name -> {"documents": n, "sources": {source: n}}
    }


def merge(into: dict, other: dict) -> dict:
    """Add `other`'s counts into `into` (both shaped like `empty_stats()`); returns `into`."""
    for k in ("documents", "characters", "blocklisted_documents"):
        into[k] += other[k]
    _add(into["blocklisted_sources"], other["blocklisted_sources"])
    for name, tally in other["files"].items():
        mine = into["files"].setdefault(name, {"documents": 0, "examples": []})
        for k, v in tally.items():
            if k == "examples":  # the earliest locations, whatever order shards finish in
                mine["examples"] = sorted(mine["examples"] + v, key=_position)[:MAX_EXAMPLES]
            else:
                mine[k] = mine.get(k, 0) + v
    for src, s in other["sources"].items():
        mine = into["sources"].setdefault(src, {"documents": 0, "pii_documents": 0, "pii_items": 0, "by_type": {}})
        for k in ("documents", "pii_documents", "pii_items"):
            mine[k] += s[k]
        _add(mine["by_type"], s["by_type"])
    into["pii"]["documents_with_any"] += other["pii"]["documents_with_any"]
    _add(into["pii"]["documents"], other["pii"]["documents"])
    _add(into["pii"]["items"], other["pii"]["items"])
    _add(into["pronouns"], other["pronouns"])
    for axis, a in other["identity"].items():
        mine = into["identity"].setdefault(axis, {"documents": 0, "terms": {}})
        mine["documents"] += a["documents"]
        _add(mine["terms"], a["terms"])
    _add(into["languages"], other["languages"])
    t, o = into["toxicity"], other["toxicity"]
    for k in ("documents", "unscored_documents", "lines", "ge_0_5", "sum"):
        t[k] += o[k]
    t["histogram"] = [a + b for a, b in zip(t["histogram"], o["histogram"])]
    into["redacted"].update(other["redacted"])
    return into


def _position(example: dict) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", example["where"])) or (0,)


def _add(into: dict, other: dict) -> None:
    for k, v in other.items():
        into[k] = into.get(k, 0) + v


def is_blocklisted(source: str, patterns: tuple[str, ...]) -> bool:
    return any(source == p or fnmatch.fnmatchcase(source, p) for p in patterns)


def redacted_name(spec: ShardSpec) -> str:
    stem = Path(spec.display).name.split(".")[0] or "corpus"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:40]
    return f"{spec.index:05d}-{safe}-{spec.id[:8]}.jsonl"


def audit_shard(
    spec: ShardSpec, cfg: AuditConfig, lexicon: IdentityLexicon, out_dir: Path, scorer: toxicity.Scorer | None
) -> dict[str, Any]:
    """Audit one shard; write its redacted copy (if scrubbing) and its result file; return the result."""
    stats = empty_stats()
    ftally = stats["files"].setdefault(spec.display, {"documents": 0, "examples": []})
    pending: list[tuple[str, list[str]]] = []  # sampled documents waiting for the judge: (key, lines)
    rname = redacted_name(spec)
    with contextlib.ExitStack() as stack:
        writer = None
        if cfg.scrub:
            # Closed before atomic_path renames it (ExitStack unwinds in reverse); removed on error.
            writer = stack.enter_context(
                open(stack.enter_context(atomic_path(out_dir / "redacted" / rname)), "w", encoding="utf-8")
            )
            stats["redacted"][rname] = {"documents": 0, "sources": {}}
        for item in iter_shard(spec, cfg.text_field, cfg.source_field, cfg.text_unit):
            if isinstance(item, BadRecord):
                ftally[item.kind] = ftally.get(item.kind, 0) + 1
                if len(ftally["examples"]) < MAX_EXAMPLES:
                    ftally["examples"].append({"where": item.where, "problem": item.problem})
                continue
            ftally["documents"] += 1
            if cfg.exclude_sources and is_blocklisted(item.source, cfg.exclude_sources):
                stats["blocklisted_documents"] += 1
                _add(stats["blocklisted_sources"], {item.source: 1})
                continue
            spans_by_field = _audit_doc(item, cfg, lexicon, stats)
            if scorer is not None and toxicity.sampled(cfg.seed, item.key, cfg.toxicity_sample):
                lines = toxicity.doc_lines(item.text)
                pending.append((item.key, lines))
                if sum(len(x[1]) for x in pending) >= cfg.toxicity_batch:
                    _score(pending, scorer, cfg.toxicity_batch, stats)
                    pending = []
            if writer is not None:
                writer.write(
                    json.dumps(_redacted_record(item, spans_by_field, cfg), ensure_ascii=False, default=str) + "\n"
                )
                r = stats["redacted"][rname]
                r["documents"] += 1
                r["sources"][item.source] = r["sources"].get(item.source, 0) + 1
        if pending:
            _score(pending, scorer, cfg.toxicity_batch, stats)
    result = {"shard": spec.as_dict(), "shard_id": spec.id, "stats": stats}
    write_json(result_path(out_dir, cfg, spec), result)
    return result


def result_path(out_dir: Path, cfg: AuditConfig, spec: ShardSpec) -> Path:
    return out_dir / "shards" / cfg.shard_hash() / f"{spec.id}.json"


def _audit_doc(doc: Doc, cfg: AuditConfig, lexicon: IdentityLexicon, stats: dict) -> list[list[pii.Span]]:
    """Count one document into `stats`; return its PII spans per text field (for the scrub)."""
    text = doc.text
    stats["documents"] += 1
    stats["characters"] += len(text)

    # Personal information: per type, per source. Spans are found per text field so that the scrub's
    # offsets are right and no match runs across two fields.
    spans_by_field = [pii.detect(t, cfg.pii_types) for _, t in doc.fields]
    spans = [s for ss in spans_by_field for s in ss]
    src = stats["sources"].setdefault(doc.source, {"documents": 0, "pii_documents": 0, "pii_items": 0, "by_type": {}})
    src["documents"] += 1
    if spans:
        types = Counter(s.type for s in spans)
        stats["pii"]["documents_with_any"] += 1
        _add(stats["pii"]["items"], types)
        _add(stats["pii"]["documents"], dict.fromkeys(types, 1))
        src["pii_documents"] += 1
        src["pii_items"] += len(spans)
        _add(src["by_type"], types)

    tokens = tokenize(text)
    _add(stats["pronouns"], dict.fromkeys(pronoun_groups(tokens), 1))
    for axis, terms in lexicon.match(tokens).items():
        a = stats["identity"].setdefault(axis, {"documents": 0, "terms": {}})
        a["documents"] += 1
        _add(a["terms"], dict.fromkeys(terms, 1))

    lang, _ = language.identify(text, cfg.lang_threshold, cfg.lang_max_chars)
    stats["languages"][lang] = stats["languages"].get(lang, 0) + 1
    return spans_by_field


def _redacted_record(doc: Doc, by_field: list[list[pii.Span]], cfg: AuditConfig) -> dict:
    if doc.record is None:
        return {"text": pii.scrub(doc.text, by_field[0]), cfg.source_field: doc.source}
    record = doc.record
    for (path, text), field_spans in zip(doc.fields, by_field):
        if field_spans:
            set_path(record, path, pii.scrub(text, field_spans))
    return record


def _score(pending: list[tuple[str, list[str]]], scorer: toxicity.Scorer, batch: int, stats: dict) -> None:
    flat = [line for _, lines in pending for line in lines]
    scores: list[float] = []
    for i in range(0, len(flat), batch):
        chunk = flat[i : i + batch]
        got = list(scorer(chunk))
        if len(got) != len(chunk):
            from safealign.errors import SafealignError

            raise SafealignError(f"audit: toxicity scorer returned {len(got)} scores for {len(chunk)} lines")
        scores.extend(got)
    t, pos = stats["toxicity"], 0
    for _, lines in pending:
        if not lines:  # sampled but nothing to score (whitespace only)
            t["unscored_documents"] += 1
            continue
        doc_scores = scores[pos : pos + len(lines)]
        pos += len(lines)
        mean = sum(doc_scores) / len(doc_scores)
        t["documents"] += 1
        t["lines"] += len(lines)
        t["sum"] += mean
        t["ge_0_5"] += mean >= 0.5
        t["histogram"][toxicity.bin_index(mean)] += 1
