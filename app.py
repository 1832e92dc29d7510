"""The risk model's JSON API: predictions, scores, summary statistics, diagnostics.

Endpoints (JSON; errors are {"error": code, "message": text} with a 4xx status)
    GET  /              the endpoints (a cheap route: the benchmarks' floor)
    GET  /health        200 with the deployed model's version, 503 when none verifies
    GET|POST /prediction   predictions of the deployed model for a data file
                        (?filepath= / ?filename=, or JSON {"filepath": ...}) or for
                        rows (JSON {"records": [...]}, MLflow's dataframe_records /
                        dataframe_split, or a text/csv body); ?proba=1 adds risks
    GET  /scoring       F1 and other metrics of the deployed model on testdata
    GET  /summarystats  mean, median, mode, std of each numeric column of finaldata.csv
    GET  /diagnostics   timing, missing data, dependency table (?timing=0 skips timing;
                        a timing of the same inputs up to 10 minutes old is reused, ?fresh=1)
    GET  /runs          the last fullprocess.py runs (?limit=N)
Reads
    the files of config.json (or $RISK_CONFIG); nothing at import time. The
    deployed model is verified against manifest.json and reloaded when it changes.
Environment
    RISK_API_TOKEN      when set, every endpoint but /health needs
                        "Authorization: Bearer <token>"
Run
    make serve                      # gunicorn, as in production (wsgi.py)
    python app.py [--port 8000]     # Flask's development server, 127.0.0.1 only
"""

from __future__ import annotations

import argparse
import hmac
import io
import logging
import math
import os
from pathlib import Path

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from common import (
    FEATURES,
    RUN_HISTORY,
    Config,
    DeploymentUnavailable,
    PipelineError,
    load_config,
    read_jsonl,
)

TOKEN_ENV = "RISK_API_TOKEN"
FILE_KEYS = ("filepath", "filename", "dataset_path")
TRUE = ("1", "true", "yes", "on")
TIMING_MAX_AGE = 600  # s: the cron period; /diagnostics?fresh=1 always times anew

log = logging.getLogger("app")


class ApiError(Exception):
    """A request the API refuses: status, short code, message."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


def error_response(status: int, error: str, message: str):
    response = jsonify(error=error, message=message)
    response.status_code = status
    return response


def data_roots(config: Config) -> list[Path]:
    """The folders /prediction may read: input, ingested, test data, models (not production)."""
    return [folder.resolve() for folder in (config.input_folder, config.output_folder, config.test_data,
                                            config.model_folder)]  # fmt: skip


def resolve_data_file(config: Config, raw, roots: list[Path]) -> Path:
    """A requested data file: inside the data folders (links followed), a CSV, existing."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise ApiError(400, "bad_request", "filepath must be a non-empty path string")
    project = config.path.parent
    path = Path(raw.strip())
    resolved = (path if path.is_absolute() else project / path).resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ApiError(403, "forbidden", f"{raw}: outside the data folders (input, ingested, test, models)")
    if resolved.suffix.lower() != ".csv":
        raise ApiError(403, "forbidden", f"{raw}: only CSV data files can be read")
    if not resolved.is_file():
        raise ApiError(404, "not_found", f"{raw}: no such data file")
    return resolved


def _number(value, column: str) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ApiError(
            400, "bad_request", f"JSON rows: column {column} has a non-numeric value {str(value)[:30]!r}"
        )
    return float(value)


