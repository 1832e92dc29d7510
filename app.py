"""The risk model's JSON API: predictions, scores, summary statistics, diagnostics.

Endpoints (JSON; the contract, with every parameter and error, is GET /openapi.json)
    GET  /              the endpoints (a cheap route: the benchmarks' floor)
    GET  /health        200 when the served model scores a probe row: its version and sha256;
                        503 when no deployed model can be used
    GET|POST /prediction   predictions of the deployed model for a data file
                        (?filepath= / ?filename=, or JSON {"filepath": ...}) or for
                        rows (JSON {"records": [...]}, MLflow's dataframe_records /
                        dataframe_split, or a text/csv body); ?proba=1 adds risks,
                        ?reasons=1 each row's top reason (calllist.py)
    GET  /scoring       F1 and other metrics of the deployed model on testdata
    GET  /summarystats  mean, median, mode, std of each numeric column of finaldata.csv
    GET  /diagnostics   timing, missing data, dependency table (?timing=0 skips timing;
                        a timing of the same inputs up to 10 minutes old is reused, ?fresh=1)
    GET  /calllist      the call list reporting.py last wrote, a page at a time (?limit=, ?offset=)
    GET  /runs          the last fullprocess.py runs (?limit=N, 1-1000)
    GET  /openapi.json  the OpenAPI 3 document of all of the above
Pages (dashboard.py, for a browser)
    GET  /              the dashboard when the browser asks for text/html; /clients, /clients/<id>,
                        /calllist.csv, /reports/<version>/report.pdf, /login
Errors (mapped once, from the classes of common.py): {"error": code, "message": text}
    400 bad input (InputError), 401 no token, 403 a file outside the data folders,
    404, 405 (with Allow), 413 a body over api_max_body_bytes however it is sent, 415 content
    type, 503 no usable deployed model or server data (Unavailable), 500 anything else,
    with no traceback in the answer and one line in the server's log. Answers are strict
    JSON (never NaN or Infinity) and name files relative to the project, never absolutely.
Limits (config.json)
    api_max_body_bytes, api_max_rows (rows of a request or a data file it names),
    api_max_columns (columns of a CSV, fields of a JSON row): past one, 413 or 400 before
    any parsing that could cost more than the body's size.
Reads
    the files of config.json (or $RISK_CONFIG), config.json itself at creation and the rest
    per request. The model is the live version's numbers (riskmodel.load_linear): the
    server never unpickles. serving.py keeps the model and the data files in memory until
    they change; wsgi.py loads the model when a worker starts.
Environment
    RISK_API_TOKEN      when set, every endpoint but /health and /openapi.json needs
                        "Authorization: Bearer <token>"
Run
    make serve                      # gunicorn, as in production (wsgi.py, gunicorn.conf.py)
    python app.py [--port 8000]     # Flask's development server, 127.0.0.1 only
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import os
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd
from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, request, url_for
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import (
    Forbidden,
    HTTPException,
    NotFound,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

import calllist
import dashboard
import diagnostics
import riskmodel
import serving
from clientdata import check_labelled, feature_frame, read_data_file
from common import (
    DEBUG_ENV,
    FEATURES,
    ID_COLUMN,
    PROJECT_DIR,
    RISK_RANKING,
    RISK_RANKING_BASIS,
    RUN_HISTORY,
    TARGET,
    TOKEN_ENV,
    Config,
    DataUnavailable,
    DeploymentUnavailable,
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
FALSE = ("0", "false", "no", "off")
TIMING_MAX_AGE = 600  # s: the cron period; /diagnostics?fresh=1 always times anew
MAX_PATH_CHARS = 1024  # a data file's location, as given
OPENAPI = PROJECT_DIR / "openapi.json"
ENDPOINTS = [
    "/health",
    "/prediction",
    "/scoring",
    "/summarystats",
    "/diagnostics",
    "/calllist",
    "/runs",
    "/openapi.json",
]
PUBLIC = ("/health", "/openapi.json")  # answered without the token

log = logging.getLogger(NAME)
api = Blueprint("api", __name__)


class StrictJSONProvider(DefaultJSONProvider):
    """Answers are strict JSON: a NaN or an infinity is a bug (500), never an invalid answer."""

    def dumps(self, obj, **kwargs) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def create_app(test_config: dict | None = None) -> Flask:
    """The application. test_config may set RISK_CONFIG (a config path) and API_TOKEN."""
    Flask.json_provider_class = StrictJSONProvider
    app = Flask(__name__)
    app.json.sort_keys = False
    app.config.update(RISK_CONFIG=None, API_TOKEN=os.environ.get(TOKEN_ENV) or None)
    app.config.update(test_config or {})
    config = load_config(app.config["RISK_CONFIG"])
    # one byte more than allowed: Werkzeug then stops a chunked body for us, and read_body says 413
    app.config["MAX_CONTENT_LENGTH"] = config["api_max_body_bytes"] + 1
    app.extensions["risk_config"] = config
    app.extensions["risk_data_roots"] = data_roots(config)  # resolved once: a request pays no realpath
    app.extensions["risk_openapi"] = openapi_document(config)
    app.before_request(check_token)
    app.after_request(json_options)
    app.register_error_handler(PipelineError, pipeline_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
    app.register_blueprint(api)
    app.register_blueprint(dashboard.pages)
    return app


def warm_up(app: Flask) -> None:
    """Load and check the deployed model now, so that a worker's first request does not pay for it."""
    try:
        serving.served_model(app.extensions["risk_config"].prod_folder)
    except PipelineError:
        pass  # serving.served_model logged it, once


