"""Scoring a model: its metrics on labelled data (the trained pickle, the deployed one, or the live
version's plain numbers as the API serves them), and the score files scoring.py writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attrition.core.config import Config
from attrition.core.files import atomic_write_json, atomic_write_text
from attrition.core.names import (
    LATESTSCORE,
    MODEL,
    SCORE_HISTORY,
    SCORE_METRICS,
    TARGET,
)
from attrition.core.records import append_jsonl, utc_now
from attrition.data.clientdata import feature_frame, read_labelled_data
from attrition.model import riskmodel
from attrition.production import versions

NAME = "scoring"

log = logging.getLogger(NAME)


def score_model(model_path: Path, data_path: Path) -> dict:
    """Metrics of the model file on the data file. Writes nothing. The data is read first: a problem
    with it is said before unpickling imports scikit-learn (seconds)."""
    data = read_labelled_data(data_path)
    model, model_sha = riskmodel.load_model(model_path)
    metrics = riskmodel.evaluate(model, data, str(data_path))
    return {**metrics, "model": str(model_path), "model_sha256": model_sha, "data": str(data_path)}


def score_deployed(prod_folder: Path, data_path: Path) -> dict:
    """Metrics of the deployed, verified model on a data file. Writes nothing."""
    data = read_labelled_data(data_path)
    deployed = riskmodel.load_deployed(prod_folder)
    metrics = riskmodel.evaluate(deployed.model, data, str(data_path))
    return {
        **metrics,
        "model": str(prod_folder / MODEL),
        "model_sha256": deployed.sha256,
        "deployed_version": deployed.version,
        "data": str(data_path),
    }


def score_live(test: pd.DataFrame, model: riskmodel.LiveModel, data: str) -> dict:
    """Metrics of the live version's plain numbers (nothing is unpickled) on labelled test data
    (data: the file's name, for the answer). What GET /scoring answers."""
    predictions, probabilities = model.predict(feature_frame(test, data).to_numpy())
    metrics = riskmodel.classification_metrics(test[TARGET].to_numpy(), predictions, probabilities)
    return {**metrics, "model_version": model.version, "data": data}


def write_scores(metrics: dict, model_folder: Path) -> None:
    atomic_write_text(model_folder / LATESTSCORE, f"{metrics['f1']}\n")
    record = {"timestamp": utc_now(), **metrics}
    atomic_write_json(model_folder / SCORE_METRICS, record)
    append_jsonl(model_folder / SCORE_HISTORY, record)


@dataclass(frozen=True)
class Evaluation:
    """The deployed model on testdata: what the confusion matrix and the report show (the
    predictions are in metrics' confusion counts; the ROC curve needs truth and probability)."""

    version: int | None
    truth: np.ndarray
    probability: np.ndarray
    metrics: dict

    def title(self, data: Path) -> str:
        return (
            f"Deployed model v{self.version}: F1 {self.metrics['f1']:.3f}\n"
            f"on {data.name} ({len(self.truth)} rows)"
        )


def evaluate_on_testdata(config: Config, state: versions.Live, scorer: riskmodel.LinearScorer) -> Evaluation:
    """The version's predictions and metrics on testdata (its numbers, as the API serves them)."""
    test = read_labelled_data(config.testdata_file)
    matrix = feature_frame(test, str(config.testdata_file)).to_numpy()
    probability = scorer.predict_proba(matrix)[:, 1]
    predicted = scorer.predict(matrix).astype(int)
    truth = test[TARGET].astype(int).to_numpy()
    metrics = riskmodel.classification_metrics(truth, predicted, probability)
    return Evaluation(state.version, truth, probability, metrics)
