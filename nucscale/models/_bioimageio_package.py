"""Reading a bioimage.io model package (folder, its YAML file, or a .zip) into plain values.

The package is read with the ``bioimageio.spec`` library (public API only: ``build_description``,
``ValidationContext``, ``InvalidDescr``, ``utils.read_yaml``, ``model.v0_5``, and the
descriptions' own attributes; pinned ``>=0.5.4,<0.6`` in pyproject.toml). Descriptions
of format 0.4 are converted to 0.5 by the library (``format_version="latest"``), so only the
0.5 structures are interpreted here.

What the library does and does not do offline (bioimageio.spec 0.5.14, measured):

- ``load_description(path)`` with its default I/O checks downloads every file the YAML names
  to hash it, including weights given as a URL (UNet 2D Nuclei Broad's ``pytorch_state_dict``
  is on a host that cannot be reached): it fails offline. With ``perform_io_checks=False`` it
  validates the YAML completely without touching any referenced file, so the absent README,
  covers and sample PNGs do not matter. nucscale validates so.
- Given a path that does not exist (or a folder without a YAML), the library takes it for a
  bioimage.io *id* and asks the web for it; nucscale therefore resolves the path itself first
  and only hands the library local files.
- Given a path, the library leaves the YAML file handle open (and its ``get_reader`` leaves
  any file it opens open); nucscale reads the YAML with ``read_yaml`` and calls
  ``build_description`` with its own ``ValidationContext`` (the zip, when there is one, stays
  open only while nucscale reads from it), and reads the files the description names from the
  paths the library resolved.
- Without I/O checks the library compares no sha256; nucscale hashes the weights bytes it reads
  and compares them with the package's own value (a mismatch is an error).

Nothing here downloads anything: a weights entry or test tensor given as a URL is refused.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nucscale.errors import SegmenterError, first_line
from nucscale.models._bioimageio_axes import (
    Tiling,
    axes_of,
    mpp_of,
    output_geometry,
    tiling_of,
)
from nucscale.models._bioimageio_ops import Op, check_ops

log = logging.getLogger(__name__)

#: Weights formats nucscale runs, in the order tried when none is asked for.
FORMATS = ("torchscript", "onnx")
#: YAML names of a package, as bioimage.io names them.
YAML_NAMES = ("bioimageio.yaml", "rdf.yaml")


@dataclass(frozen=True)
class Package:
    """What nucscale needs from a bioimage.io model description, as plain values.

    Attributes
    ----------
    source:
        The path the user gave (folder, YAML or zip).
    yaml:
        The description file, for messages (``pkg.zip:bioimageio.yaml`` inside a zip).
    name, id:
        The package's name and bioimage.io id ("" when it has none).
    input_axes, output_axes:
        Axis kinds in the tensor's order: ``"b"`` batch, ``"c"`` channel, ``"y"``, ``"x"``.
    axis_ids:
        Kind -> the package's axis id (what processing ops refer to), per tensor.
    channels, out_channels:
        Channel counts of the input and the output (1 where there is no channel axis).
    batch:
        The input's fixed batch size, or ``None`` when any is allowed.
    tiling:
        Valid input sizes along y and x (both must hold).
    halo:
        Output pixels per side that the package says to discard.
    offset:
        Output size minus input size along y and x (0 for a same-size network).
    mpp:
        µm per input pixel when the space axes declare a physical scale, else ``None``.
    preprocessing, postprocessing:
        Processing ops of the input and output tensor.
    weights:
        Format -> (source inside the package, sha256 or ``None``) for the formats nucscale
        runs; ``other_formats`` lists the rest.
    """

    source: str
    yaml: str
    name: str
    id: str
    input_id: str
    input_axes: tuple[str, ...]
    output_axes: tuple[str, ...]
    axis_ids: Mapping[str, Mapping[str, str]]
    channels: int
    out_channels: int
    batch: int | None
    tiling: Tiling
    halo: int
    offset: int
    mpp: float | None
    preprocessing: tuple[Op, ...]
    postprocessing: tuple[Op, ...]
    weights: Mapping[str, tuple[str, str | None]]
    other_formats: tuple[str, ...]
    license: str = ""


def _error(where: str, reason: str) -> SegmenterError:
    return SegmenterError(f"{where}: {reason}")


def resolve(source: str | Path) -> tuple[Path, str]:
    """``(root, yaml name)`` of a package given as a folder, its YAML file or a zip; the root is
    the folder or the zip file. Never asks the library (which would look a missing path up on
    the web as a bioimage.io id)."""
    p = Path(source)
    if not p.exists():
        raise _error(str(p), "no such file or folder; pass a bioimage.io model package")
    if p.is_dir():
        names = [n for n in YAML_NAMES if (p / n).is_file()]
        names += sorted(f.name for f in p.glob("*.bioimageio.yaml"))
        if not names:
            raise _error(str(p), "not a bioimage.io package: no bioimageio.yaml or rdf.yaml in it")
        return p, names[0]
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as zf:
            found = [n for n in zf.namelist() if n in YAML_NAMES or n.endswith(".bioimageio.yaml")]
        if not found:
            raise _error(
                str(p), "not a bioimage.io package: no bioimageio.yaml or rdf.yaml in the zip"
            )
        return p, sorted(found, key=lambda n: (n not in YAML_NAMES, n))[0]
    if p.suffix.lower() in (".yaml", ".yml"):
        return p.parent, p.name
    raise _error(str(p), "not a bioimage.io package (expected a folder, a .yaml file or a .zip)")


def is_package(path: str | Path) -> bool:
    """Whether ``path`` looks like a bioimage.io package (a folder or zip holding a
    bioimage.io YAML, or a YAML file); cheap, reads no description."""
    p = Path(path)
    if p.is_dir():
        return any((p / n).is_file() for n in YAML_NAMES) or any(p.glob("*.bioimageio.yaml"))
    if p.suffix.lower() in (".yaml", ".yml"):
        return True
    if p.suffix.lower() == ".zip" and zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as zf:
            return any(n in YAML_NAMES or n.endswith(".bioimageio.yaml") for n in zf.namelist())
    return False


def summary(pkg: Package) -> list[tuple[str, str]]:
    """What ``nucscale info PACKAGE`` shows, as (field, value) rows."""
    t = pkg.tiling
    sizes = f"{t.min} px" if t.step == 0 else f"{t.min} + n * {t.step} px"
    weights = [f"{f} (sha256 {sha or 'not given'})" for f, (_, sha) in pkg.weights.items()]
    return [
        ("name", pkg.name + (f" ({pkg.id})" if pkg.id else "")),
        ("description", pkg.yaml),
        ("license", pkg.license or "-"),
        ("input", f"{''.join(pkg.input_axes)}, {pkg.channels} channel(s), sizes {sizes}"),
        ("output", f"{''.join(pkg.output_axes)}, {pkg.out_channels} channel(s), halo {pkg.halo}"),
        ("batch", "any" if pkg.batch is None else str(pkg.batch)),
        (
            "pixel size",
            f"{pkg.mpp:.4g} µm/px" if pkg.mpp else "not declared (pass --analysis-mpp)",
        ),
        ("preprocessing", ", ".join(op.id for op in pkg.preprocessing) or "-"),
        ("postprocessing", ", ".join(op.id for op in pkg.postprocessing) or "-"),
        ("weights", "; ".join(weights) or "none nucscale runs"),
        ("other weights", ", ".join(pkg.other_formats) or "-"),
    ]


@contextmanager
def opened(source: str | Path) -> Iterator[tuple[Any, str]]:
    """The validated 0.5 ``ModelDescr`` of a package and its YAML's name for messages; a zip
    stays open for the block, so files inside it can be read."""
    root, name = resolve(source)
    is_zip = root.is_file()
    where = f"{root}:{name}" if is_zip else str(root / name)
    from bioimageio.spec import InvalidDescr, ValidationContext, build_description
    from bioimageio.spec.utils import read_yaml
    from ruyaml.error import YAMLError  # what read_yaml raises (ruyaml: bioimageio.spec's YAML)

    with zipfile.ZipFile(root) if is_zip else _nothing() as zf:
        try:
            text = (
                zf.read(name).decode("utf-8")
                if zf is not None
                else (root / name).read_text("utf-8")
            )
            raw: Any = read_yaml(text)
        except (OSError, KeyError, UnicodeDecodeError, ValueError, YAMLError) as exc:
            raise _error(where, f"not a readable YAML file ({first_line(exc)})") from None
        if not isinstance(raw, dict):
            raise _error(where, "not a bioimage.io description (the YAML is not a mapping)")
        content: dict[str, Any] = {str(k): v for k, v in raw.items()}
        context = ValidationContext(
            root=zf if zf is not None else root,
            file_name=name,
            perform_io_checks=False,  # offline: referenced files are read below, not here
            log_warnings=False,
            disable_cache=True,
        )
        descr = build_description(content, context=context, format_version="latest")
        if isinstance(descr, InvalidDescr):
            raise _error(where, _invalid_reason(descr, content))
        if getattr(descr, "type", None) != "model":
            raise _error(where, f"a bioimage.io {getattr(descr, 'type', '?')}, not a model")
        yield descr, where


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _invalid_reason(descr: Any, content: Mapping[str, Any]) -> str:
    """The first validation error, in words; an unknown processing op is named."""
    errors = list(descr.validation_summary.errors)
    for e in errors:
        loc = tuple(e.loc)
        if (
            len(loc) >= 4
            and loc[0] in ("inputs", "outputs")
            and loc[2] in ("preprocessing", "postprocessing")
        ):
            try:
                op = content[loc[0]][loc[1]][loc[2]][loc[3]].get("id")
            except (KeyError, IndexError, TypeError, AttributeError):
                op = None
            where = f"{loc[0]}[{loc[1]}].{loc[2]}[{loc[3]}]"
            if e.type == "union_tag_invalid" and op is not None:
                return f"{where}: unknown {loc[2]} op {op!r}"
            return f"{where}: {e.msg}"
    if not errors:
        return "not a valid bioimage.io model description"
    first = errors[0]
    path = ".".join(str(p) for p in first.loc) or "description"
    return f"not a valid bioimage.io model description: {path}: {first.msg}"


def load_package(source: str | Path) -> Package:
    """Read and check a package (see :class:`Package`); SegmenterError naming the file and
    the reason for anything nucscale cannot run."""
    with opened(source) as (descr, where):
        return _package(descr, str(source), where)


def _package(descr: Any, source: str, where: str) -> Package:
    from bioimageio.spec.model import v0_5

    if len(descr.inputs) != 1:
        raise _error(where, f"{len(descr.inputs)} input tensors; nucscale runs one-input models")
    inp, out = descr.inputs[0], descr.outputs[0]
    if len(descr.outputs) > 1:
        log.info("%s: %d outputs; nucscale uses the first, %r", where, len(descr.outputs), out.id)
    in_axes, in_ids = axes_of(inp.axes, f"{where}: inputs[0]")
    out_axes, out_ids = axes_of(out.axes, f"{where}: outputs[0]")
    space = {str(ax.id): ax for ax in inp.axes if isinstance(ax, v0_5.SpaceInputAxis)}
    ys, xs = space[in_ids["y"]], space[in_ids["x"]]
    tiling = tiling_of(ys.size, xs.size, where)
    channel = [ax for ax in inp.axes if isinstance(ax, v0_5.ChannelAxis)]
    out_channel = [ax for ax in out.axes if isinstance(ax, v0_5.ChannelAxis)]
    batch = [ax for ax in inp.axes if isinstance(ax, v0_5.BatchAxis)]
    halo, offset = output_geometry(out.axes, out_ids, inp.id, in_ids, where)
    if (in_axes.count("b") and batch[0].size == 1) or "b" not in in_axes:
        fixed_batch: int | None = 1
    else:
        fixed_batch = None
    pre = tuple(Op.from_descr(p) for p in inp.preprocessing)
    post = tuple(Op.from_descr(p) for p in out.postprocessing)
    check_ops(pre, f"{where}: inputs[0].preprocessing", in_ids, own_tensor=str(inp.id))
    check_ops(post, f"{where}: outputs[0].postprocessing", out_ids, output=True)
    weights: dict[str, tuple[str, str | None]] = {}
    other = []
    for fmt, entry in descr.weights:
        if entry is None:
            continue
        if fmt in FORMATS:
            weights[fmt] = (str(entry.source), entry.sha256)
        else:
            other.append(str(fmt))
    return Package(
        source=source,
        yaml=where,
        name=str(descr.name),
        id=str(descr.id or ""),
        input_id=str(inp.id),
        input_axes=in_axes,
        output_axes=out_axes,
        axis_ids={"input": in_ids, "output": out_ids},
        channels=len(channel[0].channel_names) if channel else 1,
        out_channels=len(out_channel[0].channel_names) if out_channel else 1,
        batch=fixed_batch,
        tiling=tiling,
        halo=halo,
        offset=offset,
        mpp=mpp_of(ys, xs, where),
        preprocessing=pre,
        postprocessing=post,
        weights=weights,
        other_formats=tuple(other),
        license=str(descr.license or ""),
    )


def read_weights(source: str | Path, fmt: str) -> tuple[bytes, str]:
    """The weights file of format ``fmt`` as bytes and its sha256; SegmenterError when it is
    missing, a URL, or its sha256 differs from the package's."""
    with opened(source) as (descr, where):
        entry = getattr(descr.weights, fmt, None)
        if entry is None:
            raise _error(where, f"no {fmt} weights in the package")
        data = _read(entry.source, where, f"{fmt} weights")
        sha = hashlib.sha256(data).hexdigest()
        if entry.sha256 is not None and entry.sha256 != sha:
            raise _error(
                where,
                f"{fmt} weights {entry.source}: sha256 {sha} differs from the package's "
                f"{entry.sha256}; the file is not the one it describes",
            )
        return data, sha


def read_test_tensors(source: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The package's own test input and expected output (.npy), as arrays."""
    import io

    with opened(source) as (descr, where):
        arrays = []
        for t in (descr.inputs[0], descr.outputs[0]):
            if t.test_tensor is None:
                raise _error(where, f"tensor {t.id!r} has no test_tensor")
            data = _read(t.test_tensor.source, where, f"test tensor of {t.id!r}")
            arrays.append(np.load(io.BytesIO(data), allow_pickle=False))
        return arrays[0], arrays[1]


def _read(src: Any, where: str, what: str) -> bytes:
    """Bytes of a file the description names, from the folder or the open zip; no download.

    The path is the one the library resolved against the package root (``absolute()``: a
    ``Path``, or a ``zipfile.Path`` inside the zip); it is read here because the library's
    ``get_reader`` leaves the file open."""
    text = str(src)
    if text.startswith(("http://", "https://", "ftp://")):
        raise _error(
            where,
            f"{what} are at a URL ({text}); nucscale downloads nothing: put the file in "
            "the package",
        )
    try:
        return bytes(src.absolute().read_bytes())
    except (OSError, KeyError, ValueError) as exc:
        raise _error(where, f"{what} {text}: cannot be read ({first_line(exc)})") from None
