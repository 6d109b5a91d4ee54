"""`safealign audit CORPUS... --out DIR`: the typer command (the main CLI registers `audit_command`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def audit_command(
    corpus: Annotated[
        list[str],
        typer.Argument(
            help="JSONL / Parquet / text files or folders, or a Hugging Face dataset id (owner/name or hf:name)."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: audit.json, audit.md, audit.html, shard results, redacted/.")
    ],
    text_field: Annotated[
        str, typer.Option(help="Record field holding the text; 'auto' = text, content, or prompt/response/messages.")
    ] = "auto",
    source_field: Annotated[
        str, typer.Option(help="Record field naming the source; absent -> the file name.")
    ] = "source",
    text_unit: Annotated[str, typer.Option(help="Plain-text files: 'line' (a document per line) or 'file'.")] = "line",
    scrub: Annotated[
        bool, typer.Option("--scrub/--no-scrub", help="Write a redacted copy with typed placeholders to OUT/redacted/.")
    ] = False,
    exclude_source: Annotated[
        Optional[list[str]], typer.Option(help="Source to exclude (name or glob); repeatable.")
    ] = None,
    source_blocklist: Annotated[Optional[Path], typer.Option(help="File of sources to exclude, one a line.")] = None,
    max_pii_per_doc: Annotated[
        Optional[float], typer.Option(help="Exclude sources with more PII items per document than this.")
    ] = None,
    min_source_docs: Annotated[int, typer.Option(help="Smallest source the density rule may exclude.")] = 20,
    toxicity_sample: Annotated[
        float, typer.Option(help="Share of documents scored by the toxicity judge; 0 disables.")
    ] = 0.1,
    toxicity_judge: Annotated[str, typer.Option(help="Judge registry name for toxicity.")] = "toxicity",
    seed: Annotated[int, typer.Option(help="Seed of the toxicity sample.")] = 0,
    lang_threshold: Annotated[
        float, typer.Option(help="Language-ID confidence below which a document is 'unknown'.")
    ] = 0.5,
    shard_mb: Annotated[float, typer.Option(help="Shard size in MiB (unit of work, resume and Ray tasks).")] = 32.0,
    hf_split: Annotated[str, typer.Option(help="Split of a Hugging Face dataset id.")] = "train",
    hf_config: Annotated[Optional[str], typer.Option(help="Configuration of a Hugging Face dataset id.")] = None,
    datasets_dir: Annotated[
        Optional[Path],
        typer.Option(help="Folder holding holistic_bias/ (default: $SAFEALIGN_DATASETS or ../shared/datasets)."),
    ] = None,
    ray_address: Annotated[
        Optional[str],
        typer.Option(help="Run on Ray: 'local' starts a local cluster; 'auto' or ray://host:port joins one."),
    ] = None,
    ray_workers: Annotated[
        Optional[int], typer.Option(help="Concurrent shard workers on Ray (default: cluster CPUs).")
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Redo every shard instead of reusing finished ones in OUT.")
    ] = False,
) -> None:
    """Audit training data the Llama 2 way: personal information, pronouns and identity terms, toxicity, languages."""
    from safealign.audit.config import load_blocklist
    from safealign.audit.pipeline import run_audit
    from safealign.errors import SafealignError

    try:
        blocklist = tuple(exclude_source or ()) + (load_blocklist(source_blocklist) if source_blocklist else ())
        s = run_audit(
            corpus,
            out,
            progress=True,
            text_field=text_field,
            source_field=source_field,
            text_unit=text_unit,
            scrub=scrub,
            exclude_sources=blocklist,
            max_pii_per_doc=max_pii_per_doc,
            min_source_docs=min_source_docs,
            toxicity_sample=toxicity_sample,
            toxicity_judge=toxicity_judge,
            seed=seed,
            lang_threshold=lang_threshold,
            shard_mb=shard_mb,
            hf_split=hf_split,
            hf_config=hf_config,
            datasets_dir=str(datasets_dir) if datasets_dir else None,
            ray_address=ray_address,
            ray_workers=ray_workers,
            fresh=fresh,
        )
    except SafealignError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    pii = s["pii"]["documents_with_any"]
    typer.echo(
        f"audited {s['documents']:,} documents ({s['bad_records']:,} bad records, "
        f"{s['excluded_documents']:,} in excluded sources); with PII: {100 * pii['rate'] if pii['n'] else 0:.2f}%; "
        f"toxicity: {s['toxicity']['status']}"
    )
    typer.echo(f"report: {out / 'audit.md'}  {out / 'audit.html'}  {out / 'audit.json'}")