def matrix_from_json(body: dict):
    """The feature matrix of the JSON row forms: records, dataframe_records, dataframe_split.

    Built without pandas: on a few rows, a DataFrame costs more than the prediction.
    """
    import numpy as np

    if "records" in body or "dataframe_records" in body:
        records = body.get("records", body.get("dataframe_records"))
        if not isinstance(records, list) or not all(isinstance(row, dict) for row in records):
            raise ApiError(400, "bad_request", "records must be a list of objects, one per row")
        present = set().union(*records) if records else set(FEATURES)
        rows = [[row.get(column) for column in FEATURES] for row in records]
    else:
        split = body["dataframe_split"]
        if (
            not isinstance(split, dict)
            or not isinstance(split.get("columns"), list)
            or not isinstance(split.get("data"), list)
        ):
            raise ApiError(400, "bad_request", "dataframe_split needs 'columns' and 'data' lists")
        columns = split["columns"]
        if not all(isinstance(row, list) and len(row) == len(columns) for row in split["data"]):
            raise ApiError(
                400, "bad_request", "dataframe_split: every row of 'data' needs one value per column"
            )
        present = set(columns)
        positions = [columns.index(column) if column in columns else None for column in FEATURES]
        rows = [
            [row[position] if position is not None else None for position in positions]
            for row in split["data"]
        ]
    missing = [column for column in FEATURES if column not in present]
    if missing:
        raise ApiError(400, "bad_request", f"JSON rows: missing feature column {missing[0]}")
    try:
        return np.array(rows, dtype=float).reshape(len(rows), len(FEATURES))
    except (TypeError, ValueError):
        return np.array(
            [[_number(value, column) for value, column in zip(row, FEATURES, strict=True)] for row in rows],
            dtype=float,
        ).reshape(len(rows), len(FEATURES))


