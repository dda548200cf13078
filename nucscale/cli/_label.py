"""``nucscale label suggest|import|simulate``: the active-learning loop around
``nucscale classify`` (nucscale.classify._active, ._suggest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from nucscale.cli._app import app, console, progress_bar
from nucscale.cli._results import _fail
from nucscale.errors import NucscaleError

label_app = typer.Typer(
    help="Active learning: suggest the nuclei worth labelling next, import the answers, and "
    "simulate active against random labelling on a labelled set.",
    no_args_is_help=True,
)
app.add_typer(label_app, name="label")

OutArg = Annotated[Path, typer.Argument(help="Output folder of nucscale run.")]
StrategyOption = Annotated[
    str, typer.Option(help="Uncertainty: entropy, margin or least-confidence.")
]


def _check_strategy(strategy: str) -> None:
    from nucscale.classify._active import STRATEGIES

    if strategy not in STRATEGIES:
        raise typer.BadParameter(f"choose {', '.join(STRATEGIES)}", param_hint="--strategy")


@label_app.command("suggest")
def suggest(
    out: OutArg,
    model: Annotated[Path, typer.Option(help="Classifier file from nucscale classify train.")],
    n: Annotated[int, typer.Option("-n", "--number", help="How many nuclei to suggest.")] = 50,
    labels: Annotated[
        Path | None, typer.Option(help="The labels so far (their nuclei are not suggested).")
    ] = None,
    strategy: StrategyOption = "entropy",
    to: Annotated[
        Path | None,
        typer.Option(help="Folder for this round (default OUT/labeling/round-NNN, the next)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the diversity clustering.")] = 0,
) -> None:
    """Pick the unlabelled nuclei the model is least sure of, one per group of similar ones;
    write a QuPath GeoJSON per slide, a contact sheet and a CSV template to label them."""
    from nucscale.classify._suggest import SHEET, TEMPLATE, next_round
    from nucscale.classify._suggest import suggest as run_suggest

    _check_strategy(strategy)
    if n < 1:
        raise typer.BadParameter("at least 1", param_hint="-n")
    dest = to if to is not None else next_round(out)
    with console.status("scoring every nucleus"):
        try:
            chosen = run_suggest(out, model, n, dest, labels=labels, strategy=strategy, seed=seed)
        except NucscaleError as exc:
            raise _fail(exc) from None
    by_class = chosen["predicted"].value_counts().to_dict()
    console.print(
        f"suggested {len(chosen)} nuclei ({strategy}; predicted now: "
        + ", ".join(f"{escape(str(k))} {v}" for k, v in by_class.items())
        + f") in {escape(str(dest))}:",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"  label them in {TEMPLATE} (the label column) with {SHEET} beside, or classify them "
        "in QuPath from the <slide>.geojson files; then nucscale label import",
        highlight=False,
        soft_wrap=True,
    )


@label_app.command("import")
def import_(
    out: OutArg,
    answers: Annotated[
        Path,
        typer.Argument(help="The filled-in labels-template.csv, or QuPath's GeoJSON of them."),
    ],
    into: Annotated[
        Path, typer.Option(help="The labels file to add them to (CSV or Parquet; created).")
    ],
) -> None:
    """Add a round's answers to the labels (a nucleus answered again takes the new label)."""
    from nucscale.classify._suggest import class_counts, import_answers

    try:
        merged, added = import_answers(out, answers, into)
    except NucscaleError as exc:
        raise _fail(exc) from None
    counts = ", ".join(f"{escape(c)} {k}" for c, k in class_counts(merged))
    console.print(
        f"{added} new label(s); {len(merged)} in {escape(str(into))} ({counts})",
        highlight=False,
        soft_wrap=True,
    )


@label_app.command("simulate")
def simulate(
    out: OutArg,
    labels: Annotated[Path, typer.Option(help="A fully labelled set of OUT's nuclei.")],
    to: Annotated[Path, typer.Option(help="Folder for curves.csv, curves.png, summary.json.")],
    start: Annotated[int, typer.Option(help="Labels before the first round.")] = 20,
    step: Annotated[int, typer.Option(help="Labels added per round.")] = 10,
    rounds: Annotated[int, typer.Option(help="Rounds.")] = 10,
    seeds: Annotated[int, typer.Option(help="Repeats with other splits and seed sets.")] = 5,
    strategy: StrategyOption = "entropy",
    classifier: Annotated[str, typer.Option(help="gbt or rf.")] = "gbt",
    feature_set: Annotated[
        str | None, typer.Option(help="morphology or full (default: as classify train).")
    ] = None,
    test_fraction: Annotated[float, typer.Option(help="Share held out for scoring.")] = 0.3,
    title: Annotated[
        str | None, typer.Option(help="Title of curves.png (default: method and data size).")
    ] = None,
) -> None:
    """Learning curves of active against random labelling on labelled nuclei: accuracy as
    labels are added, over several seeds (the method's own experiment)."""
    from nucscale.classify import CLASSIFIERS, FEATURE_SETS
    from nucscale.classify._simulation import run_simulation

    _check_strategy(strategy)
    if classifier not in CLASSIFIERS:
        raise typer.BadParameter("choose gbt or rf", param_hint="--classifier")
    if feature_set is not None and feature_set not in FEATURE_SETS:
        raise typer.BadParameter("choose morphology or full", param_hint="--feature-set")
    if min(start, step, rounds, seeds) < 1 or not 0 < test_fraction < 1:
        raise typer.BadParameter("start, step, rounds and seeds are at least 1; test share 0-1")
    with progress_bar(
        TextColumn("[bold]fits"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as bar:
        task = bar.add_task("simulate", total=None)
        try:
            summary = run_simulation(
                out, labels, to, start=start, step=step, rounds=rounds, seeds=seeds,
                strategy=strategy, classifier=classifier, feature_set=feature_set,
                test_fraction=test_fraction, title=title,
                progress=lambda d, t: bar.update(task, completed=d, total=t),
            )  # fmt: skip
        except NucscaleError as exc:
            raise _fail(exc) from None
    console.print(json.dumps(summary["final"], indent=1), highlight=False)
    console.print(f"wrote curves.csv, curves.png and summary.json in {escape(str(to))}")
