"""``nucscale classify train|predict``: cell classes from nucleus features (nucscale.classify)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from nucscale.cli._app import app, console
from nucscale.cli._results import _fail
from nucscale.errors import NucscaleError

classify_app = typer.Typer(
    help="Cell classes from nucleus features: train a classifier on labelled nuclei, then "
    "predict a class for every nucleus.",
    no_args_is_help=True,
)
app.add_typer(classify_app, name="classify")


@classify_app.command("train")
def train(
    out: Annotated[Path, typer.Argument(help="Output folder of nucscale run.")],
    labels: Annotated[
        Path,
        typer.Option(
            help="Labels: CSV or Parquet (slide_id, nucleus_id, label), or the GeoJSON QuPath "
            "exports after you classify the objects of nucscale export's GeoJSON."
        ),
    ],
    model: Annotated[Path, typer.Option(help="Classifier file to write (skops, e.g. CLF.skops).")],
    features: Annotated[
        str | None,
        typer.Option(help="Feature columns, comma-separated (default: see --feature-set)."),
    ] = None,
    feature_set: Annotated[
        str | None,
        typer.Option(
            help="morphology (the nucleus table's measurements) or full (also the features "
            "table of --features full). Default: full where every labelled slide has it."
        ),
    ] = None,
    classifier: Annotated[
        str, typer.Option(help="gbt (gradient-boosted trees) or rf (random forest).")
    ] = "gbt",
    folds: Annotated[int, typer.Option(help="Cross-validation folds (stratified).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the folds and the classifier.")] = 0,
    keep_unchanged: Annotated[
        bool,
        typer.Option(
            "--keep-unchanged",
            help="GeoJSON labels: also count objects still of the class nucscale exported.",
        ),
    ] = False,
) -> None:
    """Train a cell classifier on labelled nuclei of OUT.

    Writes the model (calibrated probabilities, a skops file that cannot run code when
    loaded) and its card (CLF.card.json, CLF.card.md) with cross-validated scores."""
    from nucscale.classify import CLASSIFIERS, FEATURE_SETS, train_classifier

    if classifier not in CLASSIFIERS:
        raise typer.BadParameter("choose gbt or rf", param_hint="--classifier")
    if feature_set is not None and feature_set not in FEATURE_SETS:
        raise typer.BadParameter("choose morphology or full", param_hint="--feature-set")
    if features is not None and feature_set is not None:
        raise typer.BadParameter("give --features or --feature-set, not both")
    columns = features.split(",") if features is not None else None
    with console.status("cross-validating and training"):
        try:
            card = train_classifier(
                out, labels, model, columns=columns, feature_set=feature_set,
                classifier=classifier, folds=folds, seed=seed, keep_unchanged=keep_unchanged,
            )  # fmt: skip
        except NucscaleError as exc:
            raise _fail(exc) from None
    cv = card["cross_validation"]
    table = Table("class", "labelled", "precision", "recall", "F1")
    for c in cv["classes"]:
        s = cv["per_class"][c]
        table.add_row(
            escape(c), str(cv["counts"][c]), f"{s['precision']:.3f}", f"{s['recall']:.3f}",
            f"{s['f1']:.3f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"{cv['folds']}-fold cross-validation of {cv['n']} labelled nuclei, "
        f"{len(card['features'])} features: accuracy {cv['accuracy']:.3f}, balanced accuracy "
        f"{cv['balanced_accuracy']:.3f}, macro F1 {cv['macro_f1']:.3f}",
        highlight=False,
    )
    console.print(
        f"wrote {escape(str(model))} (sha256 {card['model_sha256'][:12]}) and its card",
        highlight=False,
        soft_wrap=True,
    )


@classify_app.command("predict")
def predict(
    out: Annotated[Path, typer.Argument(help="Output folder of nucscale run.")],
    model: Annotated[Path, typer.Option(help="Classifier file from nucscale classify train.")],
) -> None:
    """Predict a class for every nucleus of OUT.

    Writes OUT/classes/slide_id=<id>/part-0.parquet for every finished slide (the query view
    classes, shown by nucscale report and nucscale export's QuPath GeoJSON)."""
    from nucscale.classify import predict_output

    with console.status("predicting"):
        try:
            counts = predict_output(out, model)
        except NucscaleError as exc:
            raise _fail(exc) from None
    classes = list(next(iter(counts.values())))
    table = Table("slide", *(escape(c) for c in classes))
    for sid, per in counts.items():
        table.add_row(escape(sid), *(f"{per[c]:,}" for c in classes))
    console.print(table)
    console.print(f"wrote {len(counts)} class table(s) under {escape(str(out / 'classes'))}")
