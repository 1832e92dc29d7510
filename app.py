"""The risk model's JSON API: predictions, scores, summary statistics, diagnostics.

Endpoints (JSON; errors are {"error": code, "message": text})
    GET  /              the endpoints (a cheap route: the benchmarks' floor)
    GET  /health        200 with the deployed model's version, 503 when none can be used
    GET|POST /prediction   predictions of the deployed model for a data file
                        (?filepath= / ?filename=, or JSON {"filepath": ...}) or for
                        rows (JSON {"records": [...]}, MLflow's dataframe_records /
                        dataframe_split, or a text/csv body); ?proba=1 adds risks
    GET  /scoring       F1 and other metrics of the deployed model on testdata
    GET  /summarystats  mean, median, mode, std of each numeric column of finaldata.csv
    GET  /diagnostics   timing, missing data, dependency table (?timing=0 skips timing;
                        a timing of the same inputs up to 10 minutes old is reused, ?fresh=1)
    GET  /runs          the last fullprocess.py runs (?limit=N)
Errors (mapped once, from the classes of common.py)
    400 bad input (InputError), 401 no token, 403 a file outside the data folders,
    404, 405, 413 body too large, 415 content type, 503 no usable deployed model or server
    data (Unavailable), 500 anything else, with no traceback in the answer.
Reads
    the files of config.json (or $RISK_CONFIG), config.json itself at creation and the rest
    per request. serving.py keeps the verified model and the data files in memory until they
    change; wsgi.py loads the model when a worker starts.
Environment
    RISK_API_TOKEN      when set, every endpoint but /health needs
                        "Authorization: Bearer <token>"
Run
    make serve                      # gunicorn, as in production (wsgi.py)
    python app.py [--port 8000]     # Flask's development server, 127.0.0.1 only
"""

from __future__ import annotations

import hmac
import io
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import Forbidden, HTTPException, NotFound, UnsupportedMediaType

import diagnostics
import riskmodel
import serving
from clientdata import check_labelled, feature_frame, parser_message
from common import (
    FEATURES,
    RUN_HISTORY,
    TOKEN_ENV,
    Config,
    DataUnavailable,
    InputError,
    PipelineError,
    command_line,
    load_config,
    read_jsonl,
    run_main,
    setup_logging,
)

NAME = "app"
FILE_KEYS = ("filepath", "filename", "dataset_path")
ROW_KEYS = ("records", "dataframe_records", "dataframe_split")
TRUE = ("1", "true", "yes", "on")
TIMING_MAX_AGE = 600  # s: the cron period; /diagnostics?fresh=1 always times anew
ENDPOINTS = ["/health", "/prediction", "/scoring", "/summarystats", "/diagnostics", "/runs"]

log = logging.getLogger(NAME)
api = Blueprint("api", __name__)


def create_app(test_config: dict | None = None) -> Flask:
    """The application. test_config may set RISK_CONFIG (a config path), API_TOKEN, MAX_CONTENT_LENGTH."""
    app = Flask(__name__)
    app.json.sort_keys = False
    app.config.update(RISK_CONFIG=None, API_TOKEN=os.environ.get(TOKEN_ENV) or None, MAX_CONTENT_LENGTH=None)
    app.config.update(test_config or {})
    config = load_config(app.config["RISK_CONFIG"])
    if app.config["MAX_CONTENT_LENGTH"] is None:
        app.config["MAX_CONTENT_LENGTH"] = config["api_max_body_bytes"]
    app.extensions["risk_config"] = config
    app.extensions["risk_data_roots"] = data_roots(config)  # resolved once: a request pays no realpath
    app.before_request(check_token)
    app.register_error_handler(PipelineError, pipeline_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
    app.register_blueprint(api)
    return app


def warm_up(app: Flask) -> None:
    """Load and verify the deployed model now, so that a worker's first request does not pay for it."""
    try:
        serving.served_model(app.extensions["risk_config"].prod_folder)
    except PipelineError as error:
        log.warning("no usable deployed model yet: %s", error)


def risk_config() -> Config:
    return current_app.extensions["risk_config"]


def served_model() -> serving.ServedModel:
    return serving.served_model(risk_config().prod_folder)


def error_response(status: int, code: str, message: str):
    response = jsonify(error=code, message=message)
    response.status_code = status
    return response


def check_token():
    """With a token configured, every endpoint but /health needs it as a Bearer token."""
    token = current_app.config["API_TOKEN"]
    if not token or request.path == "/health":
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        response = error_response(401, "unauthorized", "send Authorization: Bearer <token>")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return None


def pipeline_error(error: PipelineError):
    """The expected failures: each class says its status (400 bad input, 503 unavailable, ...)."""
    if error.http_status >= 500:
        log.error("%s %s: %s", request.method, request.path, error)
    return error_response(error.http_status, error.code, str(error))


def http_error(error: HTTPException):
    code = (error.name or "error").lower().replace(" ", "_")
    response = error_response(error.code or 500, code, error.description or error.name)
    for header, value in error.get_headers():
        if header.lower() != "content-type":  # e.g. Allow on a 405
            response.headers[header] = value
    return response


def unexpected_error(error: Exception):
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "unexpected server error; see the server log")


