"""Planning a slide: open it, choose the level, find tissue, lay the tile grid, calibrate.

Runs as the first task of a slide, on a worker (workers open slides themselves). The plan is a
small frozen dataclass of plain values: it travels in the graph instead of file handles.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nucscale import __version__
from nucscale.config import Settings
from nucscale.errors import ConfigError, MissingPixelSizeError, SlideNotFoundError
from nucscale.infer import Calibration, Segmenter, get_segmenter
from nucscale.infer._dense import DenseSegmenter
from nucscale.infer._patches import patch_starts
from nucscale.infer._precision import cpu_precision, cpu_runtime
from nucscale.infer._registry import SEGMENTERS, SHIPPED, accepts
from nucscale.io import ReadOptions, Slide, open_slide
from nucscale.io._options import DEFAULT
from nucscale.pipeline._fragments import FORMAT as FRAGMENT_FORMAT
from nucscale.pipeline._inputs import SlideInput
from nucscale.store import add_painted_levels, check_slide_id, create_label_image
from nucscale.store._atomic import atomic_bytes
from nucscale.tiling import (
    MODALITIES,
    LevelChoice,
    TileGrid,
    TissueMap,
    choose_level,
    create_maps_store,
    create_tile_store,
    detect_modality,
    keep_region,
    low_res_image,
    maps_extent,
    tissue_area_mm2,
    tissue_mask_for,
    tissue_tiles,
)

WORK_DIR = ".work"
DEFAULT_MPP = 0.5


def _check_options(settings: Settings) -> None:
    """Refuse model options the segmenter does not take (:class:`Settings` checks the values)."""
    if settings.weights_format is not None and not accepts(settings.segmenter, "weights_format"):
        raise ConfigError(
            f"--weights-format applies to --model bioimageio, not {settings.segmenter!r}"
        )
    for option in ("cpu_precision", "cpu_runtime"):
        if getattr(settings, option) != "auto" and not accepts(settings.segmenter, option):
            takers = " or ".join(name for name in SEGMENTERS if accepts(name, option))
            raise ConfigError(
                f"--{option.replace('_', '-')} applies to --model {takers}, "
                f"not {settings.segmenter!r}"
            )


def segmenter_params(settings: Settings) -> tuple[tuple[str, Any], ...]:
    """Constructor parameters of the segmenter the user asked for (hashable, sorted)."""
    _check_options(settings)
    params: tuple[tuple[str, Any], ...] = ()
    if settings.weights:
        params = (("weights", settings.weights),)
    if settings.weights_format is not None:
        params = (*params, ("weights_format", settings.weights_format))
    if accepts(settings.segmenter, "cpu_precision"):
        # resolved here, in the plan's process: the slide's forward tasks all get this value
        params = (*params, ("cpu_precision", cpu_precision(settings.cpu_precision)))
    if accepts(settings.segmenter, "cpu_runtime"):
        params = (*params, ("cpu_runtime", cpu_runtime(settings.cpu_runtime)))
    return params


def check_segmenter(settings: Settings) -> None:
    """Refuse, in one line and before a cluster starts, a segmenter the settings cannot build:
    options it does not take, weights or a package it cannot load, a ``--halo`` too small for
    it (:func:`check_halo`). Every slide's plan builds it again where it runs.

    The shipped U-Net without ``--weights`` or ``--halo`` is not built here: nothing of it comes
    from the user, and building it imported torch and loaded its weights in the command's own
    process (0.8 CPU-s beside the workers' fork server; without it the 8192² mosaic's first
    plan was submitted ~0.1 s sooner and the command's peak memory fell 0.41 -> 0.22 GiB)."""
    _check_options(settings)
    if settings.segmenter in SHIPPED and not settings.weights and settings.halo is None:
        return
    segmenter, _ = build_segmenter(settings, analysis_mpp(settings))
    if settings.halo is not None:
        check_halo(segmenter, settings.halo, settings.tile or segmenter.default_tile)


def analysis_mpp(settings: Settings) -> float:
    """The pixel size asked for: ``--analysis-mpp``, else the segmenter's native one, else 0.5.

    Without ``--analysis-mpp`` the segmenter is built to ask it; one that cannot know its pixel
    size (a bioimage.io package without a physical scale) refuses there, with the reason."""
    if settings.mpp:
        return settings.mpp
    native = get_segmenter(settings.segmenter, **dict(segmenter_params(settings))).native_mpp
    return native or DEFAULT_MPP


def _takes_mpp(settings: Settings, params: tuple[tuple[str, Any], ...]) -> bool:
    """Whether the segmenter is built for the analysis pixel size: it takes ``mpp`` and either
    adapts to any pixel size (no native one) or the user gave ``--analysis-mpp`` (its working
    pixel size, for a bioimage.io package that declares none)."""
    if not accepts(settings.segmenter, "mpp"):
        return False
    if settings.mpp is not None:
        return True
    return get_segmenter(settings.segmenter, **dict(params)).native_mpp is None


def build_segmenter(
    settings: Settings, mpp: float, modality: str | None = None
) -> tuple[Segmenter, tuple[tuple[str, Any], ...]]:
    """The segmenter for analysis pixel size ``mpp`` (and the slide's modality, for segmenters
    that take it) and the parameters that rebuild it on any worker."""
    params = segmenter_params(settings)
    if modality is not None and accepts(settings.segmenter, "modality"):
        params = (*params, ("modality", modality))
    if _takes_mpp(settings, params):
        params = (*params, ("mpp", round(mpp, 6)))
    return get_segmenter(settings.segmenter, **dict(params)), params


def check_halo(segmenter: Segmenter, halo: int, tile: int) -> None:
    """Refuse a halo too small for tiled output to equal whole-image output, saying why."""
    if halo >= segmenter.min_halo:
        return
    raise ConfigError(
        f"--halo {halo} is too small for segmenter {segmenter.name!r} with --tile {tile}: it "
        f"needs at least {segmenter.min_halo} px ({segmenter.context} px of context + "
        f"{segmenter.max_nucleus_diameter} px largest nucleus), otherwise nuclei at tile "
        "borders would differ from whole-image processing"
    )


@dataclass(frozen=True)
class SlidePlan:
    """Everything the tile tasks of one slide need, as plain values."""

    slide_id: str
    path: str
    out: str
    key: str
    backend: str
    vendor: str | None
    mpp0: float
    choice: LevelChoice
    grid: TileGrid
    tiles: tuple[tuple[int, int], ...]
    tissue_mm2: float
    segmenter: str
    segmenter_params: tuple[tuple[str, Any], ...]
    modality: str
    accelerated: bool
    calibration: Calibration
    provenance: tuple[tuple[str, str], ...]
    plan_s: float
    save_image: bool = False
    features: str = "morphology"  # or "full": CellProfiler-style families in OUT/features
    options: ReadOptions = DEFAULT  # the user's read choices; workers open the slide with them
    #: the tissue rule: a nucleus is kept when its centroid lies in tissue (None: keep all)
    tissue: TissueMap | None = None
    #: a dense network's maps: how many, and its patch (output size, margin, and how far
    #: beyond the tissue region its maps are needed); 0 maps: a one-stage segmenter
    n_maps: int = 0
    patch: tuple[int, int, int] = (0, 0, 0)

    @property
    def work(self) -> Path:
        """Per-slide scratch space under ``OUT/.work``: the tile store and tile fragments."""
        check_slide_id(self.slide_id, self.out)
        return Path(self.out) / WORK_DIR / self.slide_id

    @property
    def tile_store(self) -> Path:
        c = self.choice
        return self.work / f"tiles-L{c.level}-{c.width}x{c.height}-t{self.grid.tile}.zarr"

    @property
    def fragments(self) -> Path:
        return self.work / f"segment-{self.key}"

    @property
    def labels_store(self) -> Path:
        """The label image being assembled (moved to ``OUT/labels/<id>.zarr`` when complete)."""
        return self.fragments / "labels.zarr"

    def segmenter_instance(self) -> Segmenter:
        """The slide's segmenter, built once per worker process (registry cache)."""
        return get_segmenter(self.segmenter, **dict(self.segmenter_params))

    @property
    def scale(self) -> float:
        """Level-0 pixels per analysis pixel."""
        return self.choice.mpp / self.mpp0

    def _reached(self) -> list[tuple[int, int]]:
        """The tissue tiles and every tile their halos reach."""
        cells = {n for t in self.tiles for n in self.grid.neighbours(*t, self.grid.reach)}
        return sorted(cells)

    def paint_tiles(self) -> list[tuple[int, int]]:
        """Output chunks that can receive nuclei: tissue tiles and the tiles their halos reach."""
        return self._reached()

    def ingest_tiles(self) -> list[tuple[int, int]]:
        """Tiles read into the tile store: the tissue tiles and those their halos reach, so
        every segmented window holds the slide's own pixels, never padding where a
        neighbouring tile happens to hold no tissue (which would make the nuclei depend on the
        tile size); for a dense network also what its forward tiles' patches read."""
        cells = set(self._reached())
        reach = self.input_reach
        for t in self.forward_tiles():
            cells.update(self.grid.neighbours(*t, reach))
        return sorted(cells)

    @property
    def dense(self) -> bool:
        """Whether the slide runs the two-stage graph (forward maps, then instances)."""
        return self.n_maps > 0

    @property
    def maps_store(self) -> Path:
        return self.fragments / "maps.zarr"

    @property
    def maps_reach(self) -> int:
        """Tiles around a segmented tile whose forward tasks compute maps its window reads: a
        window starts ``halo`` px before its core, and the patch covering that pixel may start
        up to ``output - 1`` px earlier (more than a tile away when patches outgrow tiles)."""
        if not self.dense:
            return 0
        return max(self.grid.reach, -(-(self.grid.halo + self.patch[0] - 1) // self.grid.tile))

    @property
    def input_reach(self) -> int:
        """Tiles around a forward tile whose pixels its patches read."""
        out, margin, _ = self.patch
        return max(1, -(-(out + margin) // self.grid.tile)) if self.dense else 0

    def forward_patches(self, row: int, col: int) -> list[tuple[int, int]]:
        """Global (y, x) starts of the patches tile (row, col) computes: those starting in its
        core, near tissue (on the fixed tissue grid: tile-independent). Empty for a one-stage
        segmenter."""
        if not self.dense:
            return []
        out, _, grow = self.patch
        starts = patch_starts(self.grid.core(row, col), (self.grid.width, self.grid.height), out)
        if self.tissue is None:
            return starts
        return [(y, x) for y, x in starts if self.tissue.touches(x, y, x + out, y + out, grow)]

    def forward_tiles(self) -> list[tuple[int, int]]:
        """Tiles with patches to compute: every tile within :attr:`maps_reach` of a segmented
        tile that holds a patch near tissue, so each patch a window reads is either computed
        or, far from tissue everywhere, never computed (0 in every window alike)."""
        reach = self.maps_reach
        cells = {n for t in self.tiles for n in self.grid.neighbours(*t, reach)}
        return [t for t in sorted(cells) if self.forward_patches(*t)]


def read_provenance(slide: Slide) -> dict[str, str]:
    """How the slide's samples were read, for the provenance: the user's choices
    (``read_options``) and what the reader decided (``read.channel``, ``read.channel_rule``,
    ``read.intensity_range``, ...), JSON-encoded."""
    out = {"read_options": json.dumps(asdict(slide.options), sort_keys=True)}
    out.update({f"read.{k}": json.dumps(v) for k, v in sorted(slide.read_notes.items())})
    return out


def source_stamp(path: str) -> list[int]:
    """Size and newest modification time of a slide: of the file, or summed and maximised over
    every file inside a folder (a DICOM series or an OME-Zarr store, whose chunk files can be
    rewritten without the folder's own time changing); ``[]`` when it cannot be read."""
    try:
        st = os.stat(path)
        if not os.path.isdir(path):
            return [st.st_size, st.st_mtime_ns]
        size, newest, count = 0, st.st_mtime_ns, 0
        for root, _, files in os.walk(path):
            for name in files:
                fst = os.stat(os.path.join(root, name))
                size, newest, count = size + fst.st_size, max(newest, fst.st_mtime_ns), count + 1
        return [size, newest, count]
    except OSError:
        return []


def settings_key(inp: SlideInput, settings: Settings) -> str:
    """Hash of what determines a slide's results; equal keys mean a finished slide is reusable.

    The tables' columns are part of it, not only the version: a development build keeps its
    version while columns are added, and a slide finished before must not be reused without
    them (the nucleus table's columns always; the features table's with ``--features full``).
    """
    from nucscale.features import NUCLEUS_SCHEMA
    from nucscale.features._cellprofiler import FULL_SCHEMA

    columns = list(NUCLEUS_SCHEMA.names)
    if settings.features == "full":
        columns += FULL_SCHEMA.names
    stamp = source_stamp(inp.path)
    blob = json.dumps(
        [
            str(Path(inp.path).resolve()),
            stamp,
            inp.mpp,
            asdict(inp.options),
            asdict(settings),
            __version__,
            columns,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def open_input(inp: SlideInput) -> Slide:
    """Open the slide of ``inp`` as planning does: :class:`SlideNotFoundError` for a missing
    path, the reader's errors for content nucscale cannot read (:func:`nucscale.io.open_slide`).
    """
    if not os.path.exists(inp.path):
        raise SlideNotFoundError(inp.path, "no such file or directory")
    return open_slide(inp.path, mpp=inp.mpp, options=inp.options)


def level0_mpp(inp: SlideInput, slide: Slide) -> float:
    """The pixel size of level 0: the CSV's, else the file's, else ``--mpp``; else
    :class:`MissingPixelSizeError`."""
    mpp0 = slide.mpp if slide.mpp is not None else inp.default_mpp
    if mpp0 is None:
        raise MissingPixelSizeError(
            inp.path, "no pixel size in metadata; pass --mpp (or an mpp column in the CSV)"
        )
    return mpp0


def make_plan(
    inp: SlideInput,
    settings: Settings,
    out: str,
    key: str,
    run_info: Mapping[str, str] | None = None,
) -> SlidePlan:
    """Open the slide at ``inp.path`` and plan its tiles (see module docstring).

    ``run_info`` (e.g. the command line and start time) is added to the provenance.
    """
    t0 = time.perf_counter()
    with open_input(inp) as slide:
        mpp0 = level0_mpp(inp, slide)
        thumb, thumb_ds = low_res_image(slide, settings.tissue_max_size)
        modality = settings.tissue if settings.tissue in MODALITIES else detect_modality(thumb)
        mask = tissue_mask_for(thumb, "none" if settings.tissue == "none" else modality)
        choice = choose_level(slide, mpp0, analysis_mpp(settings), settings.mpp_tolerance)
        segmenter, params = build_segmenter(settings, choice.mpp, modality)
        tile = settings.tile or segmenter.default_tile
        halo = segmenter.min_halo if settings.halo is None else settings.halo
        check_halo(segmenter, halo, tile)
        grid = TileGrid(choice.width, choice.height, tile, halo)
        mask_scale = thumb_ds * mpp0 / choice.mpp
        # nuclei are kept by where their centroid lies on the thumbnail's fixed grid (tissue
        # grown by a nucleus diameter): the same verdict whatever the tile size; the tiles to
        # segment are those whose core touches that region
        keep = keep_region(mask, thumb_ds * mpp0)
        tiles = tuple(tissue_tiles(grid, keep, mask_scale))
        tissue = None if settings.tissue == "none" else TissueMap(keep, mask_scale)
        maps, patch = 0, (0, 0, 0)
        if isinstance(segmenter, DenseSegmenter):
            from nucscale.infer._engine import n_maps  # torch: plans run in workers

            model = segmenter.model
            grow = model.max_nucleus_diameter + model.postprocess_context
            maps, patch = n_maps(model), (model.spec.output_size, model.spec.margin, grow)
        calibration = segmenter.calibrate(thumb, mask)
        provenance = {
            "modality": modality,
            "vendor": slide.vendor or "",
            "model": segmenter.name,
            "weights_sha256": "",
            **segmenter.describe(),
            **{f"calibration.{k}": repr(v) for k, v in calibration.values.items()},
            **read_provenance(slide),
            **dict(run_info or {}),
        }
        plan = SlidePlan(
            slide_id=inp.slide_id,
            path=str(inp.path),
            out=str(out),
            key=key,
            backend=slide.backend,
            vendor=slide.vendor,
            mpp0=mpp0,
            choice=choice,
            grid=grid,
            tiles=tiles,
            tissue_mm2=tissue_area_mm2(mask, thumb_ds, mpp0),
            segmenter=settings.segmenter,  # registry key: workers rebuild it from this
            segmenter_params=params,
            modality=modality,
            accelerated=segmenter.accelerated,
            calibration=calibration,
            provenance=tuple(sorted(provenance.items())),
            plan_s=0.0,
            save_image=settings.save_image,
            features=settings.features,
            options=inp.options,
            tissue=tissue,
            n_maps=maps,
            patch=patch,
        )
    _prepare_work(plan)
    return _with_time(plan, time.perf_counter() - t0)


def _geometry(plan: SlidePlan) -> str:
    """What a tile's fragment depends on beyond the settings key: the tiling, the segmenter
    as built (its patch sizes and weights) and the fragments' layout, which a development
    build can change without changing its version."""
    described = plan.segmenter_instance().describe()
    return json.dumps({"tile": plan.grid.tile, "halo": plan.grid.halo, "patch": plan.patch,
                       "segmenter": described, "fragments": FRAGMENT_FORMAT},
                      sort_keys=True)  # fmt: skip


def _fresh_fragments(plan: SlidePlan) -> None:
    """Create the fragment folder, or keep it for a resume only when it was made for the same
    geometry (``geometry.json``); fragments, maps and labels of another geometry (or of a
    version that wrote none) are removed, never stitched beside new tiles."""
    marker = plan.fragments / "geometry.json"
    geometry = _geometry(plan)
    if plan.fragments.exists():
        try:
            same = marker.read_text(encoding="utf-8") == geometry
        except OSError:
            same = False
        if not same:
            shutil.rmtree(plan.fragments)
    plan.fragments.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        atomic_bytes(marker, geometry)


def _prepare_work(plan: SlidePlan) -> None:
    """Create the tile store and fragment folder; drop scratch left by other settings."""
    plan.work.mkdir(parents=True, exist_ok=True)
    for old in plan.work.iterdir():
        if (old.name.startswith("segment-") and old != plan.fragments) or (
            old.name.startswith("tiles-") and old != plan.tile_store
        ):
            shutil.rmtree(old, ignore_errors=True)
    c = plan.choice
    tiles_hash = hashlib.sha256(json.dumps(plan.ingest_tiles()).encode()).hexdigest()[:16]
    attrs = {
        "source": plan.path,
        "source_stamp": source_stamp(plan.path),
        "level": c.level,
        "factor": c.factor,
        "mpp": c.mpp,
        "tissue_tiles": tiles_hash,  # a chunk outside today's tissue must read as background
    }
    fill = 0 if plan.modality == "fluorescence" else 255  # the background of the modality
    create_tile_store(plan.tile_store, (c.height, c.width), plan.grid.tile, attrs, fill)
    _fresh_fragments(plan)
    if plan.dense:
        out = plan.patch[0]
        shape = maps_extent(c.width, c.height, out)
        create_maps_store(plan.maps_store, plan.n_maps, shape, out, {"settings_key": plan.key})
    if not (plan.labels_store / "0" / "zarr.json").exists():
        create_label_image(
            plan.labels_store,
            (c.height, c.width),
            plan.grid.tile,
            {
                "slide_id": plan.slide_id,
                "mpp": c.mpp,
                "scale_to_level0": plan.scale,
                "settings_key": plan.key,
            },
        )
    else:  # kept for a resume: painted by a version that may have written level 0 only
        add_painted_levels(plan.labels_store)


def _with_time(plan: SlidePlan, seconds: float) -> SlidePlan:
    from dataclasses import replace

    return replace(plan, plan_s=seconds)
