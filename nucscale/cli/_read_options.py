"""The read options ``run`` and ``info`` share: ``--channel``, ``--intensity-range``, ``--z``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from nucscale.errors import InputError

if TYPE_CHECKING:
    from nucscale.io import ReadOptions

ChannelOption = Annotated[
    str | None,
    typer.Option(
        help="Nuclear channel of multi-channel fluorescence slides: a name (DAPI) or a 0-based "
        "index (default: by name, then blue emission; refused when undecided). A CSV "
        "'channel' column overrides it per slide."
    ),
]
IntensityOption = Annotated[
    tuple[float, float] | None,
    typer.Option(
        help="Sample values mapped to black and white for more-than-8-bit or float slides "
        "(default: 0 to the top of the bit depth the values use; floats: the 0.1-99.9th "
        "percentiles), e.g. --intensity-range 0 4095."
    ),
]
ZOption = Annotated[
    str | None,
    typer.Option(
        "--z",
        help="Focal plane of a Z stack: its 0-based index, or max for a maximum projection "
        "(a stack without --z is refused).",
    ),
]


def read_options(
    channel: str | None, intensity: tuple[float, float] | None, z: str | None
) -> ReadOptions:
    """The options, or a one-line :class:`InputError` naming the bad one."""
    from nucscale.io import ReadOptions  # imported when used: a fast start for every command

    try:
        return ReadOptions(channel=channel, intensity=intensity, z=z)
    except ValueError as exc:
        raise InputError("command line", str(exc)) from None
