"""The run report: Markdown, one self-contained HTML page (plots embedded, all model text escaped), a model card,
metrics JSON, and `compare` between two evaluations."""

from safealign.report.build import build_report_context, write_model_card, write_report
from safealign.report.compare import compare_markdown, compare_metrics

__all__ = ["build_report_context", "compare_markdown", "compare_metrics", "write_model_card", "write_report"]
