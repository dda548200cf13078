"""Which channel of a multi-channel fluorescence slide holds the nuclei: one rule for every reader.

Readers describe each channel (:class:`Channel`: its name, and where the file says so its
emission and excitation wavelengths) and call :func:`choose_nuclear`. The rule, in order:

1. ``--channel NAME|INDEX`` (or the manifest's ``channel`` column) wins: an integer is the
   0-based channel index; otherwise the name is matched case-insensitively against each
   channel's name and description (exact match first, then a whole-word match). A choice that
   matches no channel, or several, is an error listing the channels.
2. A single channel is the nuclear one.
3. A channel named as a nuclear stain (:data:`NUCLEAR_NAMES`: DAPI, Hoechst, DNA, DRAQ5, ...
   as a whole word in its name or description) is chosen when exactly one channel is so named.
4. Otherwise a channel with a blue emission (:data:`BLUE_EMISSION_NM`, where DAPI and Hoechst
   emit, about 460 nm), else a UV / violet excitation (:data:`UV_EXCITATION_NM`, how DAPI and
   Hoechst are excited), else named "blue", when exactly one channel qualifies.
5. Otherwise the slide is refused: the error lists the channels and asks for ``--channel``.

Never "the first channel": the first is as often a cytoskeleton or membrane stain, and segmenting
it gives whole cells that look like confident nuclei.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nucscale.errors import SlideFormatError

#: Stain and label names that mean "the nuclei are in this channel" (whole words, any case).
NUCLEAR_NAMES = (
    "dapi",
    "hoechst",
    "h33342",
    "h33258",
    "dna",
    "draq5",
    "draq7",
    "sytox",
    "propidium",
    "nuclei",
    "nucleus",
    "nuclear",
    "histone",
    "h2b",
)
#: Emission band of the blue nuclear dyes (DAPI 461 nm, Hoechst 33342 461 nm), nm.
BLUE_EMISSION_NM = (420.0, 490.0)
#: Excitation band of the UV / violet nuclear dyes (DAPI 358 nm, Hoechst 350 nm, 405 nm laser).
UV_EXCITATION_NM = (330.0, 410.0)


@dataclass(frozen=True)
class Channel:
    """One channel as its file describes it (wavelengths in nm, ``None`` when not recorded)."""

    index: int
    name: str
    description: str = ""
    emission_nm: float | None = None
    excitation_nm: float | None = None

    def label(self) -> str:
        """``0: 'DAPI' (em 461 nm)``: how errors and ``nucscale info`` show the channel."""
        text = f"{self.index}: {self.name!r}"
        if self.description and self.description != self.name:
            text += f" ({self.description})"
        waves = []
        if self.excitation_nm is not None:
            waves.append(f"ex {self.excitation_nm:g} nm")
        if self.emission_nm is not None:
            waves.append(f"em {self.emission_nm:g} nm")
        return text + (f" [{', '.join(waves)}]" if waves else "")


def _words(ch: Channel) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", f"{ch.name} {ch.description}".lower()))


def _in(value: float | None, band: tuple[float, float]) -> bool:
    return value is not None and band[0] <= value <= band[1]


def _listing(channels: Sequence[Channel]) -> str:
    return "; ".join(ch.label() for ch in channels)


def choose_nuclear(
    path: str | Path, channels: Sequence[Channel], choice: str | int | None = None
) -> tuple[Channel, str]:
    """The nuclear channel of ``channels`` and the reason it was chosen (for the provenance).

    Raises
    ------
    SlideFormatError
        ``choice`` matches no channel or several, or no rule decides (the message lists the
        channels and asks for ``--channel NAME|INDEX``).
    """
    if not channels:
        raise SlideFormatError(path, "the image has no channels")
    if choice is not None and str(choice).strip() != "":
        return _chosen(path, channels, choice), "--channel"
    if len(channels) == 1:
        return channels[0], "the only channel"
    rules: list[tuple[str, Callable[[Channel], bool]]] = [
        ("named as a nuclear stain", lambda c: bool(_words(c) & set(NUCLEAR_NAMES))),
        ("blue emission", lambda c: _in(c.emission_nm, BLUE_EMISSION_NM)),
        ("UV/violet excitation", lambda c: _in(c.excitation_nm, UV_EXCITATION_NM)),
        ("named blue", lambda c: "blue" in _words(c)),
    ]
    for reason, rule in rules:
        hits = [c for c in channels if rule(c)]
        if len(hits) == 1:
            return hits[0], reason
        if len(hits) > 1:
            raise SlideFormatError(
                path,
                f"{len(hits)} channels are {reason} ({_listing(hits)}); pass --channel "
                "NAME|INDEX to choose the nuclear one",
            )
    raise SlideFormatError(
        path,
        f"{len(channels)} channels ({_listing(channels)}) and none is named as a nuclear stain "
        "(DAPI, Hoechst, DNA, ...) or has a blue emission; pass --channel NAME|INDEX",
    )


def _chosen(path: str | Path, channels: Sequence[Channel], choice: str | int) -> Channel:
    text = str(choice).strip()
    if re.fullmatch(r"\d+", text):
        i = int(text)
        if i < len(channels):
            return channels[i]
        raise SlideFormatError(
            path, f"--channel {i}: the image has {len(channels)} channels ({_listing(channels)})"
        )
    low = text.lower()
    exact = [c for c in channels if low in (c.name.lower(), c.description.lower())]
    hits = exact or [c for c in channels if set(re.findall(r"[a-z0-9]+", low)) <= _words(c)]
    if len(hits) == 1:
        return hits[0]
    what = "matches no channel" if not hits else f"matches {len(hits)} channels"
    raise SlideFormatError(path, f"--channel {text!r} {what} ({_listing(channels)})")
