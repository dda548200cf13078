"""Active learning: which unlabelled nuclei a person should label next, and the experiment that
compares that choice with random labelling.

Uncertainty of a calibrated prediction ``p`` (one row of class probabilities):

- ``least-confidence``: ``1 - max(p)``;
- ``margin``: ``1 - (p1 - p2)``, the two largest probabilities;
- ``entropy``: ``-sum(p log p)`` (the default).

Diversity: the ``n`` most uncertain nuclei are often near-copies (one ambiguous stretch of a
slide). :func:`select_batch` takes the ``pool_factor * n`` most uncertain, clusters them into
``n`` groups by k-means on their standardised features, and picks the most uncertain nucleus
of each group: one per region of feature space (Zhdanov 2019, "Diverse mini-batch active
learning"). Ties are broken by position, so a selection is reproducible for a seed.

:func:`simulate` is the method's own experiment on a fully labelled set: a held-out test part
(stratified), a seed set of labels with every class, then rounds that add ``step`` labels
chosen actively or at random, refitting and scoring on the test part after each round, for
several seeds.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from nucscale.classify._model import fit_model, one_thread

STRATEGIES = ("entropy", "margin", "least-confidence")


def uncertainty(proba: np.ndarray, strategy: str = "entropy") -> np.ndarray:
    """Uncertainty of each row of class probabilities (higher: less sure)."""
    p = np.asarray(proba, dtype=np.float64)
    if strategy == "least-confidence":
        return np.asarray(1.0 - p.max(axis=1))
    if strategy == "margin":
        top = np.sort(p, axis=1)[:, ::-1]
        second = top[:, 1] if p.shape[1] > 1 else 0.0
        return np.asarray(1.0 - (top[:, 0] - second))
    if strategy == "entropy":
        safe = np.clip(p, 1e-12, 1.0)
        return np.asarray(-(p * np.log(safe)).sum(axis=1))
    raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def _standardised(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled; missing values at the column's median (k-means takes no
    NaN); constant columns become zeros."""
    x = np.array(x, dtype=np.float64, copy=True)
    med = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    bad = ~np.isfinite(x)
    x[bad] = np.take(med, np.nonzero(bad)[1])
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def select_batch(
    proba: np.ndarray,
    x: np.ndarray,
    n: int,
    *,
    strategy: str = "entropy",
    seed: int = 0,
    pool_factor: int = 10,
) -> np.ndarray:
    """Indices (into the rows of ``proba``/``x``) of ``n`` nuclei to label: the most
    uncertain of each of ``n`` k-means groups among the ``pool_factor * n`` most uncertain
    (module docstring), most uncertain first."""
    from sklearn.cluster import KMeans

    score = uncertainty(proba, strategy)
    m = len(score)
    if n <= 0 or m == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(m), -score))  # most uncertain first, ties by position
    if m <= n:
        return order
    pool = order[: min(m, pool_factor * n)]
    if len(pool) <= n:
        return pool
    with one_thread():
        groups = KMeans(n_clusters=n, n_init=3, random_state=seed).fit_predict(
            _standardised(x[pool])
        )
    picked = []
    for g in range(n):
        members = pool[groups == g]  # pool is in uncertainty order: the first is the pick
        if members.size:
            picked.append(int(members[0]))
    chosen = np.asarray(picked, dtype=np.int64)
    if chosen.size < n:  # an empty group (identical rows): fill in uncertainty order
        rest = pool[~np.isin(pool, chosen)]
        chosen = np.concatenate([chosen, rest[: n - chosen.size]])
    return chosen[np.lexsort((chosen, -score[chosen]))]


