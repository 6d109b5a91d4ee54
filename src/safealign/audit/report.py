"""The audit's report: a JSON summary plus Markdown and HTML in the layout of Llama 2's Table 9 (pronouns,
identity terms), Table 10 (languages) and Figure 13 (toxicity histogram).

Every rate carries its n and a Wilson 95% interval. Corpus-derived strings (file names, source names, error
messages) are escaped: the HTML through Jinja2's autoescape, Markdown table cells by `md_cell`. No document
text and no detected personal information ever reaches the report; only counts and locations do.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from safealign.audit import language, pii
from safealign.audit.config import PII_TYPES, AuditConfig
from safealign.audit.readers import BAD_KINDS
from safealign.audit.representation import AXIS_TITLES, GENDER_GROUPS, PERSON_GROUPS, PRONOUNS
from safealign.audit.toxicity import N_BINS
from safealign.io import write_json, write_text
from safealign.stats import wilson

PRONOUN_TITLES = {"she": "She", "he": "He", "unspecified": "Unspecified", "1st": "1st", "2nd": "2nd", "3rd": "3rd"}
_PRONOUN_ORDER = {  # Llama 2's listing order (sets lose it)
    "she": "she, her, hers, herself",
    "he": "he, him, his, himself",
    "unspecified": "they, them, their, theirs, theirself, themself, themselves",
    "1st": "I, me, my, mine, myself, we, us, our, ours, ourselves",
    "2nd": "you, your, yours, yourself, yourselves",
    "3rd": "it, its, itself, she, her, hers, herself, he, him, his, himself, they, them, their, theirs, "
    "theirself, themself, themselves",
}
LANGUAGE_MIN_SHARE = 0.00005
"""Table 10 lists languages with at least 0.005% of documents; the rest are summed as "other"."""
TOP_TERMS = 5
TOP_SOURCES = 50


def _rate(k: int, n: int) -> dict:
    return wilson(k, n).as_dict()


def build_summary(totals: dict, excluded: list[dict], meta: dict, cfg: AuditConfig) -> dict[str, Any]:
    n = totals["documents"]
    files = []
    for name, t in sorted(totals["files"].items()):
        row = {"file": name, "documents": t.get("documents", 0)}
        row.update({k: t.get(k, 0) for k in BAD_KINDS})
        row["bad_records"] = sum(row[k] for k in BAD_KINDS)
        row["examples"] = t.get("examples", [])
        files.append(row)

    p = totals["pii"]
    by_type = {
        t: {"documents": _rate(p["documents"].get(t, 0), n), "items": p["items"].get(t, 0)} for t in cfg.pii_types
    }
    sources = []
    for name, s in totals["sources"].items():
        density = s["pii_items"] / s["documents"] if s["documents"] else 0.0
        sources.append(
            {
                "source": name,
                "documents": s["documents"],
                "pii_documents": s["pii_documents"],
                "pii_items": s["pii_items"],
                "pii_items_per_document": round(density, 4),
                "by_type": s["by_type"],
            }
        )
    sources.sort(key=lambda r: (-r["pii_items_per_document"], r["source"]))
    blocklisted = [
        {"source": s, "reason": "blocklist", "documents": k} for s, k in sorted(totals["blocklisted_sources"].items())
    ]

    pr = totals["pronouns"]
    gendered, anyp = pr.get("gendered", 0), pr.get("any", 0)
    pronouns = {
        "gender": {
            "documents": _rate(gendered, n),
            "groups": {
                g: {"of_gendered": _rate(pr.get(g, 0), gendered), "of_all": _rate(pr.get(g, 0), n)}
                for g in GENDER_GROUPS
            },
        },
        "person": {
            "documents": _rate(anyp, n),
            "groups": {
                g: {"of_any": _rate(pr.get(g, 0), anyp), "of_all": _rate(pr.get(g, 0), n)} for g in PERSON_GROUPS
            },
        },
        "lists": {g: sorted(PRONOUNS[g]) for g in PRONOUNS},
    }

    identity = {}
    for axis in cfg.identity_axes:
        a = totals["identity"].get(axis, {"documents": 0, "terms": {}})
        top = sorted(a["terms"].items(), key=lambda kv: (-kv[1], kv[0]))
        identity[axis] = {
            "title": AXIS_TITLES.get(axis, axis),
            "documents": _rate(a["documents"], n),
            "top": [{"term": t, "documents": k, "of_axis": _rate(k, a["documents"])} for t, k in top[:TOP_TERMS]],
            "term_documents": dict(top),
        }

    tox = totals["toxicity"]
    scored = tox["documents"]
    toxicity = {
        "status": meta["toxicity_status"],
        "scorer": meta["toxicity_scorer"],
        "sample_rate": cfg.toxicity_sample,
        "documents_scored": scored,
        "lines_scored": tox["lines"],
        "unscored_documents": tox["unscored_documents"],
        "ge_0_5": _rate(tox["ge_0_5"], scored),
        "mean": tox["sum"] / scored if scored else None,
        "histogram": {"edges": [round(i / N_BINS, 4) for i in range(N_BINS + 1)], "counts": tox["histogram"]},
    }

    langs = sorted(totals["languages"].items(), key=lambda kv: (-kv[1], kv[0]))
    shown = [(c, k) for c, k in langs if n and k / n >= LANGUAGE_MIN_SHARE]
    other = n - sum(k for _, k in shown)
    languages = {
        "threshold": cfg.lang_threshold,
        "identifier": language.backend(),
        "table": [{"language": c, "documents": _rate(k, n)} for c, k in shown]
        + ([{"language": "other", "documents": _rate(other, n)}] if other else []),
        "counts": dict(langs),
    }

    return {
        "documents": n,
        "documents_read": n + totals["blocklisted_documents"],
        "characters": totals["characters"],
        "bad_records": sum(f["bad_records"] for f in files),
        "files_with_problems": sum(1 for f in files if f["bad_records"]),
        "files": files,
        "pii": {
            "documents_with_any": _rate(p["documents_with_any"], n),
            "by_type": by_type,
            "person_name_detector": pii.person_name_backend() if "person_name" in cfg.pii_types else None,
            "sources": sources[:TOP_SOURCES],
            "sources_total": len(sources),
        },
        "excluded_sources": blocklisted + excluded,
        "excluded_documents": totals["blocklisted_documents"] + sum(e["documents"] for e in excluded),
        "pronouns": pronouns,
        "identity": identity,
        "toxicity": toxicity,
        "languages": languages,
        "redacted": "redacted/" if cfg.scrub else None,
        "meta": meta,
    }


def headline(s: dict) -> dict[str, Any]:
    """The few numbers a run report shows about its training data (the full summary stays in audit.json)."""
    g, p = s["pronouns"]["gender"]["groups"], s["pronouns"]["person"]["documents"]
    return {
        "documents": s["documents"],
        "bad_records": s["bad_records"],
        "pii_documents_share": s["pii"]["documents_with_any"]["rate"],
        "pii_items": {t: r["items"] for t, r in s["pii"]["by_type"].items() if r["items"]},
        "excluded_sources": [e["source"] for e in s["excluded_sources"]],
        "she_share_of_gendered": g["she"]["of_gendered"]["rate"],
        "he_share_of_gendered": g["he"]["of_gendered"]["rate"],
        "pronoun_documents_share": p["rate"],
        "identity_axis_share": {a: v["documents"]["rate"] for a, v in s["identity"].items()},
        "toxic_share": s["toxicity"]["ge_0_5"]["rate"] if s["toxicity"]["documents_scored"] else None,
        "toxicity_status": s["toxicity"]["status"],
        "languages": {r["language"]: r["documents"]["rate"] for r in s["languages"]["table"][:5]},
        "report": s["meta"].get("reports", {}).get("html"),
    }


# ---------------------------------------------------------------------------------------------- writing


def write_reports(out: Path, totals: dict, summary: dict) -> None:
    png = _toxicity_plot(summary["toxicity"])
    if png:
        (out / "toxicity_histogram.png").write_bytes(png)
    summary["meta"]["reports"] = {
        "json": str(out / "audit.json"),
        "markdown": str(out / "audit.md"),
        "html": str(out / "audit.html"),
    }
    write_json(out / "audit.json", summary)
    write_text(out / "audit.md", to_markdown(summary))
    write_text(out / "audit.html", to_html(summary, png))


def _pct(r: dict | None, digits: int = 2) -> str:
    if not r or not r["n"]:
        return "n/a"
    return f"{100 * r['rate']:.{digits}f}%"


def _ci(r: dict) -> str:
    if not r["n"]:
        return "n/a (n=0)"
    lo, hi = r["ci95"]
    return f"{100 * r['rate']:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}] (n={r['n']})"


def md_cell(value: Any) -> str:
    """A Markdown table cell: one line, pipes escaped, HTML metacharacters neutralised."""
    s = html.escape(str(value), quote=False).replace("\r", " ").replace("\n", " ")
    return s.replace("|", "\\|").replace("`", "\\`")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return lines


def table9a_rows(s: dict) -> list[list[str]]:
    g, p = s["pronouns"]["gender"], s["pronouns"]["person"]
    rows = [["Gender Pronouns", _pct(g["documents"]), "Grammatical Person", _pct(p["documents"])]]
    for ga, pa in zip(GENDER_GROUPS, PERSON_GROUPS):
        rows.append(
            [
                f"{PRONOUN_TITLES[ga]} ({_PRONOUN_ORDER[ga]})",
                _pct(g["groups"][ga]["of_gendered"]),
                f"{PRONOUN_TITLES[pa]} ({_PRONOUN_ORDER[pa]})",
                _pct(p["groups"][pa]["of_any"]),
            ]
        )
    return rows


def table9b(s: dict) -> tuple[list[str], list[list[str]]]:
    axes = list(s["identity"].values())
    header = [f"{a['title']} ({_pct(a['documents'])})" for a in axes]
    rows = []
    for i in range(TOP_TERMS):
        row = []
        for a in axes:
            row.append(f"{a['top'][i]['term']} {_pct(a['top'][i]['of_axis'], 1)}" if i < len(a["top"]) else "")
        if any(row):
            rows.append(row)
    return header, rows


def to_markdown(s: dict) -> str:
    m = s["meta"]
    out = ["# Training-data safety audit", ""]
    out += [
        f"- corpus: {md_cell(', '.join(m['inputs']))}",
        f"- documents audited: {s['documents']:,} of {s['documents_read']:,} read "
        f"({s['excluded_documents']:,} in excluded sources); characters: {s['characters']:,}",
        f"- bad records: {s['bad_records']:,} in {s['files_with_problems']} file(s) (skipped, input untouched)",
        f"- backend: {md_cell(m['backend'])}; shards: {m['shards']} ({m['shards_reused']} reused from an "
        f"earlier run); {m['seconds']:.1f} s; config {m['config_hash']}",
        "",
    ]

    out += ["## Files", ""]
    out += _table(
        [
            "file",
            "documents",
            "invalid JSON",
            "not an object",
            "bad encoding",
            "missing text",
            "empty text",
            "unreadable",
            "first problems",
        ],
        [
            [
                f["file"],
                f["documents"],
                f["invalid_json"],
                f["not_object"],
                f["bad_encoding"],
                f["missing_text"],
                f["empty_text"],
                f["unreadable"] + f["unsupported"],
                "; ".join(f"{e['where']}: {e['problem']}" for e in f["examples"][:3]),
            ]
            for f in s["files"]
        ],
    )

    p = s["pii"]
    out += [
        "",
        "## Personal information",
        "",
        f"Documents with any personal information: {_ci(p['documents_with_any'])}. "
        f"Person names: {p['person_name_detector'] or 'not detected'}.",
        "",
    ]
    out += _table(
        ["type", "documents", "share of documents [95% CI]", "items"],
        [[t, r["documents"]["k"], _ci(r["documents"]), r["items"]] for t, r in p["by_type"].items()],
    )
    out += ["", f"### Sources by PII density (top {min(TOP_SOURCES, p['sources_total'])} of {p['sources_total']})", ""]
    out += _table(
        ["source", "documents", "documents with PII", "PII items per document"],
        [[r["source"], r["documents"], r["pii_documents"], f"{r['pii_items_per_document']:.3f}"] for r in p["sources"]],
    )
    out += ["", "### Excluded sources", ""]
    if s["excluded_sources"]:
        out += _table(
            ["source", "reason", "documents", "PII items per document"],
            [
                [e["source"], e["reason"], e["documents"], e.get("pii_items_per_document", "")]
                for e in s["excluded_sources"]
            ],
        )
        out += [
            "",
            "Blocklisted sources are not audited; sources excluded for PII density are audited (their "
            "documents are in the statistics above) and dropped from the redacted copy.",
        ]
    else:
        out += ["None."]
    if s["redacted"]:
        out += ["", f"Redacted copy (typed placeholders): `{s['redacted']}` in the output folder."]

    out += [
        "",
        "## Representation (Llama 2 Table 9)",
        "",
        "(a) Percentage of documents containing gender pronouns and grammatical person. The header row is the "
        "share of all documents; each group is a share of the documents in its header's subset.",
        "",
    ]
    t9a = table9a_rows(s)
    out += _table(t9a[0], t9a[1:])
    header, rows = table9b(s)
    out += [
        "",
        "(b) Share of all documents mentioning each axis (header) and, among those, the share mentioning "
        "each of its top descriptors (HolisticBias, lower-cased, longest match).",
        "",
    ]
    out += _table(header, rows)

    t = s["toxicity"]
    out += ["", "## Toxicity prevalence (Llama 2 Figure 13)", "", f"Status: {md_cell(t['status'])}."]
    if t["documents_scored"]:
        out += [
            f"Scorer: {md_cell(t['scorer'])}; {t['documents_scored']:,} documents ({t['lines_scored']:,} lines) "
            f"scored; document score = mean over its lines.",
            f"Documents with score ≥ 0.5: {_ci(t['ge_0_5'])}; mean score {t['mean']:.4f}.",
            "",
        ]
        edges = t["histogram"]["edges"]
        out += _table(
            ["score bin", "documents"],
            [[f"[{edges[i]:.2f}, {edges[i + 1]:.2f})", c] for i, c in enumerate(t["histogram"]["counts"])],
        )
    la = s["languages"]
    out += [
        "",
        "## Languages (Llama 2 Table 10)",
        "",
        f"Identifier: {md_cell(la['identifier'])}; below confidence {la['threshold']} a document is "
        f'"unknown". Languages under {100 * LANGUAGE_MIN_SHARE:.3f}% of documents are summed as "other".',
        "",
    ]
    out += _table(
        ["Language", "Percent", "documents"],
        [[r["language"], _pct(r["documents"]), r["documents"]["k"]] for r in la["table"]],
    )
    return "\n".join(out) + "\n"


def _toxicity_plot(t: dict) -> bytes | None:
    if not t["documents_scored"]:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    edges, counts = t["histogram"]["edges"], t["histogram"]["counts"]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    ax.bar(edges[:-1], counts, width=1 / N_BINS, align="edge", color="#4c72b0", edgecolor="white")
    ax.set_yscale("log")
    ax.set_xlim(0, 1)
    ax.axvline(0.5, color="#c44e52", linestyle="--", linewidth=1)
    ax.set_xlabel("toxicity score (mean over a document's lines)")
    ax.set_ylabel("documents (log scale)")
    ax.set_title(f"Toxicity of a {t['sample_rate']:.0%} document sample (n={t['documents_scored']:,})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def to_html(s: dict, png: bytes | None) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent)),
        autoescape=True,  # every corpus-derived string is escaped
        trim_blocks=True,
        lstrip_blocks=True,
    )
    header, rows = table9b(s)
    return env.get_template("report.html.j2").render(
        s=s,
        t9a=table9a_rows(s),
        t9b_header=header,
        t9b_rows=rows,
        pct=_pct,
        ci=_ci,
        png=base64.b64encode(png).decode() if png else None,
        pii_types=PII_TYPES,
    )
