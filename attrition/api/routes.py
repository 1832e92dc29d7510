"""The API's routes: each reads its input (inputs.py), calls the course's functions with the
worker's cached model and files (serving.py), and answers JSON."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, current_app, jsonify

from attrition.api import dashboard, metrics, serving
from attrition.api.inputs import body_fields, prediction_input, requested_file, wants, whole_number
from attrition.core.config import Config
from attrition.core.errors import DataUnavailable, DeploymentUnavailable
from attrition.core.names import RISK_RANKING, RUN_HISTORY
from attrition.core.records import last_records
from attrition.data.clientdata import check_labelled
from attrition.model import riskmodel, scoring
from attrition.monitoring import diagnostics
from attrition.monitoring.dependencies import outdated_packages_list
from attrition.monitoring.timing import execution_time
from attrition.reports import calllist, riskdb

TIMING_MAX_AGE = 600  # s: the cron period; /diagnostics?fresh=1 always times anew


ENDPOINTS = [
    "/health",
    "/prediction",
    "/scoring",
    "/summarystats",
    "/diagnostics",
    "/calllist",
    "/runs",
    "/metrics",
    "/openapi.json",
]


api = Blueprint("api", __name__)


@api.get("/")
def index():
    """The endpoints for a JSON client (curl, apicalls.py, the benchmarks' floor); the dashboard for a
    browser."""
    if dashboard.wants_html():
        return dashboard.overview()
    return jsonify(service="attrition risk model", endpoints=ENDPOINTS, dashboard="open / in a browser")


@api.get("/openapi.json")
def openapi():
    return jsonify(current_app.extensions["risk_openapi"])


@api.get("/health")
def health():
    """200 only when the served model scores a probe row; what is served, and what is live if that differs."""
    loaded = served_model()
    _, probability = loaded.predict(riskmodel.probe_rows()[:1])
    if not np.isfinite(probability).all():
        raise DeploymentUnavailable(f"version {loaded.version} gives no probability for a probe row")
    answer = {
        "status": "ok" if loaded.problem is None else "serving_previous_version",
        "model_version": loaded.version,
        "deployed_at": loaded.manifest.get("timestamp"),
        "model_sha256": loaded.sha256,
    }
    if loaded.problem is not None:
        answer["problem"] = loaded.problem
    return jsonify(answer)


@api.route("/prediction", methods=["GET", "POST"])
def prediction():
    config = risk_config()
    served_model()  # no usable model: 503 before the request is read
    matrix, ids, body, data = prediction_input(config)
    proba, explain = wants("proba", body=body), wants("reasons", body=body)
    answers = diagnostics.predict(matrix, served_model())
    metrics.rows_scored("/prediction", len(matrix))
    answer = {"predictions": answers.predictions.tolist()}
    if data is not None:
        answer["data"] = data  # the file the predictions describe (rows sent: none)
    if ids is not None:
        answer["corporations"] = ids
    if proba:
        answer["probabilities"] = answers.probabilities.tolist()
    if explain:
        answer["reasons"] = calllist.reasons(answers.scorer, matrix)[0]
    answer["model_version"] = answers.version
    return jsonify(answer)


@api.get("/scoring")
def scoring_endpoint():
    """The live version's metrics on the configured test data, or on the labelled file named."""
    model = served_model()  # no usable model: 503 before the data is read
    config = risk_config()
    path = requested_file(config, body_fields(config))
    if path is None:
        test = serving.server_data(config.testdata_file, labelled=True)
    else:
        test = check_labelled(serving.read_csv_cached(path), config.relative(path))
    answer = scoring.score_live(test, model, config.relative(path or config.testdata_file))
    metrics.rows_scored("/scoring", len(test))
    return jsonify(answer)


@api.get("/summarystats")
def summarystats():
    """Mean, median, mode, std of each numeric column of finaldata.csv, or of the file named."""
    config = risk_config()
    path = requested_file(config, body_fields(config))
    if path is None:
        statistics = diagnostics.figures_of_finaldata(config, "summary_statistics", cached_finaldata_summary)
    else:
        statistics = diagnostics.summary_statistics(serving.read_csv_cached(path))
    return jsonify(data=config.relative(path or config.finaldata_file), statistics=statistics)


@api.get("/diagnostics")
def diagnostics_endpoint():
    """Timing of ingestion and training, missing data of finaldata.csv (or of the file named),
    the dependency table."""
    config = risk_config()
    body = body_fields(config)
    path = requested_file(config, body)
    timing, fresh = wants("timing", default=True, body=body), wants("fresh", body=body)
    answer = {}
    if timing:
        ingestion, training = execution_time(config, 0.0 if fresh else TIMING_MAX_AGE)
        answer["execution_time_seconds"] = {"ingestion": ingestion, "training": training}
    answer["data"] = config.relative(path or config.finaldata_file)
    if path is None:
        missing = diagnostics.figures_of_finaldata(config, "missing_data_percent", cached_finaldata_missing)
    else:
        missing = diagnostics.missing_percent(serving.read_csv_cached(path))
    answer["missing_data_percent"] = missing
    answer["dependencies"] = outdated_packages_list(config)
    return jsonify(answer)


@api.get("/calllist")
def call_list():
    """The call list reporting.py last wrote, a page at a time, from its query store (riskdb.py)."""
    config = risk_config()
    limit, offset = whole_number("limit", 50, 1, 1000), whole_number("offset", 0, 0, 10**9)
    store = riskdb.store(config.model_folder)
    if store is None:
        raise DataUnavailable(
            f"{config.relative(config.model_folder / RISK_RANKING)}: no call list yet; run reporting.py"
        )
    basis = store.basis
    return jsonify(
        model_version=basis.get("model_version"),
        written=basis.get("written"),
        data=basis.get("data"),
        total=store.counts["calls"],
        offset=offset,
        rows=store.call_list(offset, limit),
    )


@api.get("/runs")
def runs():
    """The last runs, oldest first: read from the end of the history (the cost of the answer)."""
    limit = whole_number("limit", 10, 1, 1000)
    return jsonify(runs=last_records(risk_config().prod_folder / RUN_HISTORY, limit))


@api.get("/metrics")
def metrics_endpoint():
    """Prometheus' text exposition (metrics.py): the API's counters summed over the workers, the
    model each worker serves, and the pipeline's figures from the files it writes."""
    body, content_type = metrics.exposition(risk_config())
    return current_app.response_class(body, content_type=content_type)


def risk_config() -> Config:
    return current_app.extensions["risk_config"]


def served_model() -> serving.ServedModel:
    return serving.served_model(risk_config().prod_folder)


def cached_finaldata_summary(config: Config) -> dict:
    return diagnostics.summary_statistics(serving.server_data(config.finaldata_file))


def cached_finaldata_missing(config: Config) -> dict:
    return diagnostics.missing_percent(serving.server_data(config.finaldata_file))
