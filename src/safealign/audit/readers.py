"""Corpus readers: plan shards over JSONL / Parquet / text files and Hugging Face dataset ids, then stream one
shard's documents.

A shard is a byte range of a JSONL or text file (a line belongs to the shard in which it starts), a run of
Parquet row groups, a whole gzip file, or one of a streamed HF dataset's own shards. Reading never writes:
files are opened "rb". A bad record (invalid JSON, bytes that are not UTF-8, no text field) is yielded as a
`BadRecord` for the caller to count; it never raises.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safealign.errors import SafealignError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
TEXT_SUFFIXES = (".txt", ".text", ".txt.gz")
PARQUET_SUFFIXES = (".parquet",)
_HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

# Bad-record kinds, counted per file and shown in the report's file table.
INVALID_JSON = "invalid_json"
NOT_OBJECT = "not_object"
BAD_ENCODING = "bad_encoding"
MISSING_TEXT = "missing_text"
EMPTY_TEXT = "empty_text"
UNREADABLE = "unreadable"
UNSUPPORTED = "unsupported"
BAD_KINDS = (INVALID_JSON, NOT_OBJECT, BAD_ENCODING, MISSING_TEXT, EMPTY_TEXT, UNREADABLE, UNSUPPORTED)


@dataclass(frozen=True)
class ShardSpec:
    kind: str  # "jsonl" | "text" | "parquet" | "hf"
    path: str  # absolute file path, or the HF dataset id
    display: str  # how the report names the input
    start: int  # byte offset / first row group / HF shard index
    end: int  # byte end / row group end / number of HF shards
    gz: bool = False
    index: int = 0  # position in the plan (orders redacted shards)
    stamp: str = ""  # size and mtime of the file, so an edited file is redone

    @property
    def id(self) -> str:
        key = json.dumps([self.kind, self.path, self.start, self.end, self.gz, self.stamp])
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    @property
    def default_source(self) -> str:
        return Path(self.display).name if self.kind != "hf" else self.display

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ShardSpec:
        return cls(**d)


@dataclass
class Doc:
    key: str  # stable location: "file@byte", "file#row", "hf-id:shard:i"
    text: str
    fields: list[tuple[tuple, str]]  # (path inside the record, text) for every text field; scrub rewrites these
    record: dict[str, Any] | None  # the parsed record (None for plain text)
    source: str


@dataclass
class BadRecord:
    kind: str
    where: str  # "line 12", "row 3", "file"
    problem: str


# ---------------------------------------------------------------------------------------------- planning


def _format_of(path: Path) -> tuple[str, bool] | None:
    name = path.name.lower()
    for suffixes, kind in ((JSONL_SUFFIXES, "jsonl"), (TEXT_SUFFIXES, "text"), (PARQUET_SUFFIXES, "parquet")):
        for s in suffixes:
            if name.endswith(s):
                return kind, s.endswith(".gz")
    return None


def expand_inputs(inputs: list[str], exclude_dir: Path | None = None) -> list[tuple[str, str]]:
    """(kind, where) for each input: ("file", path), ("hf", id) or ("unsupported", path).

    Directories are walked (sorted, hidden entries skipped, files of unknown format ignored); anything under
    `exclude_dir` (the audit's own output) is never read back in.
    """
    out: list[tuple[str, str]] = []
    excl = exclude_dir.resolve() if exclude_dir else None
    for raw in inputs:
        raw = str(raw)
        if raw.startswith("hf:"):
            out.append(("hf", raw[3:]))
            continue
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if any(part.startswith(".") for part in rel) or not f.is_file() or _format_of(f) is None:
                    continue
                if excl and (f.resolve() == excl or excl in f.resolve().parents):
                    continue
                out.append(("file", str(f)))
        elif p.is_file():
            out.append(("file", str(p)) if _format_of(p) else ("unsupported", str(p)))
        elif _HF_ID.fullmatch(raw):
            out.append(("hf", raw))
        else:
            raise SafealignError(
                f"{raw}: corpus path not found (a Hugging Face dataset id is written owner/name or hf:name)"
            )
    return out


def plan_shards(
    inputs: list[str], shard_bytes: int, hf_split: str, hf_config: str | None, exclude_dir: Path | None = None
) -> tuple[list[ShardSpec], dict[str, dict]]:
    """Shards for every input, in input order, plus file problems found while planning ({display: tally})."""
    specs: list[ShardSpec] = []
    problems: dict[str, dict] = {}
    for kind, where in expand_inputs(inputs, exclude_dir):
        if kind == "unsupported":
            problems[where] = {
                UNSUPPORTED: 1,
                "examples": [
                    {"where": "file", "problem": "unsupported format (use .jsonl, .parquet, .txt, optionally .gz)"}
                ],
            }
            continue
        if kind == "hf":
            specs.extend(_plan_hf(where, hf_split, hf_config))
            continue
        path = Path(where)
        fmt, gz = _format_of(path)
        st = path.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
        absolute = str(path.resolve())
        if fmt == "parquet":
            try:
                groups = _parquet_groups(path, shard_bytes)
            except Exception as e:  # noqa: BLE001 - any unreadable Parquet is a bad file, not a crash
                problems[where] = {
                    UNREADABLE: 1,
                    "examples": [{"where": "file", "problem": f"unreadable Parquet ({_short(e)})"}],
                }
                continue
            specs.extend(ShardSpec("parquet", absolute, where, a, b, False, 0, stamp) for a, b in groups)
        elif gz:
            specs.append(ShardSpec(fmt, absolute, where, 0, -1, True, 0, stamp))
        else:
            n = max(1, math.ceil(st.st_size / shard_bytes))
            specs.extend(
                ShardSpec(
                    fmt, absolute, where, k * shard_bytes, min((k + 1) * shard_bytes, st.st_size), False, 0, stamp
                )
                for k in range(n)
            )
    seen: set[str] = set()
    unique = [s for s in specs if not (s.id in seen or seen.add(s.id))]  # a file named twice is audited once
    specs = [ShardSpec(**{**s.as_dict(), "index": i}) for i, s in enumerate(unique)]
    return specs, problems


def _parquet_groups(path: Path, shard_bytes: int) -> list[tuple[int, int]]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    groups, start, size = [], 0, 0
    for g in range(meta.num_row_groups):
        size += meta.row_group(g).total_byte_size
        if size >= shard_bytes:
            groups.append((start, g + 1))
            start, size = g + 1, 0
    if start < meta.num_row_groups or not groups:
        groups.append((start, meta.num_row_groups))
    return groups


def _load_hf(dataset_id: str, split: str, config: str | None):
    """A streamed HF dataset (an IterableDataset). Kept as one function so tests can replace it."""
    try:
        import datasets
    except ImportError:
        raise SafealignError("audit: reading a Hugging Face dataset id needs the `datasets` package") from None
    try:
        return datasets.load_dataset(dataset_id, name=config, split=split, streaming=True)
    except Exception as e:  # noqa: BLE001 - offline, unknown id, gated: all end here with one message
        raise SafealignError(f"{dataset_id}: could not open the Hugging Face dataset ({_short(e)})") from None


def _plan_hf(dataset_id: str, split: str, config: str | None) -> list[ShardSpec]:
    ds = _load_hf(dataset_id, split, config)
    n = max(1, int(getattr(ds, "num_shards", None) or getattr(ds, "n_shards", 1) or 1))
    stamp = f"{split}:{config}"
    return [ShardSpec("hf", dataset_id, dataset_id, i, n, False, 0, stamp) for i in range(n)]


# ---------------------------------------------------------------------------------------------- reading


def extract_texts(record: dict, text_field: str) -> list[tuple[tuple, str]]:
    """(path, text) for each text field of a record; [] when it has none (counted as missing text)."""
    if text_field != "auto":
        v = record.get(text_field)
        return [((text_field,), v)] if isinstance(v, str) else []
    for k in ("text", "content"):
        if isinstance(record.get(k), str):
            return [((k,), record[k])]
    out: list[tuple[tuple, str]] = []
    if isinstance(record.get("messages"), list):
        out += _turns(record["messages"], "messages")
    elif isinstance(record.get("prompt"), str) or isinstance(record.get("response"), str):
        if isinstance(record.get("context"), list):
            out += _turns(record["context"], "context")
        for k in ("prompt", "response", "chosen", "rejected"):
            if isinstance(record.get(k), str):
                out.append(((k,), record[k]))
    return out


def _turns(turns: list, key: str) -> list[tuple[tuple, str]]:
    return [
        ((key, i, "content"), t["content"])
        for i, t in enumerate(turns)
        if isinstance(t, dict) and isinstance(t.get("content"), str)
    ]


def set_path(record: dict, path: tuple, value: str) -> None:
    target: Any = record
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value


def iter_shard(spec: ShardSpec, text_field: str, source_field: str, text_unit: str) -> Iterator[Doc | BadRecord]:
    """Every document or bad record of one shard, in file order."""
    if spec.kind == "parquet":
        yield from _iter_parquet(spec, text_field, source_field)
    elif spec.kind == "hf":
        yield from _iter_hf(spec, text_field, source_field)
    elif spec.kind == "text" and text_unit == "file":
        yield from _iter_text_file(spec)
    else:
        yield from _iter_lines(spec, text_field, source_field)


def _record_doc(record: Any, key: str, where: str, text_field: str, source_field: str, default_source: str):
    if not isinstance(record, dict):
        return BadRecord(NOT_OBJECT, where, f"expected a JSON object, found {type(record).__name__}")
    fields = extract_texts(record, text_field)
    if not fields:
        wanted = "text / content / prompt+response / messages" if text_field == "auto" else repr(text_field)
        return BadRecord(MISSING_TEXT, where, f"no text field ({wanted})")
    text = "\n".join(t for _, t in fields)
    if not text.strip():
        return BadRecord(EMPTY_TEXT, where, "text is empty")
    src = record.get(source_field)
    source = str(src) if isinstance(src, (str, int)) and str(src) else default_source
    return Doc(key, text, fields, record, source)


def _open_binary(spec: ShardSpec):
    return gzip.open(spec.path, "rb") if spec.gz else open(spec.path, "rb")


def _iter_lines(spec: ShardSpec, text_field: str, source_field: str) -> Iterator[Doc | BadRecord]:
    """JSONL or text lines whose first byte lies in [start, end); gzip files are read whole."""
    line_base: int | None = None  # absolute line number of the shard's first line, counted only on a first error
    first = 0  # byte offset of the shard's first line

    def where(i: int) -> str:
        nonlocal line_base
        if line_base is None:
            line_base = 1 + (_count_newlines(spec.path, first) if first > 0 else 0)
        return f"line {line_base + i}"

    try:
        with _open_binary(spec) as f:
            if spec.start > 0:
                f.seek(spec.start - 1)
                f.readline()  # the line that began before `start` belongs to the previous shard
            pos = first = f.tell() if not spec.gz else 0
            i = -1
            while spec.gz or pos < spec.end:
                raw = f.readline()
                if not raw:
                    break
                i += 1
                offset, pos = pos, pos + len(raw)
                if offset == 0 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if not raw.strip():
                    continue
                if b"\x00" in raw:
                    yield BadRecord(BAD_ENCODING, where(i), "NUL bytes (UTF-16 or binary data?)")
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield BadRecord(
                        BAD_ENCODING, where(i), f"not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})"
                    )
                    continue
                key = f"{spec.display}@{offset}"
                if spec.kind == "text":
                    text = line.rstrip("\r\n")
                    yield Doc(key, text, [(("text",), text)], None, spec.default_source)
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    yield BadRecord(INVALID_JSON, where(i), f"invalid JSON ({e.msg} at column {e.colno})")
                    continue
                yield _record_doc(record, key, where(i), text_field, source_field, spec.default_source)
    except (OSError, EOFError, zlib.error) as e:
        yield BadRecord(UNREADABLE, "file", f"unreadable ({_short(e)})")


def _count_newlines(path: str, upto: int) -> int:
    n, left = 0, upto
    with open(path, "rb") as f:
        while left > 0:
            chunk = f.read(min(left, 1 << 20))
            if not chunk:
                break
            n += chunk.count(b"\n")
            left -= len(chunk)
    return n


def _iter_text_file(spec: ShardSpec) -> Iterator[Doc | BadRecord]:
    try:
        with _open_binary(spec) as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        yield BadRecord(UNREADABLE, "file", f"unreadable ({_short(e)})")
        return
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        yield BadRecord(BAD_ENCODING, "file", f"not UTF-8 (byte {raw[e.start]:#04x} at offset {e.start})")
        return
    if "\x00" in text:
        yield BadRecord(BAD_ENCODING, "file", "NUL bytes (UTF-16 or binary data?)")
    elif not text.strip():
        yield BadRecord(EMPTY_TEXT, "file", "text is empty")
    else:
        yield Doc(f"{spec.display}@0", text, [(("text",), text)], None, spec.default_source)


def _iter_parquet(spec: ShardSpec, text_field: str, source_field: str) -> Iterator[Doc | BadRecord]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(spec.path)
        row = sum(pf.metadata.row_group(g).num_rows for g in range(spec.start))
        for batch in pf.iter_batches(batch_size=1024, row_groups=list(range(spec.start, spec.end))):
            for record in batch.to_pylist():
                row += 1
                yield _record_doc(
                    record, f"{spec.display}#{row}", f"row {row}", text_field, source_field, spec.default_source
                )
    except Exception as e:  # noqa: BLE001 - a corrupt row group is a bad file, not a crash
        yield BadRecord(UNREADABLE, "file", f"unreadable Parquet ({_short(e)})")


def _iter_hf(spec: ShardSpec, text_field: str, source_field: str) -> Iterator[Doc | BadRecord]:
    split, _, config = spec.stamp.partition(":")
    ds = _load_hf(spec.path, split, None if config == "None" else config)
    if spec.end > 1:
        ds = ds.shard(num_shards=spec.end, index=spec.start)
    for i, record in enumerate(ds):
        key = f"{spec.display}:{spec.start}:{i}"
        yield _record_doc(
            dict(record), key, f"shard {spec.start} row {i + 1}", text_field, source_field, spec.default_source
        )


def _short(e: Exception) -> str:
    s = f"{type(e).__name__}: {e}"
    return s if len(s) <= 160 else s[:157] + "..."
