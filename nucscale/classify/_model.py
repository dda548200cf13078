"""The cell classifier: a scikit-learn model with calibrated probabilities, saved without pickle.

:func:`make_estimator` is a gradient-boosted tree ensemble (``gbt``,
``HistGradientBoostingClassifier``) or a random forest (``rf``) inside
``CalibratedClassifierCV`` (sigmoid calibration on 3 stratified folds, in the order of the
rows), both weighting classes by their inverse frequency, both taking NaN as missing. It is
fitted on class indices ``0..k-1``; :class:`ClassModel` keeps the class names and the feature
columns beside it. Fitting runs on one thread (:func:`one_thread`): label sets are hundreds to
thousands of nuclei, where OpenMP's threads cost more than they give (a
HistGradientBoosting fit of 320 nuclei took 26 s on 2 busy cores with two threads, 1.7 s with
one).

Model files are skops files (``skops.io``): a zip of JSON and numpy arrays from which only the
types in :data:`TRUSTED_TYPES` (beyond skops's defaults: builtins, numpy, scikit-learn's public
estimators) may be built. :func:`load_model` lists the file's types first and refuses any other,
and never unpickles: a pickle, a tampered or foreign file is an :class:`InputError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nucscale import __version__
from nucscale.errors import InputError
from nucscale.store import atomic_write

CLASSIFIERS = ("gbt", "rf")
CALIBRATION_FOLDS = 3
FORMAT = "nucscale-cell-classifier"
FORMAT_VERSION = 1
#: Types a model file may hold beyond those skops trusts by default (what the two
#: calibrated estimators consist of); anything else refuses the file.
TRUSTED_TYPES: tuple[str, ...] = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.tree._tree.Tree",
)


@dataclass
class ClassModel:
    """A fitted classifier, its feature columns and its class names (the probability columns
    of :meth:`predict_proba`, in this order)."""

    estimator: Any
    features: list[str]
    classes: list[str]
    classifier: str

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, shape (n, len(classes)); each row sums to 1."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"expected (n, {len(self.features)}) features, got {x.shape}")
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float64)
        return np.asarray(self.estimator.predict_proba(x), dtype=np.float64)

    def predict(self, x: np.ndarray) -> list[str]:
        """The most probable class of each row."""
        return [self.classes[i] for i in np.argmax(self.predict_proba(x), axis=1)]


def min_leaf(n: int | None) -> int:
    """Smallest leaf of the gradient-boosted trees for ``n`` training nuclei: scikit-learn's 20,
    or a tenth of ``n`` when that is less (at least 2). With 20, an early round of labelling
    (tens of nuclei, two thirds of them in each calibration fold) grows no split at all and
    every prediction is the class prior."""
    return 20 if n is None else max(2, min(20, n // 10))


def make_estimator(classifier: str = "gbt", seed: int = 0, n: int | None = None) -> Any:
    """An unfitted calibrated classifier (module docstring) for ``n`` training nuclei."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    base: Any
    if classifier == "gbt":
        base = HistGradientBoostingClassifier(
            class_weight="balanced", random_state=seed, min_samples_leaf=min_leaf(n)
        )
    elif classifier == "rf":
        base = RandomForestClassifier(
            n_estimators=200, min_samples_leaf=2, class_weight="balanced", random_state=seed
        )
    else:
        raise ValueError(f"unknown classifier {classifier!r}; choose gbt or rf")
    # an int, not a seeded splitter: the model file then holds no splitter object
    return CalibratedClassifierCV(base, method="sigmoid", cv=CALIBRATION_FOLDS)


@contextmanager
def one_thread() -> Iterator[None]:
    """OpenMP and BLAS limited to one thread inside (module docstring)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


def fit_model(
    x: np.ndarray,
    y: Sequence[str],
    features: Sequence[str],
    *,
    classifier: str = "gbt",
    seed: int = 0,
) -> ClassModel:
    """Fit :func:`make_estimator` on features ``x`` (n, len(features)) and labels ``y``; the
    classes are the sorted distinct labels. No checks of class sizes here
    (:func:`nucscale.classify.check_class_counts`)."""
    classes, index = np.unique(np.asarray(y, dtype=str), return_inverse=True)
    estimator = make_estimator(classifier, seed, len(index))
    with one_thread():
        estimator.fit(np.asarray(x, dtype=np.float64), index)
    return ClassModel(estimator, list(features), [str(c) for c in classes], classifier)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(model: ClassModel, path: Path) -> str:
    """Write ``model`` as a skops file at ``path`` (atomically); returns its SHA-256."""
    import skops.io as sio

    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "estimator": model.estimator,
        "features": list(model.features),
        "classes": list(model.classes),
        "classifier": model.classifier,
        "nucscale_version": __version__,
    }

    def write(tmp: Path) -> None:
        sio.dump(doc, tmp)

    atomic_write(path, write)
    return file_sha256(path)


def load_model(path: str | Path) -> tuple[ClassModel, str]:
    """The model in the skops file ``path`` and the file's SHA-256.

    Raises
    ------
    InputError
        Missing file; not a skops file (a pickle, say: never loaded); a type outside
        :data:`TRUSTED_TYPES` and skops's defaults (a tampered file); not a nucscale classifier.
    """
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "model file not found")
    sha = file_sha256(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # zipfile, JSON and skops's own errors: the file is not a model
        raise InputError(
            path,
            f"not a nucscale classifier (skops) file ({type(exc).__name__}); nucscale never "
            "loads pickles: train one with nucscale classify train",
        ) from None
    foreign = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if foreign:
        raise InputError(
            path,
            f"refused: holds type(s) a nucscale classifier never has ({', '.join(foreign[:3])}); "
            "the file was altered or is not from nucscale classify train",
        )
    try:
        doc = sio.load(path, trusted=[t for t in untrusted if t in TRUSTED_TYPES])
    except Exception as exc:  # a malformed archive fails inside skops in many ways
        raise InputError(path, f"unreadable model file ({type(exc).__name__}: {exc})") from None
    return _check(doc, path), sha


def _check(doc: Any, path: Path) -> ClassModel:
    """The :class:`ClassModel` of a loaded document, or :class:`InputError`."""
    from sklearn.calibration import CalibratedClassifierCV

    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise InputError(path, "not a nucscale cell classifier")
    if doc.get("format_version") != FORMAT_VERSION:
        raise InputError(
            path,
            f"classifier format version {doc.get('format_version')!r}; this nucscale reads "
            f"{FORMAT_VERSION} (train the model again)",
        )
    features, classes, est = doc.get("features"), doc.get("classes"), doc.get("estimator")
    ok = (
        isinstance(features, list)
        and all(isinstance(f, str) for f in features)
        and isinstance(classes, list)
        and len(classes) >= 2
        and all(isinstance(c, str) for c in classes)
        and isinstance(est, CalibratedClassifierCV)
        and getattr(est, "n_features_in_", None) == len(features)
        and np.array_equal(getattr(est, "classes_", []), np.arange(len(classes)))
    )
    if not ok:
        raise InputError(path, "inconsistent classifier file (features, classes or estimator)")
    return ClassModel(
        est, list(features or []), list(classes or []), str(doc.get("classifier", ""))
    )