def risk_config() -> Config:
    return current_app.extensions["risk_config"]


def served_model() -> serving.ServedModel:
    return serving.served_model(risk_config().prod_folder)


def public(text: str) -> str:
    """text with the server's absolute folders written relative to the project (config.json's folder)."""
    config = risk_config()
    for folder in (config.input_folder, config.output_folder, config.test_data, config.model_folder,
                   config.prod_folder):  # fmt: skip
        text = text.replace(str(folder), config.relative(folder))
    return text.replace(f"{config.path.parent}/", "")


def error_response(status: int, code: str, message: str):
    response = jsonify(error=code, message=public(message))
    response.status_code = status
    return response


def check_token():
    """With a token configured, every endpoint but /health, /openapi.json and /login needs it: as a
    Bearer token, or as the cookie /login sets. A browser without either is sent to /login."""
    token = current_app.config["API_TOKEN"]
    if not token or request.path in PUBLIC or request.path.startswith(("/login", "/static/")):
        return None
    if dashboard.cookie_token_ok(token):
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        if dashboard.is_page(request.path) and dashboard.wants_html():
            return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")), code=303)
        response = error_response(401, "unauthorized", "send Authorization: Bearer <token>")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return None


def json_options(response):
    """OPTIONS answers in JSON too: the methods the route allows."""
    if request.method == "OPTIONS" and response.status_code == 200 and not response.is_json:
        response.set_data(json.dumps({"allow": sorted(response.allow)}))
        response.mimetype = "application/json"
    return response


def pipeline_error(error: PipelineError):
    """The expected failures: each class says its status (400 bad input, 503 unavailable, ...)."""
    if error.http_status >= 500 and not isinstance(error, DeploymentUnavailable):  # serving logged that, once
        log.error("%s %s: %s", request.method, request.path, error)
    return error_response(error.http_status, error.code, str(error))


def http_error(error: HTTPException):
    if dashboard.is_page(request.path) and dashboard.wants_html():  # a person in a browser: a page
        page = render_template("error.html", status=f"{error.code} {error.name}", message=error.description)
        return page, error.code or 500
    code = (error.name or "error").lower().replace(" ", "_")
    response = error_response(error.code or 500, code, error.description or error.name)
    for header, value in error.get_headers():
        if header.lower() != "content-type":  # e.g. Allow on a 405
            response.headers[header] = value
    return response


