"""The attrition-risk model: how it is built, loaded, checked and measured.

One home for the model; not a script.
    build_model()           the course's logistic regression (training.py fits it)
    load_model(path)        a trained candidate's pickle (scoring.py)
    load_deployed(prod)     the live model for scoring.py --deployed: its bytes checked against
                            manifest.json, then unpickled and tried on one row. Every failure
                            is a DeploymentUnavailable (exit 69 in a script, 503 in the API).
    linear_parameters(model)  the fitted model as plain numbers (training.py writes them into
                            trainedmodel.json), checked to give the model's own answers
    load_linear(prod)       the live model for everything else (the API, diagnostics, reports):
                            those numbers, checked against manifest.json, as a LinearScorer.
                            Nothing is unpickled.
    evaluate(model, frame)  F1 and the other metrics on labelled data
    classification_metrics(truth, predicted, probability)  the same, from predictions (NumPy)
    roc_points(truth, probability)  the ROC curve the report draws

scikit-learn is imported by the functions that build or check a model, not by the module: the API,
diagnostics and the reports score with the closed form and measure with NumPy, and never load it
(it costs 1.3-2.5 s of start-up and tens of MB per API worker); the tests hold both to it.

Trust: the manifest's sha256 catches a torn or half-copied file, not tampering (whoever can
write the production folder can write both), and unpickling runs code. The course's scripts
unpickle models only from folders that only the pipeline writes; the API reads numbers only,
so a hostile file in production can change its answers but cannot run code in it.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit

from attrition.core.errors import DeploymentUnavailable, InputError, ModelIntegrityError, PipelineError
from attrition.core.names import FEATURES, MANIFEST, MODEL, MODEL_META, TARGET
from attrition.core.records import sha256_bytes
from attrition.data.clientdata import feature_frame
from attrition.production.versions import live_folder, read_manifest

PROBE_ROW = pd.DataFrame([[0.0] * len(FEATURES)], columns=list(FEATURES))


def build_model():
    """The course's logistic regression; the median imputer lets it score rows with blanks."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="median")),
            (
                "model",
                LogisticRegression(C=1.0, solver="liblinear", random_state=0, max_iter=100, tol=1e-4),
            ),
        ]
    )


def unpickle_model(blob: bytes, source: Path, error: type[InputError] | type[DeploymentUnavailable]):
    """A classifier from pickle bytes, tried on one row; anything else raises error naming source."""
    try:
        model = pickle.loads(blob)
    except Exception as failure:  # any unpickling failure means the file is not a usable model
        raise error(f"{source}: not a valid model pickle ({type(failure).__name__})") from None
    if not hasattr(model, "predict") or not hasattr(model, "predict_proba"):
        raise error(f"{source}: the pickle holds a {type(model).__name__}, not a classifier")
    try:
        shape = np.shape(model.predict_proba(PROBE_ROW))
    except Exception as failure:  # a model for other features, or a broken object
        raise error(
            f"{source}: the model cannot score the features {', '.join(FEATURES)} "
            f"({type(failure).__name__}: {str(failure)[:120]})"
        ) from None
    if shape != (1, 2):
        raise error(f"{source}: the model does not give two class probabilities (shape {shape})")
    return model


def load_model(path: Path):
    """(model, sha256) of a trained candidate's pickle."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: model not found; run training.py first") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not a model file") from None
    return unpickle_model(blob, path, InputError), sha256_bytes(blob)


class OfManifest:
    """The version and the model's sha256 of a model loaded under a manifest."""

    manifest: dict

    @property
    def version(self) -> int | None:
        return self.manifest.get("version")

    @property
    def sha256(self) -> str:
        return self.manifest["files"][MODEL]["sha256"]


@dataclass(frozen=True)
class DeployedModel(OfManifest):
    """The live model, verified against its manifest."""

    model: object
    manifest: dict

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """0/1 predictions for a frame of the FEATURES columns (clientdata.feature_frame)."""
        return self.model.predict(features).astype(int)


def read_deployed_bytes(prod_folder: Path) -> tuple[bytes, dict]:
    """(the deployed model's bytes, the manifest), checked against each other before any unpickling."""
    manifest = read_manifest(prod_folder)
    path = live_folder(prod_folder, manifest) / MODEL
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise DeploymentUnavailable(f"{path}: deployed model missing; redeploy with deployment.py") from None
    if sha256_bytes(blob) != manifest["files"][MODEL]["sha256"]:
        raise ModelIntegrityError(
            f"{path}: sha256 does not match {MANIFEST} (version {manifest.get('version')}); "
            "refusing to load a tampered or half-copied model"
        )
    return blob, manifest


def load_deployed(prod_folder: Path) -> DeployedModel:
    """The deployed model, read, verified and checked: the one place that loads it."""
    blob, manifest = read_deployed_bytes(prod_folder)
    path = live_folder(prod_folder, manifest) / MODEL
    return DeployedModel(unpickle_model(blob, path, DeploymentUnavailable), manifest)


