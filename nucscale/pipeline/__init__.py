"""Building and submitting the Dask graph for a slide and a cohort."""

from nucscale.pipeline._cohort import run_cohort
from nucscale.pipeline._inputs import RejectedInput, SlideInput, check_slide_id, resolve_inputs
from nucscale.pipeline._plan import SlidePlan, make_plan, settings_key

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
