"""Training-data safety audit (Llama 2 §4.1): personal information, representation, toxicity, languages.

    from safealign.audit import run_audit
    summary = run_audit(["mix.jsonl"], "runs/x/audit", scrub=True)   # -> dict; OUT/audit.{json,md,html}
    headline(summary)                                                # -> the few numbers for a run report

Runs in-process by default and on a Ray cluster with `ray_address=` (same per-shard code); sharded,
streaming and resumable. Heavy libraries (ray, pyarrow, datasets, matplotlib, jinja2, the judges) are imported
only where used.
"""

from safealign.audit.config import PII_TYPES, AuditConfig
from safealign.audit.pipeline import run_audit


def headline(summary: dict) -> dict:
    """The few numbers a run report shows about its training data; see `safealign.audit.report.headline`."""
    from safealign.audit.report import headline as _headline

    return _headline(summary)


__all__ = ["PII_TYPES", "AuditConfig", "headline", "run_audit"]
