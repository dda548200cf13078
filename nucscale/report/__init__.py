"""QC report: per-slide pictures and one static HTML page per cohort (``nucscale report``)."""

from nucscale.report._build import build_report, slide_pictures

__all__ = ["build_report", "slide_pictures"]