def roc_points(truth: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve: (false positive rates, true positive rates) from (0, 0) at every distinct
    probability, highest first, to (1, 1). What scikit-learn's roc_curve(drop_intermediate=False)
    gives (tests/test_model.py compares them), without importing it: a report or an API worker
    that measures a model would otherwise pay 1-2 s of scikit-learn's import (it loads scipy.stats).
    Needs both classes in truth."""
    truth, probability = np.asarray(truth).astype(bool), np.asarray(probability, dtype=float)
    order = np.argsort(-probability, kind="stable")
    ranked = probability[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]  # each distinct value's last row
    hits = np.cumsum(truth[order])[last]
    misses = last + 1 - hits
    return np.r_[0.0, misses / misses[-1]], np.r_[0.0, hits / hits[-1]]


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, probability: np.ndarray) -> dict:
    """F1, precision, recall, accuracy, ROC AUC and the confusion counts of 0/1 predictions, as
    scikit-learn's f1_score, precision_recall_fscore_support (binary, zero_division=0),
    confusion_matrix and roc_auc_score compute them (tests/test_model.py holds them to those, on
    random and degenerate inputs); ROC AUC is None unless truth has both classes."""
    truth, predicted = np.asarray(truth).astype(int), np.asarray(predicted).astype(int)
    tp = int(np.sum((truth == 1) & (predicted == 1)))
    fp = int(np.sum((truth == 0) & (predicted == 1)))
    fn = int(np.sum((truth == 1) & (predicted == 0)))
    tn = len(truth) - tp - fp - fn
    roc_auc = None
    if 0 < tp + fn < len(truth):
        false_rates, true_rates = roc_points(truth, probability)
        roc_auc = float(np.trapezoid(true_rates, false_rates))
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if tp else 0.0,
        "precision": tp / (tp + fp) if tp else 0.0,
        "recall": tp / (tp + fn) if tp else 0.0,
        "accuracy": (tp + tn) / len(truth),
        "roc_auc": roc_auc,
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "rows": int(len(truth)),
        "positive_rate": float(truth.mean()),
    }


def evaluate(model, frame: pd.DataFrame, source: str = "data") -> dict:
    """The metrics of a fitted classifier on a labelled frame (clientdata.check_labelled)."""
    features = feature_frame(frame, source)
    return classification_metrics(
        frame[TARGET].to_numpy(), model.predict(features), model.predict_proba(features)[:, 1]
    )


LINEAR_FORMAT = "imputed-logistic-regression/1"


class LinearScorer:
    """A fitted Pipeline(SimpleImputer, LogisticRegression) in closed form, from plain numbers.

    The arithmetic of scikit-learn's predict and predict_proba without their per-call input
    validation (which costs more than the prediction on a few rows) and without unpickling.
    Takes a float matrix with the FEATURES columns in order; NaN is a missing value.
    """

    def __init__(self, fill, coef, intercept: float, classes):
        self.fill = np.asarray(fill, dtype=float)
        self.coef = np.asarray(coef, dtype=float)
        self.intercept = float(intercept)
        self.classes = np.asarray(classes)

    def decision_function(self, matrix: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(matrix), self.fill, matrix)
        return filled @ self.coef + self.intercept

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        positive = expit(self.decision_function(matrix))
        return np.column_stack([1 - positive, positive])

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return self.classes[(self.decision_function(matrix) > 0).astype(int)]

    def parameters(self) -> dict:
        return {
            "format": LINEAR_FORMAT,
            "features": list(FEATURES),
            "impute_fill": self.fill.tolist(),
            "coefficients": self.coef.tolist(),
            "intercept": self.intercept,
            "classes": self.classes.tolist(),
        }


def probe_rows() -> np.ndarray:
    """Rows spread over the data's range, a tenth of the values missing: what exports are checked on."""
    rng = np.random.default_rng(0)
    probe = rng.gamma(1.0, 500.0, size=(256, len(FEATURES)))
    probe[rng.random(probe.shape) < 0.1] = np.nan
    return probe


def linear_parameters(model) -> dict:
    """The fitted course model as plain numbers, or PipelineError when it is another kind of model.

    Checked: the closed form gives the model's own predictions and the same probabilities
    (to 1e-12) on probe rows, so the API serves exactly the model the course's scripts score.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    steps = getattr(model, "steps", None)
    if not (
        isinstance(model, Pipeline)
        and len(steps) == 2
        and type(steps[0][1]) is SimpleImputer
        and type(steps[1][1]) is LogisticRegression
        and not steps[0][1].add_indicator
        and list(steps[1][1].classes_) == [0, 1]
        and steps[1][1].coef_.shape == (1, len(FEATURES))
        and list(getattr(model, "feature_names_in_", FEATURES)) == list(FEATURES)
    ):
        raise PipelineError(
            f"the model is a {type(model).__name__}, not the course's Pipeline(SimpleImputer, "
            "LogisticRegression) on the features; the API can serve only that model"
        )
    imputer, regression = steps[0][1], steps[1][1]
    scorer = LinearScorer(
        imputer.statistics_, regression.coef_[0], regression.intercept_[0], regression.classes_
    )
    probe = probe_rows()
    frame = pd.DataFrame(probe, columns=list(FEATURES))
    if not (
        np.array_equal(scorer.predict(probe), model.predict(frame))
        and np.allclose(scorer.predict_proba(probe), model.predict_proba(frame), rtol=0, atol=1e-12)
    ):
        raise PipelineError("the model's closed form does not reproduce its own answers; not exported")
    return scorer.parameters()


def scorer_from_parameters(parameters, source: str) -> LinearScorer:
    """A LinearScorer from linear_parameters' numbers, each checked; DeploymentUnavailable otherwise."""

    def numbers(key: str, count: int) -> list[float]:
        values = parameters.get(key)
        if not (
            isinstance(values, list)
            and len(values) == count
            and all(type(value) in (int, float) and math.isfinite(value) for value in values)
        ):
            raise DeploymentUnavailable(f"{source}: '{key}' must be {count} finite numbers")
        return values

    if not isinstance(parameters, dict) or parameters.get("format") != LINEAR_FORMAT:
        raise DeploymentUnavailable(
            f"{source}: no model parameters of format {LINEAR_FORMAT} "
            "(trained before the API stopped unpickling: retrain and redeploy with "
            "`python fullprocess.py --force`)"
        )
    if parameters.get("features") != list(FEATURES):
        raise DeploymentUnavailable(
            f"{source}: the model is for features {parameters.get('features')!r}, not {list(FEATURES)}"
        )
    if parameters.get("classes") != [0, 1]:
        raise DeploymentUnavailable(f"{source}: the model's classes must be [0, 1]")
    intercept = parameters.get("intercept")
    if type(intercept) not in (int, float) or not math.isfinite(intercept):
        raise DeploymentUnavailable(f"{source}: 'intercept' must be a finite number")
    scorer = LinearScorer(
        numbers("impute_fill", len(FEATURES)), numbers("coefficients", len(FEATURES)), intercept, [0, 1]
    )
    with np.errstate(all="ignore"):
        decision = scorer.decision_function(probe_rows())
    if not np.isfinite(decision).all():
        raise DeploymentUnavailable(f"{source}: the model gives no finite risk on probe rows")
    return scorer


def load_linear(prod_folder: Path, manifest: dict | None = None) -> tuple[LinearScorer, dict]:
    """(the live model as a LinearScorer, the manifest): trainedmodel.json of the live version,
    its bytes checked against the manifest, tied to the deployed pickle by its sha256, its
    numbers checked and tried on probe rows. Nothing is unpickled: the API's one loader.
    manifest: a snapshot the caller read once (versions.live): that version's model, even if
    another version went live since (a batch step works from one version throughout)."""
    manifest = manifest if manifest is not None else read_manifest(prod_folder)
    folder = live_folder(prod_folder, manifest)
    path = folder / MODEL_META
    entry = manifest["files"].get(MODEL_META)
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise DeploymentUnavailable(
            f"{Path(prod_folder) / MANIFEST}: version {manifest.get('version')} has no "
            f"{MODEL_META} (deployed before the API stopped unpickling): retrain and redeploy with "
            "`python fullprocess.py --force`"
        )
    try:
        blob = path.read_bytes()
    except OSError as error:
        raise DeploymentUnavailable(f"{path}: unreadable ({error.strerror or error}); redeploy") from None
    if sha256_bytes(blob) != entry["sha256"]:
        raise ModelIntegrityError(
            f"{path}: sha256 does not match {MANIFEST} (version {manifest.get('version')}); "
            "refusing a tampered or half-copied model"
        )
    try:
        meta = json.loads(blob)
    except (ValueError, RecursionError):
        raise DeploymentUnavailable(f"{path}: not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("model_sha256") != manifest["files"][MODEL]["sha256"]:
        raise DeploymentUnavailable(f"{path}: describes another model than the deployed {MODEL}")
    return scorer_from_parameters(meta.get("linear_model"), str(path)), manifest


@dataclass(frozen=True)
class LiveModel(OfManifest):
    """The live version's model as plain numbers (load_live), and the manifest it was read under."""

    scorer: LinearScorer
    manifest: dict

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(0/1 predictions, exit probabilities) for a float matrix with the FEATURES columns."""
        decision = self.scorer.decision_function(matrix)  # once for both answers
        return self.scorer.classes[(decision > 0).astype(int)].astype(int), expit(decision)


def load_live(prod_folder: Path, manifest: dict | None = None) -> LiveModel:
    """The live model, read once by a batch step (the API keeps its own per-process copy: serving.py)."""
    return LiveModel(*load_linear(prod_folder, manifest))
