"""Run every benchmark, collect their JSON lines, and refresh the README's results table.

    python benchmarks/run_all.py                  # the full set (hours on 2 CPU cores)
    python benchmarks/run_all.py --quick          # minutes: 8000 px mosaic only, fewer runs
    python benchmarks/run_all.py --table-only     # re-render the README table from the file
    python benchmarks/run_all.py --only 'cohort.py --slides 1000'   # one benchmark, recorded

Each benchmark is a script in this folder printing one JSON line per measurement; the lines
are appended to ``benchmarks/results.jsonl`` (one record per line, with the machine) and the
README section between ``<!-- bench:start -->`` and ``<!-- bench:end -->`` is rewritten from
the newest record of each kind.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peer_tiatoolbox import TIA_PYTHON  # noqa: E402  (its own venv, beside the repository)
from pipeline import STAGES  # noqa: E402  (the stage columns pipeline.py reports)

README = HERE.parent / "README.md"
RESULTS = HERE / "results.jsonl"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def plan(quick: bool, sizes: str) -> list[list[str]]:
    """The benchmark command lines, cheapest first."""
    small = sizes.split(",")[0]
    runs = [
        ["features.py"],
        ["reader.py"],
        # the U-Net's CPU forward per patch in each precision and runtime (--cpu-runtime)
        [
            "models.py",
            "--models",
            "unet",
            "--threads",
            "1",
            "--precision",
            "float32,bfloat16",
            "--cpu-runtime",
            "torch,openvino",
            "--repeats",
            "3" if quick else "5",
        ],
        # HoVer-Net fast's CPU forward per patch, torch against OpenVINO (float32; ~2 min)
        [
            "models.py",
            "--models",
            "hovernet-fast",
            "--threads",
            "1",
            "--cpu-runtime",
            "torch,openvino",
            "--repeats",
            "1",
        ],
        ["outputs.py", "--copies", "40" if quick else "420"],
        ["pipeline.py", "--sizes", small, "--workers", "1,2", "--models", "baseline,unet"],
        ["cohort.py", "--slides", "100" if quick else "1000"],
        ["cohort.py", "--manifest-only", "--slides", "200" if quick else "2000"],
        ["archive.py", "--steps", "200" if quick else "600"],
        ["worker_malloc.py"],
    ]
    if not quick:
        runs += [
            ["pipeline.py", "--sizes", sizes, "--workers", "2", "--models", "baseline"],
            [
                "pipeline.py",
                "--sizes",
                sizes.split(",")[1] if "," in sizes else small,
                "--workers",
                "2",
                "--models",
                "unet",
            ],
            ["exactness.py", "--mosaic", "2x2", "--segmenters", "baseline,unet"],
        ]
        if TIA_PYTHON.exists():
            runs.append(["peer_tiatoolbox.py", "--size", "512"])
        else:
            print(f"peer_tiatoolbox: skipped, no TIAToolbox venv at {TIA_PYTHON}", file=sys.stderr)
    return runs


def run(args: list[str]) -> list[dict[str, Any]]:
    cmd = [sys.executable, str(HERE / args[0]), *args[1:]]
    print("$", " ".join(cmd[1:]), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    records = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(records: list[dict[str, Any]]) -> str:
    """Markdown tables of the newest record per (name, parameters)."""
    newest: dict[str, dict[str, Any]] = {}
    for r in records:
        name = r.get("name") or r.get("benchmark", "?")
        key = json.dumps(
            [
                name,
                *(r.get(k) for k in ("size", "model", "workers", "slide")),
                _tile(r) if name == "pipeline" else r.get("tile"),
                *(r.get(k) for k in ("input", "segmenter", "precision", "cpu_runtime")),
            ],
            default=str,
        )
        newest[key] = r
    for r in newest.values():
        r.setdefault("commit", "")
    rows = list(newest.values())
    out: list[str] = []
    machine = next(
        (r["machine"] for r in reversed(records) if "memory_gib" in r.get("machine", {})), None
    )
    if machine:
        out.append(
            f"Machine: {machine.get('cpus')} CPU cores"
            f"{' (' + machine['cpu_model'] + ')' if machine.get('cpu_model') else ''}, "
            f"{machine.get('memory_gib')} GiB, "
            f"torch {machine.get('torch')}, GPU: {machine.get('gpu') or 'none'}.\n"
        )
    pipe = [r for r in rows if r.get("name") == "pipeline"]
    if pipe:
        out.append(
            "| mosaic px | model | tile | workers | tissue mm² | nuclei | wall s | s/mm² "
            "| slide mm²/s (≥ 0.3) | nuclei/s | tiles/s | model share | overhead (target ≤ 25 %) "
            "| 2-worker efficiency (≥ 85 %) | machine's ceiling | peak RSS per worker GiB (≤ 2) "
            "| client GiB | commit |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in sorted(pipe, key=_pipeline_order):
            out.append(
                "| "
                + " | ".join(
                    _fmt(v)
                    for v in (
                        r["size"],
                        r["model"],
                        _tile(r),
                        r["workers"],
                        r["tissue_mm2"],
                        r["nuclei"],
                        r["wall_s"],
                        r["s_per_mm2"],
                        r.get("slide_mm2_per_s"),
                        r["nuclei_per_s"],
                        r["tiles_per_s"],
                        r.get("model_share_of_worker_time"),
                        r.get("overhead_share"),
                        r.get("efficiency_2_workers"),
                        r.get("machine_efficiency_ceiling"),
                        r["worker_peak_gib"],
                        r["client_peak_gib"],
                        r.get("commit"),
                    )
                )
                + " |"
            )
        out.append("")
        out.append("Stage split (CPU-seconds summed over tasks):\n")
        out.append(
            "| mosaic px | model | tile | workers | "
            + " | ".join(s.removesuffix("_s") for s in STAGES)
            + " |"
        )
        out.append("|---|---|---|---|" + "---|" * len(STAGES))
        for r in sorted(pipe, key=_pipeline_order):
            st = r.get("stages_cpu_s", {})
            out.append(
                f"| {r['size']} | {r['model']} | {_tile(r)} | {r['workers']} | "
                + " | ".join(_fmt(st.get(s)) for s in STAGES)
                + " |"
            )
        out.append("")
    out += _stitching(rows)
    out += _cpu_forward(rows)
    other = [
        r
        for r in rows
        if r.get("name")
        in ("features", "reader", "peer_tiatoolbox", "cohort", "manifest", "worker_malloc")
        or str(r.get("name", "")).startswith("outputs")
    ]
    if other:
        out.append("| benchmark | figures |")
        out.append("|---|---|")
        for r in other:
            figures = {
                k: v
                for k, v in r.items()
                if k not in ("name", "machine", "nucscale", "tiatoolbox", "region")
            }
            out.append(
                f"| {r['name']} | "
                + ", ".join(f"{k}: {_fmt(v)}" for k, v in figures.items())
                + " |"
            )
    return "\n".join(out) + "\n"


def _cpu_forward(rows: list[dict[str, Any]]) -> list[str]:
    """The networks' CPU forward per patch by precision and runtime (``models.py``)."""
    runs = [r for r in rows if r.get("benchmark") == "models" and r.get("cpu_runtime")]
    if not runs:
        return []
    out = [
        "The networks' forward on the CPU (`models.py --cpu-runtime torch,openvino`, one\n"
        "thread, per output patch: the shipped U-Net's 512 px from a 2048² CMU-1 region, batch 1;\n"
        "HoVer-Net fast's 164 px from a 512² region, batch 8, seeded weights):\n",
        "| model | precision | runtime | ms per patch | network MP/s | nuclei | commit |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["model"], r["precision"], r["cpu_runtime"])):
        out.append(
            f"| {r['model']} | {r['precision']} | {r['cpu_runtime']} | "
            f"{_fmt(r['network_ms_per_patch'])} | {_fmt(r['network_megapixels_per_s'])} | "
            f"{_fmt(r['nuclei'])} | {r.get('commit', '')} |"
        )
    out.append("")
    return out


def _tile(r: dict[str, Any]) -> int:
    """The tile size of a pipeline record (records before the per-segmenter default said
    "default", which was 1024 for every segmenter)."""
    return 1024 if r.get("tile") in (None, "default") else int(r["tile"])


def _pipeline_order(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["size"], r["model"], _tile(r), r["workers"])


def _stitching(rows: list[dict[str, Any]]) -> list[str]:
    """The stitching-cost table (``exactness.py``): tiled vs whole-image, per tile size."""
    recs = [r for r in rows if r.get("benchmark") == "exactness"]
    if not recs:
        return []
    out = [
        "Stitching (tiled vs one whole-image tile, same code, tissue detection off):\n",
        "| input | segmenter | tile | identical nuclei and features | PQ vs whole | tiled s "
        "| whole s | tiled / whole | halo share of computed px |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(recs, key=lambda r: (r["input"], r["segmenter"], r["tile"])):
        same = bool(r.get("same_partition") and r.get("same_features"))
        cells = (
            r["input"],
            r["segmenter"],
            r["tile"],
            same,
            r.get("pq"),
            r.get("seconds"),
            r.get("whole_seconds"),
            r.get("tiled_over_whole"),
            r.get("halo_share"),
        )
        out.append("| " + " | ".join(_fmt(v) for v in cells) + " |")
    out.append("")
    return out


def update_readme(text: str) -> None:
    readme = README.read_text(encoding="utf-8")
    if START not in readme:
        raise SystemExit(f"{README}: no {START} marker")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{text}{END}{tail}", encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sizes", default="8000,20000,40000")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument(
        "--only",
        nargs="+",
        type=str.split,
        metavar="'SCRIPT ARGS'",
        help="run just these benchmark command lines, e.g. 'cohort.py --slides 1000'",
    )
    args = ap.parse_args()
    if not args.table_only:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
        for cmd in args.only or plan(args.quick, args.sizes):
            with RESULTS.open("a", encoding="utf-8") as fh:
                for rec in run(cmd):
                    rec.setdefault("commit", commit or None)
                    print(json.dumps(rec), flush=True)
                    fh.write(json.dumps(rec) + "\n")
    records = [json.loads(x) for x in RESULTS.read_text().splitlines() if x.strip()]
    update_readme(table(records))


if __name__ == "__main__":
    main()
