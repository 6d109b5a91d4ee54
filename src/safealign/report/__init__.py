"""The run report: Markdown and one self-contained HTML page (plots embedded, all model text escaped)."""

from safealign.report.build import build_report_context, write_report

__all__ = ["build_report_context", "write_report"]
