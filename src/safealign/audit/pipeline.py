"""The audit, end to end: plan shards → audit the unfinished ones (in-process or on Ray) → merge → exclude
sources → write the report.

    summary = run_audit(["data/mix.jsonl"], "runs/x/audit", scrub=True, toxicity_sample=0.1)

Memory is bounded by one shard in flight per worker plus the merged counts (which grow with the number of
sources and files, not documents). A killed audit resumes: shard results already in OUT are merged, not redone.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safealign.audit import toxicity
from safealign.audit.config import AuditConfig
from safealign.audit.readers import ShardSpec, plan_shards
from safealign.audit.representation import IdentityLexicon, load_identity_lexicon
from safealign.audit.shard import audit_shard, empty_stats, merge, redacted_name, result_path
from safealign.errors import SafealignError
from safealign.io import atomic_path, write_json


def run_audit(
    paths: str | Path | list[str | Path],
    out_dir: str | Path,
    *,
    toxicity_scorer: toxicity.Scorer | None = None,
    progress: bool = False,
    **options: Any,
) -> dict:
    """Audit a corpus; write OUT/audit.{json,md,html} (and OUT/redacted/ when `scrub=True`); return the summary.

    `options` are `AuditConfig` fields (text_field, scrub, exclude_sources, max_pii_per_doc, toxicity_sample,
    lang_threshold, shard_mb, ray_address, ...). `toxicity_scorer` replaces the registry's toxicity judge:
    any callable(lines) -> list of probabilities (tests pass a fake one).
    """
    t0 = time.perf_counter()
    cfg = AuditConfig.from_options(options)
    inputs = [str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if not inputs:
        raise SafealignError("audit: no corpus given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    lexicon = load_identity_lexicon(
        _holistic_bias_dir(cfg), cfg.identity_axes, cfg.identity_stopterms, cfg.holistic_bias_version
    )
    specs, plan_problems = plan_shards(inputs, int(cfg.shard_mb * 2**20), cfg.hf_split, cfg.hf_config, exclude_dir=out)
    scorer, tox_status = _resolve_scorer(cfg, toxicity_scorer)

    totals = empty_stats()
    for display, tally in plan_problems.items():
        merge(totals, {**empty_stats(), "files": {display: {"documents": 0, **tally}}})
    done, todo = [], []
    for spec in specs:
        rp = result_path(out, cfg, spec)
        if not cfg.fresh and rp.exists() and (not cfg.scrub or (out / "redacted" / redacted_name(spec)).exists()):
            done.append(rp)
        else:
            todo.append(spec)
    for rp in done:
        merge(totals, json.loads(rp.read_text(encoding="utf-8"))["stats"])

    backend = "in-process" if cfg.ray_address is None else f"ray ({cfg.ray_address})"
    t_pass = time.perf_counter()
    backend_info: dict = {}
    if cfg.ray_address is None:
        results = _run_in_process(todo, cfg, lexicon, out, scorer)
    else:
        from safealign.audit.ray_backend import run_on_ray

        results = run_on_ray(todo, cfg, out, scorer, lexicon, backend_info)
    for i, result in enumerate(results, 1):
        merge(totals, result["stats"])
        if progress:
            print(f"audit: shard {i}/{len(todo)} done ({totals['documents']} documents)", flush=True)
    pass_seconds = time.perf_counter() - t_pass

    excluded = _density_exclusions(totals, cfg)
    if cfg.scrub:
        _finalize_redacted(out, totals, excluded, cfg, {s.index: s for s in specs})
    _clean_stale(out, cfg, specs)

    meta = {
        "inputs": inputs,
        "backend": backend,
        "backend_info": backend_info,
        "shards": len(specs),
        "shards_reused": len(done),
        "seconds": round(time.perf_counter() - t0, 3),
        "pass_seconds": round(pass_seconds, 3),
        "config": cfg.as_dict(),
        "config_hash": cfg.shard_hash(),
        "identity_lexicon": lexicon.source,
        "toxicity_status": tox_status,
        "toxicity_scorer": toxicity.describe(scorer) if scorer else None,
    }
    from safealign.audit.report import build_summary, write_reports

    summary = build_summary(totals, excluded, meta, cfg)
    write_reports(out, totals, summary)
    return summary


def _holistic_bias_dir(cfg: AuditConfig) -> Path:
    from safealign.paths import datasets_root

    return datasets_root(cfg.datasets_dir) / "holistic_bias"


def _resolve_scorer(cfg: AuditConfig, injected: toxicity.Scorer | None) -> tuple[toxicity.Scorer | None, str]:
    """The line scorer and a status line for the report; a judge that cannot load skips toxicity, loudly."""
    if cfg.toxicity_sample <= 0:
        return None, "disabled (toxicity_sample = 0)"
    if injected is not None:
        return injected, f"scored {cfg.toxicity_sample:.0%} sample"
    scorer = toxicity.JudgeScorer(cfg.toxicity_judge)
    try:
        scorer(["probe line"])  # loads (and on first use trains) the judge once, here, not in every shard
    except Exception as e:  # noqa: BLE001 - a missing judge must not sink the rest of the audit
        msg = f"skipped: toxicity judge {cfg.toxicity_judge!r} unavailable ({type(e).__name__}: {e})"
        print(f"audit: warning: {msg}", flush=True)
        return None, msg
    return scorer, f"scored {cfg.toxicity_sample:.0%} sample"


def _run_in_process(
    specs: list[ShardSpec], cfg: AuditConfig, lexicon: IdentityLexicon, out: Path, scorer: toxicity.Scorer | None
) -> Iterator[dict]:
    for spec in specs:
        yield audit_shard(spec, cfg, lexicon, out, scorer)


def _density_exclusions(totals: dict, cfg: AuditConfig) -> list[dict]:
    """Sources whose PII items per document exceed `max_pii_per_doc`, plus the blocklist, for the report."""
    excluded = []
    if cfg.max_pii_per_doc is not None:
        for name, s in sorted(totals["sources"].items()):
            density = s["pii_items"] / s["documents"] if s["documents"] else 0.0
            if s["documents"] >= cfg.min_source_docs and density > cfg.max_pii_per_doc:
                excluded.append(
                    {
                        "source": name,
                        "reason": "pii_density",
                        "documents": s["documents"],
                        "pii_items_per_document": round(density, 4),
                    }
                )
    return excluded


def _finalize_redacted(
    out: Path, totals: dict, excluded: list[dict], cfg: AuditConfig, specs_by_index: dict[int, ShardSpec]
) -> None:
    """Drop density-excluded sources from the redacted shards that hold them; write redacted/MANIFEST.json."""
    drop = {e["source"] for e in excluded}
    kept_total = 0
    files = []
    for name, info in sorted(totals["redacted"].items()):
        path = out / "redacted" / name
        kept = info["documents"]
        if drop & set(info["sources"]) and path.exists():
            spec = specs_by_index.get(int(name.split("-", 1)[0]))
            default = spec.default_source if spec else ""
            kept = _drop_sources(path, drop, cfg.source_field, default)
        files.append({"file": name, "documents": kept})
        kept_total += kept
    write_json(
        out / "redacted" / "MANIFEST.json",
        {
            "files": files,
            "documents": kept_total,
            "excluded_sources": sorted(drop),
            "blocklist": list(cfg.exclude_sources),
            "placeholders": "[EMAIL] [PHONE] [ADDRESS] [CREDIT_CARD] [NATIONAL_ID] [IBAN] [IP_ADDRESS] [PERSON]",
        },
    )


def _drop_sources(path: Path, drop: set[str], source_field: str, default_source: str) -> int:
    kept = 0
    with atomic_path(path) as tmp, open(path, encoding="utf-8") as src, open(tmp, "w", encoding="utf-8") as dst:
        for line in src:
            rec = json.loads(line)
            s = rec.get(source_field)
            source = str(s) if isinstance(s, (str, int)) and str(s) else default_source
            if source not in drop:
                dst.write(line)
                kept += 1
    return kept


def _clean_stale(out: Path, cfg: AuditConfig, specs: list[ShardSpec]) -> None:
    """Remove shard results of other configurations and redacted shards not in this plan."""
    import shutil

    shards = out / "shards"
    if shards.is_dir():
        for d in shards.iterdir():
            if d.is_dir() and d.name != cfg.shard_hash():
                shutil.rmtree(d, ignore_errors=True)
    red = out / "redacted"
    if red.is_dir():
        wanted = {redacted_name(s) for s in specs} if cfg.scrub else set()
        for f in red.glob("*.jsonl"):
            if f.name not in wanted:
                os.remove(f)
        if not cfg.scrub:
            (red / "MANIFEST.json").unlink(missing_ok=True)