def data_roots(config: Config) -> list[Path]:
    """The folders /prediction may read: input, ingested, test data, models (not production)."""
    return [folder.resolve() for folder in (config.input_folder, config.output_folder, config.test_data,
                                            config.model_folder)]  # fmt: skip


def resolve_data_file(config: Config, raw) -> Path:
    """A requested data file: inside the data folders (links followed), a CSV, existing."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise InputError("filepath must be a non-empty path string")
    path = Path(raw.strip())
    resolved = (path if path.is_absolute() else config.path.parent / path).resolve()
    if not any(resolved.is_relative_to(root) for root in current_app.extensions["risk_data_roots"]):
        raise Forbidden(f"{raw}: outside the data folders (input, ingested, test, models)")
    if resolved.suffix.lower() != ".csv":
        raise Forbidden(f"{raw}: only CSV data files can be read")
    if not resolved.is_file():
        raise NotFound(f"{raw}: no such data file")
    return resolved


def server_data(path: Path, labelled: bool = False) -> pd.DataFrame:
    """A data file the server itself relies on: unusable, it is the server's problem (503), not the caller's."""
    try:
        frame = serving.read_csv_cached(path)
        return check_labelled(frame, str(path)) if labelled else frame
    except InputError as error:
        raise DataUnavailable(str(error)) from None


def matrix_from_json(body: dict) -> np.ndarray:
    """The feature matrix of the JSON row forms: records, dataframe_records, dataframe_split."""
    if "records" in body or "dataframe_records" in body:
        records = body.get("records", body.get("dataframe_records"))
        if not isinstance(records, list) or not all(isinstance(row, dict) for row in records):
            raise InputError("records must be a list of objects, one per row")
        present = set().union(*records) if records else set(FEATURES)
        rows = [[row.get(column) for column in FEATURES] for row in records]
    else:
        split = body["dataframe_split"]
        if (
            not isinstance(split, dict)
            or not isinstance(split.get("columns"), list)
            or not isinstance(split.get("data"), list)
        ):
            raise InputError("dataframe_split needs 'columns' and 'data' lists")
        columns = split["columns"]
        if not all(isinstance(row, list) and len(row) == len(columns) for row in split["data"]):
            raise InputError("dataframe_split: every row of 'data' needs one value per column")
        present = set(columns)
        positions = [columns.index(column) if column in columns else None for column in FEATURES]
        rows = [
            [row[position] if position is not None else None for position in positions]
            for row in split["data"]
        ]
    missing = [column for column in FEATURES if column not in present]
    if missing:
        raise InputError(f"JSON rows: missing feature column {missing[0]}")
    if all(value is None or type(value) in (int, float) for row in rows for value in row):
        # plain numbers (the usual case): straight to NumPy, as a DataFrame costs more than the prediction
        return np.array(rows, dtype=float).reshape(len(rows), len(FEATURES))
    frame = pd.DataFrame(rows, columns=list(FEATURES), dtype=object)
    return feature_frame(frame, "JSON rows").to_numpy()


def matrix_from_csv(body: bytes) -> np.ndarray:
    try:
        frame = pd.read_csv(io.BytesIO(body), encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise InputError("empty CSV body") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"malformed CSV body: {parser_message(error)}") from None
    return feature_frame(frame, "CSV body").to_numpy()


def prediction_input(config: Config) -> tuple[np.ndarray, dict]:
    """(the feature matrix, the JSON or form body's options) of a /prediction request."""
    arguments = {key: request.args[key] for key in FILE_KEYS if key in request.args}
    body: dict = {}
    if request.method == "POST" and request.content_length != 0 and (request.data or request.form):
        mimetype = request.mimetype
        if mimetype == "application/json":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise InputError("malformed JSON body: expected an object")
        elif mimetype in ("text/csv", "application/csv"):
            return matrix_from_csv(request.get_data()), {}
        elif mimetype == "application/x-www-form-urlencoded":
            body = request.form.to_dict()
        else:
            raise UnsupportedMediaType(f"{mimetype}: send application/json or text/csv")
    if any(key in body for key in ROW_KEYS):
        return matrix_from_json(body), body
    for key in FILE_KEYS:
        if key in body:
            arguments.setdefault(key, body[key])
    if not arguments:
        raise InputError("give a data file (?filepath=testdata/testdata.csv) or rows")
    raw = next(arguments[key] for key in FILE_KEYS if key in arguments)
    return serving.feature_matrix_cached(resolve_data_file(config, raw)), body


def wants(name: str, default: bool = False, body: dict | None = None) -> bool:
    """An on/off option from the query string (or the body): 1, true, yes, on."""
    value = request.args.get(name)
    if value is None and body:
        value = body.get(name)
    if value is None:
        return default
    return str(value).lower() in TRUE


@api.get("/")
def index():
    return jsonify(service="attrition risk model", endpoints=ENDPOINTS)


@api.get("/health")
def health():
    loaded = served_model()
    return jsonify(status="ok", model_version=loaded.version, deployed_at=loaded.deployed.manifest.get("timestamp"),
                   model_sha256=loaded.deployed.sha256)  # fmt: skip


@api.route("/prediction", methods=["GET", "POST"])
def prediction():
    loaded = served_model()
    matrix, body = prediction_input(risk_config())
    predictions, probabilities = loaded.predict(matrix)
    answer = {"predictions": predictions.tolist()}
    if wants("proba", body=body):
        answer["probabilities"] = probabilities.tolist()
    answer["model_version"] = loaded.version
    return jsonify(answer)


@api.get("/scoring")
def scoring():
    loaded = served_model()
    config = risk_config()
    test = server_data(config.testdata_file, labelled=True)
    metrics = riskmodel.evaluate(loaded.deployed.model, test, str(config.testdata_file))
    return jsonify(**metrics, model_version=loaded.version, data=str(config.testdata_file))


@api.get("/summarystats")
def summarystats():
    config = risk_config()
    statistics = diagnostics.summary_statistics(server_data(config.finaldata_file))
    return jsonify(data=str(config.finaldata_file), statistics=statistics)


@api.get("/diagnostics")
def diagnostics_endpoint():
    config = risk_config()
    answer = {}
    if wants("timing", default=True):
        max_age = 0.0 if wants("fresh") else TIMING_MAX_AGE
        ingestion, training = diagnostics.execution_time(config, max_age)
        answer["execution_time_seconds"] = {"ingestion": ingestion, "training": training}
    answer["missing_data_percent"] = diagnostics.missing_percent(server_data(config.finaldata_file))
    answer["dependencies"] = diagnostics.outdated_packages_list(config)
    return jsonify(answer)


@api.get("/runs")
def runs():
    try:
        limit = max(1, min(int(request.args.get("limit", 10)), 1000))
    except ValueError:
        raise InputError("limit must be a whole number") from None
    return jsonify(runs=read_jsonl(risk_config().prod_folder / RUN_HISTORY)[-limit:])


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--host", help="default: api_host of config.json (127.0.0.1)")
    parser.add_argument("--port", type=int, help="default: api_port of config.json (8000)")
    args = parser.parse_args(argv)
    setup_logging(NAME)
    app = create_app()
    warm_up(app)
    config = app.extensions["risk_config"]
    app.run(host=args.host or config["api_host"], port=args.port or config["api_port"], debug=False)
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
