"""Training-data audit: known counts on a synthetic corpus, bad files, resume, scrub, report, backends."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safealign.audit import pii, run_audit
from safealign.audit import pipeline as audit_pipeline
from safealign.audit.config import PII_TYPES
from safealign.audit.representation import load_identity_lexicon, pronoun_groups, tokenize
from safealign.audit.synthetic import make_corpus
from safealign.errors import SafealignError


def _datasets_dir() -> Path | None:
    for cand in (
        os.environ.get("SAFEALIGN_DATASETS"),
        Path(__file__).resolve().parents[1].parent / "shared" / "datasets",
    ):
        if cand and (Path(cand) / "holistic_bias" / "v1.1" / "descriptors.json").exists():
            return Path(cand)
    return None


DATASETS = _datasets_dir()
needs_hb = pytest.mark.skipif(DATASETS is None, reason="HolisticBias descriptors (shared/datasets) not found")


def audit(paths, out, **kw):
    kw.setdefault("toxicity_sample", 0.0)
    kw.setdefault("datasets_dir", str(DATASETS) if DATASETS else None)
    return run_audit(paths, out, **kw)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def corpus():
    return make_corpus(1500, seed=11)


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory, corpus):
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "mix.jsonl", corpus.records)


@pytest.fixture(scope="module")
def audited(tmp_path_factory, corpus_file):
    """One in-process audit of the synthetic corpus, many small shards, scrub on."""
    out = tmp_path_factory.mktemp("audit")
    return audit([corpus_file], out, shard_mb=0.05, scrub=True), out


# ---------------------------------------------------------------------------------------------- PII


def test_luhn_iban_and_card_brands():
    assert pii.luhn_ok("4111111111111111") and not pii.luhn_ok("4111111111111112")
    assert pii.luhn_ok("79927398713")  # the textbook example
    assert pii.card_brand("378282246310005") == "amex" and pii.card_brand("9111111111111111") is None
    assert pii.iban_ok("GB82 WEST 1234 5698 7654 32") and pii.iban_ok("DE89370400440532013000")
    assert not pii.iban_ok("GB82 WEST 1234 5698 7654 33")
    spans = pii.detect("pay 4111 1111 1111 1111 or 4111 1111 1111 1112", ["credit_card"])
    assert [s.type for s in spans] == ["credit_card"]  # the second fails Luhn


def test_pii_recall_and_false_positives_on_synthetic_corpus(corpus):
    """Recall ≥ 0.95 on planted items (overall and per type), ≤ 1% of clean documents flagged."""
    found: dict[str, int] = {}
    planted: dict[str, int] = {}
    flagged_clean = clean = 0
    for rec, items, is_clean in zip(corpus.records, corpus.planted, corpus.clean):
        spans = pii.detect(rec["text"], PII_TYPES)
        for kind, a, b in items:
            planted[kind] = planted.get(kind, 0) + 1
            found[kind] = found.get(kind, 0) + any(s.type == kind and s.start <= a and s.end >= b for s in spans)
        if is_clean:
            clean += 1
            flagged_clean += bool(spans)
    assert set(planted) == set(PII_TYPES) and min(planted.values()) >= 20
    assert sum(found.values()) / sum(planted.values()) >= 0.95
    for kind in PII_TYPES:
        assert found[kind] / planted[kind] >= 0.9, kind
    assert clean >= 500 and flagged_clean / clean <= 0.01


def test_scrub_writes_typed_placeholders():
    text = "Mail ann.lee@example.com or call (415) 555-0132; card 4111-1111-1111-1111, SSN 123-45-6789."
    out = pii.scrub(text, pii.detect(text, PII_TYPES))
    assert out == "Mail [EMAIL] or call [PHONE]; card [CREDIT_CARD], SSN [NATIONAL_ID]."


@pytest.mark.parametrize(
    "clean",
    [
        "Version 3.11.7 was released on 2024-01-05 at 10:30.",
        "ISBN 978-0-306-40615-7 sold 1,234,567 copies for $12.99.",
        "Temperatures reached 31 degrees near Virginia Beach and Santa Monica.",
        "The Roman Catholic choir sang at 8:15 in room 101.",
    ],
)
def test_no_pii_in_ordinary_numbers_and_places(clean):
    assert pii.detect(clean, PII_TYPES) == []


# ---------------------------------------------------------------------------------------------- representation


def test_pronoun_groups_follow_llama2_lists():
    assert pronoun_groups(tokenize("She'd told him.")) == {"she", "he", "3rd", "gendered", "any"}
    assert pronoun_groups(tokenize("It works for you and me.")) == {"3rd", "2nd", "1st", "any"}
    assert pronoun_groups(tokenize("Their dog.")) == {"unspecified", "3rd", "gendered", "any"}
    assert pronoun_groups(tokenize("Sheep herd the shepherd.")) == set()


@needs_hb
def test_identity_lexicon_rules():
    lex = load_identity_lexicon(
        DATASETS / "holistic_bias",
        ["gender_and_sex", "sexual_orientation", "nationality", "race_ethnicity", "religion"],
        ("straight", "white", "black"),
    )
    got = lex.match(tokenize("A queer Latin American, a Mexican-American and a straight, white, Black Roman Catholic."))
    assert got == {
        "sexual_orientation": {"queer"},
        "race_ethnicity": {"latin american"},
        "nationality": {"mexican-american"},
        "religion": {"roman catholic"},
    }
    assert "queer" not in lex.terms("gender_and_sex") and "lgbt" in lex.terms("sexual_orientation")


@needs_hb
def test_pronoun_identity_and_pii_counts_exact(audited, corpus):
    s, _ = audited
    assert s["documents"] == len(corpus.records) and s["bad_records"] == 0
    g, p = s["pronouns"]["gender"], s["pronouns"]["person"]
    got = {k: g["groups"][k]["of_all"]["k"] for k in ("she", "he", "unspecified")}
    got |= {k: p["groups"][k]["of_all"]["k"] for k in ("1st", "2nd", "3rd")}
    got |= {"gendered": g["documents"]["k"], "any": p["documents"]["k"]}
    assert got == corpus.pronouns
    ident = {
        a: {"documents": v["documents"]["k"], "terms": v["term_documents"]}
        for a, v in s["identity"].items()
        if v["documents"]["k"]
    }
    assert ident == corpus.identity
    sources = {r["source"]: r["documents"] for r in s["pii"]["sources"]}
    assert sources == corpus.sources
    planted = corpus.pii_items()
    items = {t: v["items"] for t, v in s["pii"]["by_type"].items()}
    assert sum(min(items[t], planted[t]) for t in planted) / sum(planted.values()) >= 0.95
    assert s["languages"]["counts"] == {"en": len(corpus.records)}


def test_language_shares_and_threshold(tmp_path):
    rows = [
        {"text": t}
        for t in [
            "The weather in the mountains was cold and windy all week long.",
            "Das Wetter in den Bergen war die ganze Woche kalt und windig.",
            "Le temps dans les montagnes était froid et venteux toute la semaine.",
            "El tiempo en las montañas fue frío y ventoso toda la semana.",
            "12345 67890 !!!",
        ]
    ]
    s = audit([write_jsonl(tmp_path / "l.jsonl", rows)], tmp_path / "out")
    assert s["languages"]["counts"] == {"en": 1, "de": 1, "fr": 1, "es": 1, "unknown": 1}
    s = audit([tmp_path / "l.jsonl"], tmp_path / "out2", lang_threshold=1.0)
    assert s["languages"]["counts"] == {"unknown": 5}


# ---------------------------------------------------------------------------------------------- bad input


@needs_hb
def test_bad_files_are_counted_per_file_and_never_altered(tmp_path):
    good = [{"text": f"Plain sentence number {i} about the harbour."} for i in range(40)]
    mixed = tmp_path / "mixed.jsonl"
    lines = [json.dumps(r).encode() for r in good[:20]]
    lines[3] = b'{"text": "unterminated'
    lines[7] = "caf\xe9 latin-1".encode("latin-1")
    lines[11] = b'{"body": "no text field"}'
    lines[15] = b"[1, 2, 3]"
    mixed.write_bytes(b"\n".join(lines) + b"\n")
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_bytes('{"text": "hello"}\n'.encode("utf-16"))
    truncated = tmp_path / "trunc.jsonl.gz"
    truncated.write_bytes(gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in good))[:-30])
    junk_parquet = tmp_path / "junk.parquet"
    junk_parquet.write_bytes(b"not a parquet file")
    odd = tmp_path / "notes.docx"
    odd.write_bytes(b"PK\x03\x04")
    inputs = [mixed, utf16, truncated, junk_parquet, odd]
    before = {p: sha(p) for p in inputs}

    s = audit([str(p) for p in inputs], tmp_path / "out", shard_mb=0.0005, scrub=True)  # ~500-byte shards
    files = {Path(f["file"]).name: f for f in s["files"]}
    m = files["mixed.jsonl"]
    assert (m["documents"], m["invalid_json"], m["bad_encoding"], m["missing_text"], m["not_object"]) == (
        16,
        1,
        1,
        1,
        1,
    )
    assert [e["where"] for e in m["examples"]] == [
        "line 4",
        "line 8",
        "line 12",
        "line 16",
    ]  # absolute lines across shards
    assert files["utf16.jsonl"]["bad_encoding"] >= 1 and files["utf16.jsonl"]["documents"] == 0
    assert files["trunc.jsonl.gz"]["unreadable"] == 1
    assert files["junk.parquet"]["unreadable"] == 1 and files["notes.docx"]["unsupported"] == 1
    assert s["files_with_problems"] == 5
    assert {p: sha(p) for p in inputs} == before
    html = (tmp_path / "out" / "audit.html").read_text()
    assert "mixed.jsonl" in html and "invalid JSON" in html


def test_missing_corpus_path_is_a_clear_error(tmp_path):
    with pytest.raises(SafealignError, match="corpus path not found"):
        audit([str(tmp_path / "nope.jsonl")], tmp_path / "out")


# ---------------------------------------------------------------------------------------------- formats


@needs_hb
def test_parquet_text_gzip_chat_and_hf_readers(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"text": f"She wrote letter {i} to the council.", "source": "pq"} for i in range(10)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet", row_group_size=3)
    (tmp_path / "b.txt").write_text("He fixed the roof.\n\nThey painted the door.\n", encoding="utf-8")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"content": "You opened the window."}) + "\n")
    chat = [
        {
            "id": "x1",
            "prompt": "Can I borrow the ladder?",
            "response": "Sure, it is in the shed.",
            "context": [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there."}],
        },
        {
            "messages": [
                {"role": "user", "content": "Where is the station?"},
                {"role": "assistant", "content": "Two streets north."},
            ]
        },
    ]
    write_jsonl(tmp_path / "d.jsonl", chat)

    class FakeStream:  # what datasets.load_dataset(..., streaming=True) returns, reduced to what the reader uses
        def __init__(self, shards, index=None):
            self.shards, self.index = shards, index
            self.num_shards = len(shards)

        def shard(self, num_shards, index):
            return FakeStream(self.shards, index)

        def __iter__(self):
            for i, shard in enumerate(self.shards):
                if self.index in (None, i):
                    yield from shard

    from safealign.audit import readers

    monkeypatch.setattr(
        readers, "_load_hf", lambda *a: FakeStream([[{"text": "We met at noon."}], [{"text": "I left early."}]])
    )
    inputs = [
        tmp_path / "a.parquet",
        tmp_path / "b.txt",
        tmp_path / "c.jsonl.gz",
        tmp_path / "d.jsonl",
        "someone/tiny-set",
    ]
    s = audit([str(p) for p in inputs], tmp_path / "out", shard_mb=0.0001, scrub=True)
    files = {Path(f["file"]).name: f["documents"] for f in s["files"]}
    assert (
        files == {"a.parquet": 10, "b.txt": 2, "c.jsonl.gz": 1, "d.jsonl": 2, "tiny-set": 2} and s["bad_records"] == 0
    )
    pr = s["pronouns"]["gender"]["groups"]
    assert (pr["she"]["of_all"]["k"], pr["he"]["of_all"]["k"], pr["unspecified"]["of_all"]["k"]) == (10, 1, 1)
    assert s["pronouns"]["person"]["groups"]["1st"]["of_all"]["k"] == 3  # "I" (chat), "We", "I"
    assert s["meta"]["shards"] >= 4 + 2  # several Parquet row-group shards, two HF shards

    whole = audit([str(tmp_path / "b.txt")], tmp_path / "out2", text_unit="file")
    assert whole["documents"] == 1


# ---------------------------------------------------------------------------------------------- scale plumbing


@needs_hb
def test_shard_size_does_not_change_counts(audited, corpus_file, tmp_path):
    small, _ = audited
    big = audit([corpus_file], tmp_path / "big", shard_mb=64, scrub=True)
    assert small["meta"]["shards"] > 5 and big["meta"]["shards"] == 1
    for key in ("documents", "characters", "pii", "pronouns", "identity", "languages", "files"):
        assert small[key] == big[key], key


@needs_hb
def test_resume_skips_finished_shards(corpus_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = []
    real = audit_pipeline.audit_shard

    def counting(spec, *a, **k):
        calls.append(spec.id)
        if len(calls) == 3 and crash:
            raise KeyboardInterrupt  # killed mid-run
        return real(spec, *a, **k)

    monkeypatch.setattr(audit_pipeline, "audit_shard", counting)
    crash = True
    with pytest.raises(KeyboardInterrupt):
        audit([corpus_file], out, shard_mb=0.05)
    crash = False
    calls.clear()
    first = audit([corpus_file], out, shard_mb=0.05)
    n = first["meta"]["shards"]
    assert first["meta"]["shards_reused"] == 2 and len(calls) == n - 2
    calls.clear()
    again = audit([corpus_file], out, shard_mb=0.05)
    assert calls == [] and again["meta"]["shards_reused"] == n
    assert again["pronouns"] == first["pronouns"] and again["pii"] == first["pii"]
    calls.clear()
    audit([corpus_file], out, shard_mb=0.05, lang_threshold=0.9)  # a per-shard option changed: all redone
    assert len(calls) == n
    calls.clear()
    audit([corpus_file], out, shard_mb=0.05, lang_threshold=0.9, max_pii_per_doc=5.0)  # post-pass option: none
    assert calls == []


@needs_hb
def test_scrubbed_copy_blocklist_and_density_exclusion(tmp_path, corpus):
    rows = [dict(r) for r in corpus.records[:300]]
    rows += [
        {"text": f"Reach dana{i}@example.com or 415-555-{1000 + i:04d}.", "source": "people-finder"} for i in range(30)
    ]
    rows += [{"text": "Closed forum post about gardening.", "source": "blocked.forum"} for _ in range(5)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    before = sha(src)
    s = audit([src], tmp_path / "out", scrub=True, exclude_sources=("blocked.*",), max_pii_per_doc=1.5, shard_mb=0.01)
    assert sha(src) == before
    excluded = {e["source"]: e["reason"] for e in s["excluded_sources"]}
    assert excluded == {"blocked.forum": "blocklist", "people-finder": "pii_density"}
    assert s["documents"] == 330 and s["documents_read"] == 335  # density-excluded sources are still audited
    red = tmp_path / "out" / "redacted"
    copied = [json.loads(line) for f in sorted(red.glob("*.jsonl")) for line in f.open(encoding="utf-8")]
    assert len(copied) == 300 and json.loads((red / "MANIFEST.json").read_text())["documents"] == 300
    assert {r["source"] for r in copied} <= {"web", "books", "forum"}
    text = "\n".join(r["text"] for r in copied)
    for rec, items in zip(rows[:300], corpus.planted[:300]):
        for kind, a, b in items:
            assert rec["text"][a:b] not in text, kind
    assert "[EMAIL]" in text and "[CREDIT_CARD]" in text


@needs_hb
def test_toxicity_sample_with_fake_scorer(tmp_path):
    rows = [{"text": f"Calm line {i}.\nTOXIC line {i}." if i % 4 == 0 else f"Calm line {i}."} for i in range(200)]
    src = write_jsonl(tmp_path / "t.jsonl", rows)
    seen = []

    def fake(lines):
        seen.extend(lines)
        return [0.9 if "TOXIC" in line else 0.1 for line in lines]

    s = audit([src], tmp_path / "all", toxicity_sample=1.0, toxicity_scorer=fake, shard_mb=0.001)
    t = s["toxicity"]
    assert t["documents_scored"] == 200 and t["lines_scored"] == 250 and len(seen) == 250
    assert t["ge_0_5"]["k"] == 50  # mean of 0.9 and 0.1 is 0.5: counted, as in "≥ 0.5"
    assert sum(t["histogram"]["counts"]) == 200 and (tmp_path / "all" / "toxicity_histogram.png").exists()

    a = audit([src], tmp_path / "s1", toxicity_sample=0.25, toxicity_scorer=fake, shard_mb=0.001, seed=3)
    b = audit([src], tmp_path / "s2", toxicity_sample=0.25, toxicity_scorer=fake, shard_mb=64, seed=3)
    ta, tb = a["toxicity"], b["toxicity"]
    assert ta.pop("mean") == pytest.approx(tb.pop("mean"))  # summed in a different order
    assert ta == tb and 25 <= ta["documents_scored"] <= 75


@needs_hb
def test_unavailable_judge_skips_toxicity_without_failing(tmp_path):
    src = write_jsonl(tmp_path / "t.jsonl", [{"text": "A calm sentence."}])
    s = audit([src], tmp_path / "out", toxicity_sample=0.1, toxicity_judge="no-such-judge")
    assert s["toxicity"]["status"].startswith("skipped") and s["documents"] == 1


# ---------------------------------------------------------------------------------------------- report and CLI


@needs_hb
def test_report_escapes_corpus_text(tmp_path):
    evil = "<script>alert(1)</script>|x"
    src = tmp_path / "e<b>.jsonl"
    src.write_text(json.dumps({"text": "She met him.", "source": evil}) + "\n{bad\n", encoding="utf-8")
    audit([src], tmp_path / "out")
    html = (tmp_path / "out" / "audit.html").read_text()
    md = (tmp_path / "out" / "audit.md").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "e<b>" not in html and "e&lt;b&gt;.jsonl" in html
    assert "<script>" not in md and "\\|x" in md
    assert "| Gender Pronouns | 100.00% | Grammatical Person | 100.00% |" in md
    data = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert data["pii"]["sources"][0]["source"] == evil


@needs_hb
def test_cli_command(tmp_path, corpus):
    import typer
    from typer.testing import CliRunner

    from safealign.audit.cli import audit_command

    app = typer.Typer()
    app.command("audit")(audit_command)
    app.command("noop")(lambda: None)  # two commands, so "audit" is a sub-command as under `safealign`
    src = write_jsonl(tmp_path / "c.jsonl", corpus.records[:50])
    (tmp_path / "block.txt").write_text("# sources to drop\nforum\n")
    res = CliRunner().invoke(
        app,
        [
            "audit",
            str(src),
            "--out",
            str(tmp_path / "out"),
            "--toxicity-sample",
            "0",
            "--scrub",
            "--source-blocklist",
            str(tmp_path / "block.txt"),
            "--datasets-dir",
            str(DATASETS),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "audited" in res.output and (tmp_path / "out" / "audit.md").exists()
    assert json.loads((tmp_path / "out" / "audit.json").read_text())["excluded_sources"][0]["source"] == "forum"
    res = CliRunner().invoke(app, ["audit", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 1 and "not found" in res.output


def test_importing_the_cli_stays_light():
    code = (
        "import sys, safealign.audit.cli, safealign.audit; "
        "heavy = [m for m in ('ray', 'pyarrow', 'datasets', 'matplotlib', 'jinja2', 'py3langid', 'torch') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------- Ray


@needs_hb
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own context deprecations
def test_ray_backend_matches_in_process(audited, corpus_file, tmp_path):
    pytest.importorskip("ray.data")
    local, _ = audited

    def fake(lines):
        return [0.8 if line.startswith("She") else 0.1 for line in lines]

    ray_s = audit(
        [corpus_file],
        tmp_path / "ray",
        shard_mb=0.05,
        scrub=True,
        ray_address="local",
        ray_workers=2,
        toxicity_sample=0.2,
        toxicity_scorer=fake,
    )
    assert ray_s["meta"]["backend"].startswith("ray")
    for key in ("documents", "characters", "pii", "pronouns", "identity", "languages", "files"):
        assert ray_s[key] == local[key], key
    inproc = audit([corpus_file], tmp_path / "inproc", shard_mb=0.05, toxicity_sample=0.2, toxicity_scorer=fake)
    assert ray_s["toxicity"]["histogram"] == inproc["toxicity"]["histogram"]
    assert len(list((tmp_path / "ray" / "redacted").glob("*.jsonl"))) == ray_s["meta"]["shards"]