def unexpected_error(error: Exception):
    log.error("unexpected error on %s %s: %s: %s", request.method, request.path, type(error).__name__,
              str(error)[:300], exc_info=os.environ.get(DEBUG_ENV) == "1")  # fmt: skip
    return error_response(500, "internal_error", "unexpected server error; see the server log")


def data_roots(config: Config) -> list[Path]:
    """The folders /prediction may read: input, ingested, test data, models (not production)."""
    return [folder.resolve() for folder in (config.input_folder, config.output_folder, config.test_data,
                                            config.model_folder)]  # fmt: skip


def resolve_data_file(config: Config, raw) -> Path:
    """A requested data file: inside the data folders (links followed), a CSV, existing, within the limits."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise InputError("filepath must be a non-empty path string")
    if len(raw) > MAX_PATH_CHARS:
        raise InputError(f"filepath is {len(raw):,} characters long; at most {MAX_PATH_CHARS:,}")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("filepath is not valid text (a lone surrogate)") from None
    path = Path(raw.strip())
    try:
        resolved = (path if path.is_absolute() else config.path.parent / path).resolve()
        if not any(resolved.is_relative_to(root) for root in current_app.extensions["risk_data_roots"]):
            raise Forbidden(f"{raw}: outside the data folders (input, ingested, test, models)")
        if resolved.suffix.lower() != ".csv":
            raise Forbidden(f"{raw}: only CSV data files can be read")
        if not resolved.is_file():
            raise NotFound(f"{raw}: no such data file")
        size = resolved.stat().st_size
    except OSError as error:  # a component too long, a loop of links
        raise InputError(f"{raw[:80]}: not a usable path ({error.strerror or error})") from None
    if size > config["api_max_body_bytes"]:
        raise InputError(f"{raw}: {size:,} bytes, more than a request may hold (api_max_body_bytes "
                         f"{config['api_max_body_bytes']:,}); score large files with scoring.py")  # fmt: skip
    return resolved


def server_data(path: Path, labelled: bool = False) -> pd.DataFrame:
    """A data file the server itself relies on: unusable, it is the server's problem (503), not the caller's."""
    try:
        frame = serving.read_csv_cached(path)
        return check_labelled(frame, str(path)) if labelled else frame
    except InputError as error:
        raise DataUnavailable(str(error)) from None


def read_body(limit: int) -> bytes:
    """The whole request body, counted while it is read: over limit bytes, however it is sent, is 413.

    Never parses a truncated body: a chunked body the client cut short, or with a malformed
    chunk, is 400.
    """
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"the body is {request.content_length:,} bytes; at most {limit:,} "
                                    "(api_max_body_bytes)")  # fmt: skip
    chunks, size = [], 0
    try:
        while chunk := request.stream.read(65536):
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLarge(f"the body is over {limit:,} bytes (api_max_body_bytes)")
            chunks.append(chunk)
    except RequestEntityTooLarge as error:
        error.description = f"the body is over {limit:,} bytes (api_max_body_bytes)"
        raise
    except HTTPException:
        raise
    except Exception as error:  # the server's reader: a bad chunk size, a client gone half-way
        raise InputError(f"the request body could not be read ({type(error).__name__})") from None
    if request.content_length is not None and size != request.content_length:
        raise InputError(f"the request body ended after {size:,} of {request.content_length:,} bytes")
    return b"".join(chunks)


def reject_constant(name: str):
    raise InputError(f"malformed JSON body: {name} is not a JSON number")


def parse_json(body: bytes, config: Config) -> dict:
    """A JSON object body, strictly: no NaN or Infinity, at most api_max_rows rows' worth of
    objects and arrays (counted before parsing: what bounds the parser's memory)."""
    containers = body.count(b"{") + body.count(b"[")
    if containers > config["api_max_rows"] + 8:
        raise InputError(f"JSON body: more objects and arrays than api_max_rows ({config['api_max_rows']:,}) "
                         "rows need")  # fmt: skip
    try:
        value = json.loads(body, parse_constant=reject_constant)
    except RecursionError:
        raise InputError("malformed JSON body: nested too deeply") from None
    except UnicodeDecodeError:
        raise InputError("malformed JSON body: not UTF-8 text") from None
    except ValueError as error:
        raise InputError(f"malformed JSON body: {str(error)[:200]}") from None
    if not isinstance(value, dict):
        raise InputError("malformed JSON body: expected an object")
    return value


def check_rows(count: int, config: Config, source: str) -> None:
    if count > config["api_max_rows"]:
        raise InputError(
            f"{source}: {count:,} rows; at most {config['api_max_rows']:,} per request (api_max_rows)"
        )


def plain_count(value) -> bool:
    """A value that needs no parsing: a JSON number in a count's range, or null (missing)."""
    if value is None:
        return True
    if type(value) is int:
        return 0 <= value <= 2**53
    return type(value) is float and math.isfinite(value) and 0 <= value <= 2**53 and value.is_integer()


def id_list(values) -> list[str | None]:
    """Client IDs as given (text; null where a row has none)."""
    return [None if value is None or value != value else str(value) for value in values]


def matrix_from_json(body: dict, config: Config) -> tuple[np.ndarray, list | None]:
    """(the feature matrix, the client IDs if the rows have any) of the JSON row forms: records,
    dataframe_records, dataframe_split."""
    if "records" in body or "dataframe_records" in body:
        records = body.get("records", body.get("dataframe_records"))
        if not isinstance(records, list) or not all(isinstance(row, dict) for row in records):
            raise InputError("records must be a list of objects, one per row")
        check_rows(len(records), config, "records")
        for number, row in enumerate(records, 1):
            if len(row) > config["api_max_columns"]:
                raise InputError(
                    f"records: row {number} has {len(row)} fields; at most {config['api_max_columns']}"
                )
            missing = [column for column in FEATURES if column not in row]
            if missing:
                raise InputError(f"records: row {number} has no {missing[0]} (null marks a missing value)")
        rows = [[row[column] for column in FEATURES] for row in records]
        ids = (
            id_list(row.get(ID_COLUMN) for row in records)
            if any(ID_COLUMN in row for row in records)
            else None
        )
    else:
        split = body["dataframe_split"]
        if not (isinstance(split, dict) and isinstance(split.get("columns"), list)
                and isinstance(split.get("data"), list)):  # fmt: skip
            raise InputError("dataframe_split needs 'columns' and 'data' lists")
        columns = split["columns"]
        if not all(isinstance(column, str) for column in columns):
            raise InputError("dataframe_split: 'columns' must be a list of column names")
        if len(columns) > config["api_max_columns"]:
            raise InputError(f"dataframe_split: {len(columns)} columns; at most {config['api_max_columns']}")
        if len(set(columns)) != len(columns):
            raise InputError("dataframe_split: a column name appears twice")
        missing = [column for column in FEATURES if column not in columns]
        if missing:
            raise InputError(f"dataframe_split: missing feature column {missing[0]}")
        check_rows(len(split["data"]), config, "dataframe_split")
        if not all(isinstance(row, list) and len(row) == len(columns) for row in split["data"]):
            raise InputError("dataframe_split: every row of 'data' needs one value per column")
        positions = [columns.index(column) for column in FEATURES]
        rows = [[row[position] for position in positions] for row in split["data"]]
        at = columns.index(ID_COLUMN) if ID_COLUMN in columns else None
        ids = None if at is None else id_list(row[at] for row in split["data"])
    if all(plain_count(value) for row in rows for value in row):
        # plain numbers (the usual case): straight to NumPy, as a DataFrame costs more than the prediction
        return np.array(rows, dtype=float).reshape(len(rows), len(FEATURES)), ids
    for row in rows:  # text such as "12" is parsed as in a CSV; anything else names itself
        for value in row:
            if isinstance(value, (dict, list, bool)):
                raise InputError(f"JSON rows: {json.dumps(value)[:30]} is not a count")
            if type(value) is int and abs(value) > 2**53:
                raise InputError(f"JSON rows: value too large to hold exactly (above {2**53:,})")
    frame = pd.DataFrame(rows, columns=list(FEATURES), dtype=object)
    return feature_frame(frame, "JSON rows").to_numpy(), ids


def matrix_from_csv(body: bytes, config: Config) -> tuple[np.ndarray, list | None]:
    """(the feature matrix, the client IDs if it has a corporation column) of a CSV body, its size
    checked before pandas reads it."""
    header = body.split(b"\n", 1)[0]
    if header.count(b",") + 1 > config["api_max_columns"]:
        raise InputError(
            f"CSV body: more than {config['api_max_columns']} columns in the header (api_max_columns)"
        )
    check_rows(body.count(b"\n") - 1 + (not body.endswith(b"\n")), config, "CSV body")
    frame = read_data_file(body, name="CSV body")
    ids = id_list(frame[ID_COLUMN].astype(object)) if ID_COLUMN in frame.columns else None
    return feature_frame(frame, "CSV body").to_numpy(), ids


def prediction_input(config: Config) -> tuple[np.ndarray, list | None, dict]:
    """(the feature matrix, the client IDs if the input has them, the JSON or form body's options)
    of a /prediction request."""
    arguments = {key: request.args[key] for key in FILE_KEYS if key in request.args}
    body: dict = {}
    if request.method == "POST":
        data = read_body(config["api_max_body_bytes"])
        if data:
            mimetype = request.mimetype
            if mimetype == "application/json":
                body = parse_json(data, config)
            elif mimetype in ("text/csv", "application/csv"):
                return *matrix_from_csv(data, config), {}
            elif mimetype == "application/x-www-form-urlencoded":
                try:
                    body = dict(parse_qsl(data.decode("utf-8"), strict_parsing=True, max_num_fields=16))
                except (UnicodeDecodeError, ValueError) as error:
                    raise InputError(f"malformed form body ({str(error)[:80]})") from None
            else:
                raise UnsupportedMediaType(
                    f"{mimetype or 'no content type'}: send application/json or text/csv"
                )
    if any(key in body for key in ROW_KEYS):
        if arguments or any(key in body for key in FILE_KEYS):
            raise InputError("give either a data file or rows, not both")
        return *matrix_from_json(body, config), body
    for key in FILE_KEYS:
        if key in body:
            arguments.setdefault(key, body[key])
    if not arguments:
        raise InputError("give a data file (?filepath=testdata/testdata.csv) or rows")
    raw = next(arguments[key] for key in FILE_KEYS if key in arguments)
    path = resolve_data_file(config, raw)
    matrix = serving.feature_matrix_cached(path)
    check_rows(len(matrix), config, config.relative(path))
    return matrix, serving.client_ids_cached(path), body


def wants(name: str, default: bool = False, body: dict | None = None) -> bool:
    """An on/off option from the query string (or the body): 1/0, true/false, yes/no, on/off."""
    value = request.args.get(name)
    if value is None and body:
        value = body.get(name)
    if value is None:
        return default
    text = str(value).lower() if not isinstance(value, bool) else str(int(value))
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise InputError(f"{name} must be 1 or 0 (or true/false, yes/no, on/off), not {str(value)[:20]!r}")


@api.get("/")
def index():
    """The endpoints for a JSON client (curl, apicalls.py, the benchmarks' floor); the dashboard for a browser."""
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
    answer = {"status": "ok" if loaded.problem is None else "serving_previous_version",
              "model_version": loaded.version, "deployed_at": loaded.manifest.get("timestamp"),
              "model_sha256": loaded.sha256}  # fmt: skip
    if loaded.problem is not None:
        answer["problem"] = public(loaded.problem)
    return jsonify(answer)


@api.route("/prediction", methods=["GET", "POST"])
def prediction():
    config = risk_config()
    loaded = served_model()
    matrix, ids, body = prediction_input(config)
    proba, explain = wants("proba", body=body), wants("reasons", body=body)
    predictions, probabilities = loaded.predict(matrix)
    answer = {"predictions": predictions.tolist()}
    if ids is not None:
        answer["corporations"] = ids
    if proba:
        answer["probabilities"] = probabilities.tolist()
    if explain:
        answer["reasons"] = calllist.reasons(loaded.scorer, matrix)[0]
    answer["model_version"] = loaded.version
    return jsonify(answer)


@api.get("/scoring")
def scoring():
    loaded = served_model()
    config = risk_config()
    test = server_data(config.testdata_file, labelled=True)
    predicted, probability = loaded.predict(feature_frame(test, str(config.testdata_file)).to_numpy())
    metrics = riskmodel.classification_metrics(test[TARGET].to_numpy(), predicted, probability)
    return jsonify(**metrics, model_version=loaded.version, data=config.relative(config.testdata_file))


@api.get("/summarystats")
def summarystats():
    config = risk_config()
    statistics = diagnostics.summary_statistics(server_data(config.finaldata_file))
    return jsonify(data=config.relative(config.finaldata_file), statistics=statistics)


@api.get("/diagnostics")
def diagnostics_endpoint():
    config = risk_config()
    timing, fresh = wants("timing", default=True), wants("fresh")
    answer = {}
    if timing:
        ingestion, training = diagnostics.execution_time(config, 0.0 if fresh else TIMING_MAX_AGE)
        answer["execution_time_seconds"] = {"ingestion": ingestion, "training": training}
    answer["missing_data_percent"] = diagnostics.missing_percent(server_data(config.finaldata_file))
    answer["dependencies"] = diagnostics.outdated_packages_list(config)
    return jsonify(answer)


@api.get("/calllist")
def call_list():
    """The call list reporting.py last wrote (riskranking.csv), a page at a time: what the team calls from."""
    config = risk_config()
    limit, offset = whole_number("limit", 50, 1, 1000), whole_number("offset", 0, 0, 10**9)
    path = config.model_folder / RISK_RANKING
    frame = server_data(path)
    if ID_COLUMN not in frame.columns or "exit_probability" not in frame.columns:
        raise DataUnavailable(f"{config.relative(path)}: not a call list; run reporting.py")
    try:
        basis = json.loads((config.model_folder / RISK_RANKING_BASIS).read_text())
    except (OSError, ValueError):
        basis = {}
    page = frame.iloc[offset : offset + limit].astype(object)
    rows = [{key: None if value != value else value.item() if hasattr(value, "item") else value
             for key, value in row.items()} for row in page.to_dict(orient="records")]  # fmt: skip
    return jsonify(model_version=basis.get("model_version"), written=basis.get("written"),
                   data=basis.get("data"), total=len(frame), offset=offset, rows=rows)  # fmt: skip


def whole_number(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query option within [low, high]; anything else is 400."""
    raw = request.args.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InputError(f"{name} must be a whole number from {low} to {high:,}, not {raw[:20]!r}")
    return int(raw)


@api.get("/runs")
def runs():
    limit = whole_number("limit", 10, 1, 1000)
    return jsonify(runs=read_jsonl(risk_config().prod_folder / RUN_HISTORY)[-limit:])


def openapi_document(config: Config) -> dict:
    """openapi.json with this server's limits filled in."""
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    limits = {"api_max_body_bytes": config["api_max_body_bytes"], "api_max_rows": config["api_max_rows"],
              "api_max_columns": config["api_max_columns"]}  # fmt: skip
    document["info"]["x-limits"] = limits
    return document


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
