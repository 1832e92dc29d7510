"""The attrition-risk model: how it is built, loaded, checked and measured.

One home for the model; not a script.
    build_model()           the course's logistic regression (training.py fits it)
    load_model(path)        a trained candidate's pickle (scoring.py)
    load_deployed(prod)     the live model: its bytes checked against manifest.json, then
                            unpickled and tried on one row. Every failure is a
                            DeploymentUnavailable (exit 69 in a script, 503 in the API).
    evaluate(model, frame)  F1 and the other metrics on labelled data
    classification_metrics(truth, predicted, probability)  the same, from predictions

Trust: the manifest's sha256 catches a torn or half-copied file, not tampering (whoever can
write the production folder can write both), and unpickling runs code. Load models only from
folders that only the pipeline writes.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score
from sklearn.pipeline import Pipeline

from clientdata import feature_frame
from common import (
    FEATURES,
    MANIFEST,
    MODEL,
    TARGET,
    DeploymentUnavailable,
    InputError,
    ModelIntegrityError,
    live_folder,
    read_manifest,
    sha256_bytes,
)

PROBE_ROW = pd.DataFrame([[0.0] * len(FEATURES)], columns=list(FEATURES))


def build_model() -> Pipeline:
    """The course's logistic regression; the median imputer lets it score rows with blanks."""
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
        raise error(f"{source}: the model cannot score the features {', '.join(FEATURES)} "
                    f"({type(failure).__name__}: {str(failure)[:120]})") from None  # fmt: skip
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


@dataclass(frozen=True)
class DeployedModel:
    """The live model, verified against its manifest."""

    model: object
    manifest: dict

    @property
    def version(self) -> int | None:
        return self.manifest.get("version")

    @property
    def sha256(self) -> str:
        return self.manifest["files"][MODEL]["sha256"]

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """0/1 predictions for a frame of the FEATURES columns (clientdata.feature_frame)."""
        return self.model.predict(features).astype(int)

    def exit_probability(self, features: pd.DataFrame) -> np.ndarray:
        """The probability of exited=1 for each row of a FEATURES frame."""
        return self.model.predict_proba(features)[:, 1]


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


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, probability: np.ndarray) -> dict:
    """F1 (scikit-learn's f1_score), precision, recall, accuracy, ROC AUC, confusion counts."""
    truth, predicted = np.asarray(truth).astype(int), np.asarray(predicted).astype(int)
    precision, recall, _, _ = precision_recall_fscore_support(
        truth, predicted, average="binary", zero_division=0
    )
    tn, fp, fn, tp = confusion_matrix(truth, predicted, labels=[0, 1]).ravel()
    both_classes = len(np.unique(truth)) == 2
    return {
        "f1": float(f1_score(truth, predicted, zero_division=0)),
        "precision": float(precision),
        "recall": float(recall),
        "accuracy": float((predicted == truth).mean()),
        "roc_auc": float(roc_auc_score(truth, probability)) if both_classes else None,
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "rows": int(len(truth)),
        "positive_rate": float(truth.mean()),
    }


def evaluate(model, frame: pd.DataFrame, source: str = "data") -> dict:
    """The metrics of a fitted classifier on a labelled frame (clientdata.check_labelled)."""
    features = feature_frame(frame, source)
    return classification_metrics(
        frame[TARGET].to_numpy(), model.predict(features), model.predict_proba(features)[:, 1]
    )
