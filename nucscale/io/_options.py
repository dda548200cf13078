"""How a slide's samples become the RGB uint8 the pipeline reads: the user's choices.

:class:`ReadOptions` travels with the slide's path through the Dask graph (it is small,
frozen and hashable), so every worker opens the slide exactly as the plan did. ``None`` in a
field means "decide by the documented rule":

- ``channel``: the nuclear channel of a multi-channel fluorescence slide, a name or a 0-based
  index (``--channel``; rule: :mod:`nucscale.io._channels`);
- ``intensity``: the sample values mapped to 0 and 255 (``--intensity-range LOW HIGH``; rule:
  :mod:`nucscale.io._intensity`);
- ``z``: the focal plane of a Z stack, an index or ``"max"`` for a maximum projection
  (``--z``); a stack with more than one plane and no choice is refused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadOptions:
    """A user's read choices for one slide (see the module docstring)."""

    channel: str | None = None
    intensity: tuple[float, float] | None = None
    z: str | None = None

    def __post_init__(self) -> None:
        if self.intensity is not None:
            lo, hi = (float(v) for v in self.intensity)
            if not lo < hi:
                raise ValueError(f"intensity range needs LOW < HIGH, got {lo} {hi}")
            object.__setattr__(self, "intensity", (lo, hi))
        if self.channel is not None:
            object.__setattr__(self, "channel", str(self.channel).strip() or None)
        if self.z is not None:
            z = str(self.z).strip().lower()
            if z != "max" and not z.isdigit():
                raise ValueError(f"--z takes a plane index (0, 1, ...) or 'max', got {self.z!r}")
            object.__setattr__(self, "z", z)


DEFAULT = ReadOptions()


def options_of(meta: dict[str, str]) -> ReadOptions:
    """The read options a slide was processed with, from its table's provenance
    (``read_options``, JSON); the defaults when the table predates them."""
    import json

    text = meta.get("read_options")
    if not text:
        return DEFAULT
    raw = json.loads(text)
    intensity = raw.get("intensity")
    return ReadOptions(
        channel=raw.get("channel"),
        intensity=None if intensity is None else (float(intensity[0]), float(intensity[1])),
        z=raw.get("z"),
    )
