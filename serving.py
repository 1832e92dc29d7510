"""The API's serving machinery: the deployed model and data files kept in memory, and a fast scorer.

app.py owns this module; nothing else imports it. A worker process keeps
    the deployed model (riskmodel.load_deployed), loaded again only when manifest.json or
        trainedmodel.pkl changes; a redeploy half-way (the new model does not verify yet)
        keeps the verified model in service; a failed load is remembered until the files
        change, so a broken deployment is not re-read on every request;
    each data file it read, and its feature matrix, until the file changes;
    a LinearScorer: the deployed Pipeline(SimpleImputer, LogisticRegression) in closed form.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

import riskmodel
from clientdata import feature_frame, read_data_file
from common import FEATURES, MANIFEST, MODEL, DeploymentUnavailable, ModelIntegrityError

log = logging.getLogger("app")


class LinearScorer:
    """A fitted Pipeline(SimpleImputer, LogisticRegression) in closed form.

    The same arithmetic as scikit-learn's predict and predict_proba without their per-call
    input validation, which costs more than the prediction itself on a few rows. Built only
    for that exact pipeline and checked against the model's own answers (compile_scorer).
    Takes a float matrix with the FEATURES columns in order; NaN is a missing value.
    """

    def __init__(self, fill: np.ndarray, coef: np.ndarray, intercept: float, classes: np.ndarray):
        self.fill, self.coef, self.intercept, self.classes = fill, coef, intercept, classes

    def decision_function(self, matrix: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(matrix), self.fill, matrix)
        return filled @ self.coef + self.intercept

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        positive = expit(self.decision_function(matrix))
        return np.column_stack([1 - positive, positive])

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.classes[(self.decision_function(matrix) > 0).astype(int)]


def compile_scorer(model) -> LinearScorer | None:
    """A LinearScorer equal to model on probe rows, or None (then scikit-learn serves)."""
    steps = getattr(model, "steps", None)
    if not (
        isinstance(model, Pipeline)
        and len(steps) == 2
        and type(steps[0][1]) is SimpleImputer
        and type(steps[1][1]) is LogisticRegression
        and not steps[0][1].add_indicator
        and len(steps[1][1].classes_) == 2
        and steps[1][1].coef_.shape == (1, len(FEATURES))
        and list(getattr(model, "feature_names_in_", FEATURES)) == list(FEATURES)
    ):
        return None
    imputer, regression = steps[0][1], steps[1][1]
    scorer = LinearScorer(imputer.statistics_.astype(float), regression.coef_[0].astype(float),
                          float(regression.intercept_[0]), regression.classes_)  # fmt: skip
    rng = np.random.default_rng(0)
    probe = rng.gamma(1.0, 500.0, size=(256, len(FEATURES)))
    probe[rng.random(probe.shape) < 0.1] = np.nan
    frame = pd.DataFrame(probe, columns=list(FEATURES))
    if not (
        np.array_equal(scorer.predict(probe), model.predict(frame))
        and np.allclose(scorer.predict_proba(probe), model.predict_proba(frame), rtol=0, atol=1e-12)
    ):
        return None
    return scorer


@dataclass(frozen=True)
class ServedModel:
    """The deployed model as a worker serves it."""

    deployed: riskmodel.DeployedModel
    stamp: tuple
    scorer: LinearScorer | None

    @property
    def version(self) -> int | None:
        return self.deployed.version

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(0/1 predictions, exit probabilities) for a float matrix with the FEATURES columns."""
        if len(matrix) == 0:
            return np.zeros(0, dtype=int), np.zeros(0)
        if self.scorer is not None:
            decision = self.scorer.decision_function(matrix)  # once for both answers
            return self.scorer.classes[(decision > 0).astype(int)].astype(int), expit(decision)
        frame = pd.DataFrame(matrix, columns=list(FEATURES))
        return self.deployed.predict(frame), self.deployed.exit_probability(frame)


def file_stamp(*paths: Path) -> tuple:
    """What changes when any of the files is replaced or rewritten."""
    stamp = []
    for path in paths:
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            stamp.append(None)
            continue
        stamp.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(stamp)


_lock = threading.Lock()
_models: dict[Path, ServedModel] = {}
_failures: dict[Path, tuple[tuple, DeploymentUnavailable]] = {}
_files: dict[tuple[str, Path], tuple[tuple, object]] = {}


def served_model(prod_folder: Path) -> ServedModel:
    """The deployed model of prod_folder, loaded once per process and again when it changes.

    While a deployment does not verify (a redeploy half-way, or a damaged file), the model
    already loaded and verified stays in service; with none loaded, DeploymentUnavailable.
    """
    stamp = file_stamp(prod_folder / MANIFEST, prod_folder / MODEL)
    with _lock:
        current = _models.get(prod_folder)
        if current is not None and current.stamp == stamp:
            return current
        failed = _failures.get(prod_folder)
        if failed is not None and failed[0] == stamp:
            if current is not None:
                return current
            raise failed[1]
        try:
            deployed = riskmodel.load_deployed(prod_folder)
        except DeploymentUnavailable as error:
            _failures[prod_folder] = (stamp, error)
            if current is not None and isinstance(error, ModelIntegrityError):
                log.warning("%s; still serving version %s", error, current.version)
                return current
            _models.pop(prod_folder, None)
            log.error("%s", error)
            raise
        loaded = ServedModel(deployed, stamp, compile_scorer(deployed.model))
        _models[prod_folder] = loaded
        _failures.pop(prod_folder, None)
        if current is not None and current.version != loaded.version:
            log.info("loaded deployed model version %s (was %s)", loaded.version, current.version)
        return loaded


def _cached(kind: str, path: Path, load):
    """load(path), kept per process and loaded again only when the file changes."""
    stamp = file_stamp(path)
    with _lock:
        cached = _files.get((kind, path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
    value = load(path)
    with _lock:
        _files[(kind, path)] = (stamp, value)
    return value


def read_csv_cached(path: Path) -> pd.DataFrame:
    """clientdata.read_data_file, once per process and again when the file changes. Do not modify it."""
    return _cached("frame", path, read_data_file)


def feature_matrix_cached(path: Path) -> np.ndarray:
    """The FEATURES columns of a data file as a read-only float matrix, cached like read_csv_cached."""

    def load(path: Path) -> np.ndarray:
        matrix = feature_frame(read_csv_cached(path), str(path)).to_numpy()
        matrix.flags.writeable = False
        return matrix

    return _cached("matrix", path, load)


def clear() -> None:
    """Forget every cached model and file (tests)."""
    with _lock:
        _models.clear()
        _failures.clear()
        _files.clear()
