"""Training: the course's logistic regression on finaldata.csv, and the files training.py writes
(the pickle, its metadata with the same model as plain numbers, the drift reference sample).
"""

from __future__ import annotations

import importlib.metadata
import logging
import pickle
import platform
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from attrition.core.errors import InputError
from attrition.core.files import atomic_path, atomic_write_bytes, atomic_write_json
from attrition.core.names import FEATURES, MODEL, MODEL_META, REFERENCE_DATA, TARGET
from attrition.core.records import sha256_bytes, sha256_file, utc_now
from attrition.data.clientdata import read_data_file
from attrition.model.riskmodel import build_model, linear_parameters

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

NAME = "training"
REFERENCE_ROWS = 20_000

log = logging.getLogger(NAME)


def read_training_data(path: Path) -> pd.DataFrame:
    """finaldata.csv, checked for what training needs."""
    if not path.exists():
        raise InputError(f"{path}: not found; run ingestion.py first")
    frame = read_data_file(path, columns=(*FEATURES, TARGET))
    missing = [column for column in (*FEATURES, TARGET) if column not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]}")
    frame = frame.dropna(subset=[TARGET])
    if frame.empty:
        raise InputError(f"{path}: no rows to train on")
    classes = sorted(frame[TARGET].unique().tolist())
    if len(classes) < 2:
        raise InputError(f"{path}: {TARGET} has a single class ({classes[0]}); cannot train a classifier")
    for column in FEATURES:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise InputError(f"{path}: column {column} is not numeric; run ingestion.py")
    if frame[list(FEATURES)].isna().all().any():
        empty = [column for column in FEATURES if frame[column].isna().all()][0]
        raise InputError(f"{path}: column {empty} has no values")
    return frame


def train_model(frame: pd.DataFrame) -> Pipeline:
    return build_model().fit(frame[list(FEATURES)], frame[TARGET].astype(int))


def fit(data_path: Path) -> tuple[pd.DataFrame, Pipeline, float]:
    """(the training rows, the fitted model, seconds the fit took)."""
    started = time.perf_counter()
    frame = read_training_data(data_path)
    model = train_model(frame)
    fit_seconds = time.perf_counter() - started
    return frame, model, fit_seconds


def save(config, frame: pd.DataFrame, model: Pipeline, fit_seconds: float) -> None:
    """trainedmodel.pkl, trainedmodel.json and referencedata.csv, each atomically (the pickle and
    its metadata last: what deployment.py reads)."""
    data_path = config.finaldata_file
    blob = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
    config.model_folder.mkdir(parents=True, exist_ok=True)
    reference = frame[list(FEATURES)]
    if len(reference) > REFERENCE_ROWS:
        reference = reference.sample(n=REFERENCE_ROWS, random_state=0)
    with atomic_path(config.model_folder / REFERENCE_DATA) as temp:
        reference.to_csv(temp, index=False)
    atomic_write_bytes(config.model_folder / MODEL, blob)
    counts = frame[TARGET].astype(int).value_counts().sort_index()
    atomic_write_json(
        config.model_folder / MODEL_META,
        {
            "timestamp": utc_now(),
            "model": "Pipeline(SimpleImputer(median), LogisticRegression)",
            "parameters": model.named_steps["model"].get_params(),
            "features": list(FEATURES),
            "target": TARGET,
            "training_rows": int(len(frame)),
            "class_counts": {str(label): int(count) for label, count in counts.items()},
            "coefficients": dict(zip(FEATURES, model.named_steps["model"].coef_[0].tolist(), strict=True)),
            "intercept": float(model.named_steps["model"].intercept_[0]),
            "linear_model": linear_parameters(model),  # what the API serves (riskmodel.load_linear)
            "training_data": str(data_path),
            "training_data_sha256": sha256_file(data_path),
            "model_sha256": sha256_bytes(blob),
            "fit_seconds": round(fit_seconds, 4),
            "versions": {
                "python": platform.python_version(),
                "scikit-learn": importlib.metadata.version("scikit-learn"),
                "pandas": pd.__version__,
                "numpy": np.__version__,
            },
        },
    )