def _seed_set(y: np.ndarray, size: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` random indices with at least ``per_class`` of every class (the first labels a
    person gives cover every class, or no calibrated classifier can be fitted)."""
    chosen: list[int] = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        chosen.extend(rng.choice(members, size=min(per_class, members.size), replace=False))
    rest = np.setdiff1d(np.arange(len(y)), chosen)
    extra = max(0, size - len(chosen))
    chosen.extend(rng.choice(rest, size=min(extra, rest.size), replace=False))
    return np.asarray(sorted(chosen), dtype=np.int64)


def simulate(
    x: np.ndarray,
    y: Sequence[str],
    *,
    start: int = 20,
    step: int = 10,
    rounds: int = 10,
    seeds: int = 5,
    strategy: str = "entropy",
    classifier: str = "gbt",
    test_fraction: float = 0.3,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Learning curves of active and random selection (module docstring): one row per seed,
    method and round with ``labels`` (how many), ``accuracy`` and ``balanced_accuracy`` on
    that seed's held-out test part."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score
    from sklearn.model_selection import train_test_split

    labels = np.asarray(y, dtype=str)
    rows = []
    total, done = seeds * 2 * (rounds + 1), 0
    for seed in range(seeds):
        idx = np.arange(len(labels))
        pool_idx, test_idx = train_test_split(
            idx, test_size=test_fraction, stratify=labels, random_state=seed
        )
        rng = np.random.default_rng(seed)
        first = pool_idx[_seed_set(labels[pool_idx], start, 3, rng)]
        for method in ("active", "random"):
            chosen = first.copy()
            pick_rng = np.random.default_rng(10_000 + seed)
            for r in range(rounds + 1):
                model = fit_model(x[chosen], labels[chosen], [], classifier=classifier, seed=seed)
                pred = np.asarray(model.classes)[np.argmax(_proba(model, x[test_idx]), axis=1)]
                rows.append({
                    "seed": seed, "method": method, "round": r, "labels": len(chosen),
                    "accuracy": accuracy_score(labels[test_idx], pred),
                    "balanced_accuracy": balanced_accuracy_score(labels[test_idx], pred),
                })  # fmt: skip
                done += 1
                if progress is not None:
                    progress(done, total)
                if r == rounds:
                    break
                left = np.setdiff1d(pool_idx, chosen)
                if left.size == 0:
                    break
                if method == "active":
                    proba = _proba(model, x[left])
                    new = left[select_batch(proba, x[left], step, strategy=strategy, seed=seed)]
                else:
                    new = pick_rng.choice(left, size=min(step, left.size), replace=False)
                chosen = np.concatenate([chosen, new])
    return pd.DataFrame(rows)


def _proba(model: object, x: np.ndarray) -> np.ndarray:
    """The fitted estimator's probabilities (the model was fitted without feature names)."""
    with one_thread():
        return np.asarray(model.estimator.predict_proba(x))  # type: ignore[attr-defined]


def curve_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds, per method and round."""
    g = curves.groupby(["method", "round"])
    out = g.agg(
        labels=("labels", "mean"),
        accuracy=("accuracy", "mean"),
        accuracy_sd=("accuracy", "std"),
        balanced_accuracy=("balanced_accuracy", "mean"),
        balanced_accuracy_sd=("balanced_accuracy", "std"),
        seeds=("seed", "nunique"),
    )
    return out.reset_index()


def plot_curves(curves: pd.DataFrame, title: str) -> bytes:
    """A PNG of balanced accuracy against labels, mean over seeds with one standard deviation,
    active and random."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = curve_summary(curves)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method, colour in (("active", "tab:red"), ("random", "tab:blue")):
        s = summary[summary["method"] == method]
        ax.plot(s["labels"], s["balanced_accuracy"], marker="o", ms=3, color=colour, label=method)
        sd = s["balanced_accuracy_sd"].fillna(0.0)
        ax.fill_between(
            s["labels"], s["balanced_accuracy"] - sd, s["balanced_accuracy"] + sd,
            color=colour, alpha=0.15, linewidth=0,
        )  # fmt: skip
    seeds = int(summary["seeds"].max()) if len(summary) else 0
    ax.set_xlabel("labelled nuclei")
    ax.set_ylabel("balanced accuracy, held-out nuclei")
    ax.set_title(f"{title}\n(mean ± sd over {seeds} seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
