"""The course's diagnostics functions, for the live version and the ingested data.

They return values; diagnostics.py (the script), reporting.py and the API's routes call them. A
batch step reads the live model and the files once (attrition/model/riskmodel.load_live,
attrition/data/clientdata); the API passes its per-process caches (attrition/api/serving.py).
    predict(data, model)            the live version's predictions and probabilities
    model_predictions(frame)        the course's: 0/1 for every row
    dataframe_summary(config)       mean, median, mode, std of each numeric column of finaldata.csv
    missing_data(config)            percent missing in each column of finaldata.csv
    run_all(config)                 all of them, with timing (timing.py), the dependency check
                                    (dependencies.py) and drift since training, stamped
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from attrition.core.config import Config, load_config
from attrition.core.errors import DataUnavailable, DeploymentUnavailable
from attrition.core.names import DIAGNOSTICS
from attrition.core.records import utc_now
from attrition.data.clientdata import feature_frame, read_own_file
from attrition.model import riskmodel
from attrition.monitoring import drift
from attrition.monitoring.dependencies import outdated_packages_list
from attrition.monitoring.timing import execution_time, keep_timing
from attrition.production import stamps, versions

NAME = "diagnostics"

log = logging.getLogger(NAME)


@dataclass(frozen=True)
class Predictions:
    """The live version's answers for some rows."""

    version: int | None
    scorer: riskmodel.LinearScorer
    predictions: np.ndarray  # 0/1
    probabilities: np.ndarray  # of exited=1


def predict(
    data: pd.DataFrame | np.ndarray, model: riskmodel.LiveModel, source: str = "input data"
) -> Predictions:
    """model's predictions for data: a frame with the feature columns (any others and their order
    do not matter; a missing feature column is an InputError naming it) or a float matrix of the
    FEATURES columns in order."""
    matrix = data if isinstance(data, np.ndarray) else feature_frame(data, source).to_numpy()
    predictions, probabilities = model.predict(matrix)
    return Predictions(model.version, model.scorer, predictions, probabilities)


def model_predictions(
    frame: pd.DataFrame, config: Config | None = None, source: str = "input data"
) -> list[int]:
    """The course's model_predictions: the live version's 0/1 prediction for every row, in row order."""
    config = config or load_config()
    return predict(frame, riskmodel.load_live(config.prod_folder), source).predictions.tolist()


def _float_or_none(value) -> float | None:
    """A JSON-ready number: NaN (the statistic of an empty column) becomes None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def summary_statistics(frame: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """{column: {mean, median, mode, std}} of each numeric column, in column order."""
    summary = {}
    for column in frame.select_dtypes("number").columns:
        values = frame[column].dropna()
        modes = values.mode()
        summary[column] = {
            "mean": _float_or_none(values.mean()),
            "median": _float_or_none(values.median()),
            "mode": _float_or_none(modes.iloc[0]) if len(modes) else None,  # the smallest when tied
            "std": _float_or_none(values.std()),
        }
    return summary


def dataframe_summary(config: Config | None = None) -> dict[str, dict[str, float | None]]:
    """Mean, median, mode and standard deviation of each numeric column of finaldata.csv.

    The course's flat list is [value for stats in dataframe_summary().values() for value in
    stats.values()]: mean, median, mode, std of the first column, then of the next, ...
    """
    config = config or load_config()
    return summary_statistics(read_own_file(config.finaldata_file))


def missing_percent(frame: pd.DataFrame) -> dict[str, float]:
    """{column: percent of NA values}, in column order."""
    if not len(frame):
        return {column: 0.0 for column in frame.columns}
    return {column: float(value) for column, value in (frame.isna().mean() * 100).round(6).items()}


def missing_data(config: Config | None = None) -> dict[str, float]:
    """Percent of NA values in each column of finaldata.csv, in column order (the course's list
    is list(missing_data().values()))."""
    config = config or load_config()
    return missing_percent(read_own_file(config.finaldata_file))


def figures_of_finaldata(config: Config, key: str, compute):
    """diagnostics.json's figures under key ("summary_statistics", "missing_data_percent") when its
    stamp says they describe the ingested data of now, as the API serves them: computed once per
    run, not per request. Without such a record, compute(config) when finaldata.csv is no larger
    than a request may be (api_max_body_bytes), else DataUnavailable (503) saying what to run."""
    report = versions.read_json(config.model_folder / DIAGNOSTICS)
    data = stamps.data_fingerprint(config)
    if isinstance(report, dict) and key in report and data is not None:
        if (stamps.stamp_of(report) or {}).get("data_sha256") == data:
            return report[key]
    try:
        size = config.finaldata_file.stat().st_size
    except OSError:
        size = 0  # compute says what is wrong with it
    if size > config["api_max_body_bytes"]:
        raise DataUnavailable(
            f"{config.relative(config.finaldata_file)} ({size:,} bytes) is larger than a request reads "
            f"and {DIAGNOSTICS} does not describe it yet: run diagnostics.py (fullprocess.py runs it)"
        )
    return compute(config)


def recorded_drift(config: Config, state: versions.Live, data_sha256: str | None) -> dict | None:
    """diagnostics.json's drift since the live version was trained, when its stamp says it describes
    that version and this data (fullprocess.py runs diagnostics.py just before reporting.py: the KS
    tests over every row of finaldata.csv, once per run, not twice); else None."""
    report = versions.read_json(config.model_folder / DIAGNOSTICS)
    if not isinstance(report, dict) or not isinstance(report.get("feature_drift"), dict):
        return None
    stamp = stamps.stamp_of(report)
    if data_sha256 is None or stamps.stamp_problem(stamp, state, data_sha256) is not None:
        return None
    return report["feature_drift"]


def run_all(config: Config, measured: list[float] | None = None) -> dict:
    """Every diagnostic of the live version and the ingested data, stamped with what it describes.
    measured: [ingestion, training] seconds the caller timed on the current inputs (else timed here)."""
    state = versions.live(config)
    if state is None:
        raise DeploymentUnavailable(
            f"{config.prod_folder}: no deployment yet; run deployment.py (or fullprocess.py)"
        )
    data_sha256 = stamps.data_fingerprint(config)
    test = read_own_file(config.testdata_file)
    final = read_own_file(config.finaldata_file)
    model = riskmodel.load_live(config.prod_folder, state.manifest)
    return {
        "timestamp": utc_now(),
        "stamp": stamps.stamp(config, state, data_sha256),
        "deployed_version": state.version,
        "model_sha256": state.model_sha256,
        "predictions": {
            "data": config.relative(config.testdata_file),
            "values": predict(test, model, config.relative(config.testdata_file)).predictions.tolist(),
        },
        "summary_statistics": summary_statistics(final),
        "missing_data_percent": missing_percent(final),
        "execution_time_seconds": dict(
            zip(
                ("ingestion", "training"),
                keep_timing(config, measured) if measured else execution_time(config),
                strict=True,
            )
        ),
        "dependencies": outdated_packages_list(config),
        "feature_drift": drift.since_training(config, state, final),
    }
