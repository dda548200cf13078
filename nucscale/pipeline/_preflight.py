"""Checks made before a cluster starts: can ``--out`` be written, can any input be processed.

Starting a local cluster takes seconds; a mistyped path should not. These checks run on the
client, against the file system it sees:

- (``--out`` is checked by the CLI before this module loads: :mod:`nucscale.cli._precheck`.)
- :func:`unusable_inputs`: the inputs are opened in order, as planning opens them, until one
  opens with a pixel size. Only when none does is the run refused (every reason, one line
  each). A cohort with at least one usable input runs as a whole: its bad inputs fail on the
  workers and are recorded in the manifest like any failed slide, and a large cohort costs one
  open here, not one per slide.

With a remote scheduler the workers may see other file systems than the client, so the CLI
leaves the inputs to them.
"""

from __future__ import annotations

from collections.abc import Sequence

from nucscale.errors import NucscaleError
from nucscale.pipeline._inputs import RejectedInput, SlideInput
from nucscale.pipeline._plan import level0_mpp, open_input


def unusable_inputs(
    slides: Sequence[SlideInput], rejected: Sequence[RejectedInput] = ()
) -> list[str]:
    """Why no input can be processed (one reason per input: the rejected ones, then the slides
    in order); empty as soon as one slide opens with a pixel size (see the module docstring).

    ``rejected`` are inputs :func:`~nucscale.pipeline.resolve_inputs` refused already; their
    reasons are included when no slide is usable.
    """
    reasons: list[str] = []
    for inp in slides:
        try:
            with open_input(inp) as slide:
                level0_mpp(inp, slide)
        except NucscaleError as exc:
            reasons.append(str(exc).splitlines()[0])
        else:
            return []
    return [r.reason for r in rejected] + reasons
