"""Building and submitting the Dask graph for a slide and a cohort."""

from nucscale.pipeline._cohort import run_cohort
from nucscale.pipeline._inputs import RejectedInput, SlideInput, resolve_inputs
from nucscale.pipeline._plan import SlidePlan, make_plan, settings_key
from nucscale.store import check_slide_id  # the one rule for ids that name paths

__all__ = [
    "RejectedInput",
    "SlideInput",
    "SlidePlan",
    "check_slide_id",
    "make_plan",
    "resolve_inputs",
    "run_cohort",
    "settings_key",
]