def matrix_from_csv(body: bytes):
    import pandas as pd

    from scoring import feature_frame

    try:
        frame = pd.read_csv(io.BytesIO(body), encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ApiError(400, "bad_request", "empty CSV body") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise ApiError(
            400, "bad_request", f"malformed CSV body: {str(error).strip().splitlines()[-1]}"
        ) from None
    return feature_frame(frame, "CSV body").to_numpy()


def prediction_input(config: Config, roots: list[Path]):
    """The feature matrix of a /prediction request, in any of the accepted forms."""
    import diagnostics

    arguments = {key: request.args[key] for key in FILE_KEYS if key in request.args}
    body = {}
    if request.method == "POST" and request.content_length != 0 and (request.data or request.form):
        mimetype = request.mimetype
        if mimetype == "application/json":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise ApiError(400, "bad_request", "malformed JSON body: expected an object")
        elif mimetype in ("text/csv", "application/csv"):
            return matrix_from_csv(request.get_data())
        elif mimetype == "application/x-www-form-urlencoded":
            body = request.form.to_dict()
        else:
            raise ApiError(415, "unsupported_media_type", f"{mimetype}: send application/json or text/csv")
    for key in FILE_KEYS:
        if key in body:
            arguments.setdefault(key, body[key])
    if any(key in body for key in ("records", "dataframe_records", "dataframe_split")):
        return matrix_from_json(body)
    if not arguments:
        raise ApiError(400, "bad_request", "give a data file (?filepath=testdata/testdata.csv) or rows")
    raw = next(arguments[key] for key in FILE_KEYS if key in arguments)
    return diagnostics.feature_matrix_cached(resolve_data_file(config, raw, roots))


def wants(name: str, default: bool = False, body: dict | None = None) -> bool:
    value = request.args.get(name)
    if value is None and body:
        value = body.get(name)
    if value is None:
        return default
    return str(value).lower() in TRUE


def create_app(test_config: dict | None = None) -> Flask:
    """The application. test_config may set RISK_CONFIG (a config path), API_TOKEN, MAX_CONTENT_LENGTH."""
    import diagnostics
    from scoring import check_labelled, evaluate

    app = Flask(__name__)
    app.json.sort_keys = False
    app.config.update(RISK_CONFIG=None, API_TOKEN=os.environ.get(TOKEN_ENV) or None, MAX_CONTENT_LENGTH=None)
    app.config.update(test_config or {})
    config = load_config(app.config["RISK_CONFIG"])
    if app.config["MAX_CONTENT_LENGTH"] is None:
        app.config["MAX_CONTENT_LENGTH"] = config["api_max_body_bytes"]
    app.extensions["risk_config"] = config

    def model():
        return diagnostics.deployed_model(config, allow_stale=True)

    try:  # load and verify now, so that the first request does not pay for it
        model()
    except PipelineError as error:
        log.warning("no verified model yet: %s", error)

    @app.before_request
    def check_token():
        token = app.config["API_TOKEN"]
        if not token or request.path == "/health":
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            response = error_response(401, "unauthorized", "send Authorization: Bearer <token>")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        return None

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        return error_response(error.status, error.error, error.message)

    @app.errorhandler(DeploymentUnavailable)
    def deployment_unavailable(error: DeploymentUnavailable):
        return error_response(503, "model_unavailable", str(error))

    @app.errorhandler(PipelineError)
    def pipeline_error(error: PipelineError):
        return error_response(400, "bad_request", str(error))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return error_response(error.code or 500, code, error.description or error.name)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unexpected error on %s", request.path)
        return error_response(500, "internal_error", "unexpected server error; see the server log")

    @app.get("/")
    def index():
        return jsonify(
            service="attrition risk model",
            endpoints=["/health", "/prediction", "/scoring", "/summarystats", "/diagnostics", "/runs"],
        )

    @app.get("/health")
    def health():
        try:
            loaded = model()
        except PipelineError as error:
            return error_response(503, "model_unavailable", str(error))
        return jsonify(
            status="ok", model_version=loaded.version, deployed_at=loaded.manifest.get("timestamp")
        )

    roots = data_roots(config)

    @app.route("/prediction", methods=["GET", "POST"])
    def prediction():
        loaded = model()
        matrix = prediction_input(config, roots)
        body = request.get_json(silent=True) if request.mimetype == "application/json" else None
        proba = wants("proba", body=body if isinstance(body, dict) else None)
        result = diagnostics.predict_matrix(loaded, matrix, proba)
        if proba:
            predictions, probabilities = result
            return jsonify(predictions=predictions, probabilities=probabilities, model_version=loaded.version)
        return jsonify(predictions=result, model_version=loaded.version)

    @app.get("/scoring")
    def scoring():
        loaded = model()
        source = str(config.testdata_file)
        test = check_labelled(diagnostics.read_csv_cached(config.testdata_file), source)
        metrics = evaluate(loaded.model, test, source)
        return jsonify(**metrics, model_version=loaded.version, data=source)

    @app.get("/summarystats")
    def summarystats():
        return jsonify(data=str(config.finaldata_file), statistics=diagnostics.dataframe_summary(config))

    @app.get("/diagnostics")
    def diagnostics_endpoint():
        result = {}
        if wants("timing", default=True):
            max_age = 0.0 if wants("fresh") else TIMING_MAX_AGE
            ingestion, training = diagnostics.execution_time(config, max_age)
            result["execution_time_seconds"] = {"ingestion": ingestion, "training": training}
        result["missing_data_percent"] = diagnostics.missing_data(config, as_dict=True)
        result["dependencies"] = diagnostics.outdated_packages_list(config)
        return jsonify(result)

    @app.get("/runs")
    def runs():
        try:
            limit = max(1, min(int(request.args.get("limit", 10)), 1000))
        except ValueError:
            raise ApiError(400, "bad_request", "limit must be a whole number") from None
        return jsonify(runs=read_jsonl(config.prod_folder / RUN_HISTORY)[-limit:])

    return app


def main(argv: list[str] | None = None) -> int:
    from common import setup_logging

    parser = argparse.ArgumentParser(description="Run the API on Flask's development server.")
    parser.add_argument("--host", help="default: api_host of config.json (127.0.0.1)")
    parser.add_argument("--port", type=int, help="default: api_port of config.json (8000)")
    args = parser.parse_args(argv)
    setup_logging("app")
    app = create_app()
    config = app.extensions["risk_config"]
    app.run(host=args.host or config["api_host"], port=args.port or config["api_port"], debug=False)
    return 0


if __name__ == "__main__":
    from common import run_main

    run_main(main, "app")
