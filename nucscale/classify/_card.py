"""The model card written beside a classifier: ``<model>.card.json`` and ``<model>.card.md``.

The JSON holds everything a later reader needs to judge or reproduce the model (features,
classes and counts, cross-validated scores, how it was trained, the model file's SHA-256); the
Markdown says the same for people.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nucscale.store import atomic_write


def card_paths(model_path: Path) -> tuple[Path, Path]:
    """``<stem>.card.json`` and ``<stem>.card.md`` beside the model file."""
    stem = model_path.name[: -len(model_path.suffix)] if model_path.suffix else model_path.name
    return (
        model_path.with_name(f"{stem}.card.json"),
        model_path.with_name(f"{stem}.card.md"),
    )


def write_card(model_path: Path, card: dict[str, Any]) -> tuple[Path, Path]:
    """Write the card of ``model_path`` as JSON and Markdown (atomically); returns both paths."""
    json_path, md_path = card_paths(model_path)
    for path, text in (
        (json_path, json.dumps(card, indent=2, ensure_ascii=False) + "\n"),
        (md_path, card_markdown(card)),
    ):

        def write(tmp: Path, text: str = text) -> None:
            tmp.write_text(text, encoding="utf-8")

        atomic_write(path, write)
    return json_path, md_path


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown."""
    cv = card["cross_validation"]
    classes = cv["classes"]
    lines = [
        f"# Cell classifier `{card['model_file']}`",
        "",
        f"- model SHA-256: `{card['model_sha256']}`",
        f"- trained {card['trained']} with nucscale {card['nucscale_version']} "
        f"(scikit-learn {card['sklearn_version']}, skops {card['skops_version']})",
        f"- classifier: {card['estimator']}",
        f"- labels: `{card['labels']['file']}` (SHA-256 `{card['labels']['sha256'][:16]}…`), "
        f"{cv['n']} nuclei of {len(card['labels']['slides'])} slide(s) of `{card['output']}`",
        f"- features ({len(card['features'])}): " + ", ".join(f"`{f}`" for f in card["features"]),
        "",
        f"## Cross-validation ({cv['folds']}-fold stratified, seed {cv['seed']})",
        "",
        f"Accuracy {_pct(cv['accuracy'])}, balanced accuracy {_pct(cv['balanced_accuracy'])} "
        f"(per fold: {', '.join(_pct(v) for v in cv['fold_balanced_accuracy'])}), macro F1 "
        f"{cv['macro_f1']:.3f}, log loss {cv['log_loss']:.3f}.",
        "",
        "| class | examples | precision | recall | F1 |",
        "|---|---|---|---|---|",
    ]
    for c in classes:
        s = cv["per_class"][c]
        lines.append(
            f"| {c} | {cv['counts'][c]} | {s['precision']:.3f} | {s['recall']:.3f} | "
            f"{s['f1']:.3f} |"
        )
    lines += ["", "Confusion matrix (rows: labelled class, columns: predicted):", ""]
    lines.append("| | " + " | ".join(classes) + " |")
    lines.append("|---|" + "---|" * len(classes))
    for c, row in zip(classes, cv["confusion"], strict=True):
        lines.append(f"| **{c}** | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "## Caveats", "", card["caveat"], ""]
    return "\n".join(lines)
