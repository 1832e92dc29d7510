"""The API's application: the factory, the error mapping, the answers' headers and paths.
The routes are in routes.py.

Endpoints (JSON; the contract, with every parameter and error, is GET /openapi.json)
    GET  /              the endpoints (a cheap route: the benchmarks' floor)
    GET  /health        200 when the served model scores a probe row: its version and sha256;
                        503 when no deployed model can be used
    GET|POST /prediction   predictions of the deployed model for a data file (?filepath=, or
                        any name of inputs.FILE_KEYS, as query, form or JSON field; none:
                        the configured test data), for rows (JSON {"records": [...]},
                        MLflow's dataframe_records / dataframe_split, a text/csv body) or an
                        uploaded CSV (multipart); ?proba=1 adds risks, ?reasons=1 each row's
                        top reason (calllist.py)
    GET  /scoring       F1 and other metrics of the deployed model on testdata (or a named file)
    GET  /summarystats  mean, median, mode, std of each numeric column of finaldata.csv (or a
                        named file)
    GET  /diagnostics   timing, missing data, dependency table (?timing=0 skips timing;
                        a timing of the same inputs up to 10 minutes old is reused, ?fresh=1)
    GET  /calllist      the call list reporting.py last wrote, a page at a time (?limit=, ?offset=)
    GET  /runs          the last fullprocess.py runs (?limit=N, 1-1000)
    GET  /metrics       Prometheus' text format: requests, latency, refusals, rows scored, the
                        model each worker serves, the pipeline's last run, scores and drift
                        (metrics.py; behind the token when one is set)
    GET  /openapi.json  the OpenAPI 3 document of all of the above
Pages (dashboard.py, for a browser)
    GET  /              the dashboard when the browser asks for text/html; /clients, /clients/<id>,
                        /calllist.csv, /reports/<version>/<report>.pdf, /login (auth.py)
Errors (mapped once, from the classes of core/errors.py): {"error": code, "message": text}
    400 bad input (InputError) or a Host off the allowlist, 401 no token, 403 a file outside
    the data folders, 404, 405 (with Allow), 408 a body late (deadlines.py), 413 a body over
    api_max_body_bytes however it is sent, 415 content type, 429 failed sign-ins, 431 an
    Accept-like header over 1,024 characters, 503 no usable deployed model or server data
    (Unavailable), 500 anything else, with no traceback in the answer and one line in the
    server's log. Answers are strict JSON (never NaN or Infinity), whatever Accept asks for,
    carry the security headers, and name files relative to the project, never absolutely
    (hide_paths).
Limits (config.json)
    api_max_body_bytes, api_max_rows (rows of a request or a data file it names),
    api_max_columns (columns of a CSV, fields of a JSON row): past one, 413 or 400 before
    any parsing that could cost more than the body's size.
Homes
    this file: the factory, the error mapping, the answers' headers; served_app (what wsgi.py
    serves) loads the model when a worker starts and puts deadlines.py's bounds on each request's
    body and answer. routes.py: the routes, which call the course's functions
    (monitoring/diagnostics.py, timing.py, dependencies.py; model/scoring.py) with the live
    version's numbers (riskmodel.load_linear: the server never unpickles) and the data files from
    serving.py's per-process caches. Reading a request: inputs.py. The token
    and the login session: auth.py. Pages: dashboard.py.
"""

from __future__ import annotations

import json
import logging
import os

from flask import Flask, Response, current_app, g, render_template, request
from flask.json.provider import DefaultJSONProvider
from markupsafe import escape
from werkzeug.exceptions import HTTPException, SecurityError
from werkzeug.routing import IntegerConverter

from attrition.api import auth, dashboard, metrics, serving
from attrition.api.deadlines import SECURITY_HEADERS, Deadlines
from attrition.api.inputs import data_roots
from attrition.api.routes import api
from attrition.core.config import Config, load_config
from attrition.core.errors import DeploymentUnavailable, PipelineError, error_body
from attrition.core.names import DEBUG_ENV, PROJECT_DIR, TOKEN_ENV

NAME = "app"
OPENAPI = PROJECT_DIR / "openapi.json"

LOOPBACK_HOSTS = ("localhost", "127.0.0.1")  # (Werkzeug cannot match an IPv6 literal Host)
# Accept-like headers are parsed by Werkzeug at about ten times their size in CPU: a browser's
# are under 300 characters; longer ones are refused (431) before any content negotiation.
BOUNDED_HEADERS = ("Accept", "Accept-Encoding", "Accept-Language", "Accept-Charset")
MAX_NEGOTIATED_HEADER = 1024

log = logging.getLogger(NAME)


class StrictJSONProvider(DefaultJSONProvider):
    """Answers are strict JSON: a NaN or an infinity is a bug (500), never an invalid answer."""

    def dumps(self, obj, **kwargs) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


class AsciiInteger(IntegerConverter):
    """<int:...> in a path is ASCII digits only, as every numeric parameter here: Werkzeug's own
    matches any Unicode digit ("/reports/\u0661/" read as version 1)."""

    regex = r"[0-9]+"


def create_app(test_config: dict | None = None) -> Flask:
    """The application. test_config may set RISK_CONFIG (a config path) and API_TOKEN."""
    app = Flask(__name__)
    app.url_map.converters["int"] = AsciiInteger  # before any rule is bound
    app.json = StrictJSONProvider(app)  # this app's answers only: Flask's class is left as it is
    app.json.sort_keys = False
    app.config.update(RISK_CONFIG=None, API_TOKEN=os.environ.get(TOKEN_ENV) or None)
    app.config.update(test_config or {})
    config = load_config(app.config["RISK_CONFIG"])
    # one byte more than allowed: Werkzeug then stops a chunked body for us, and read_body says 413
    app.config["MAX_CONTENT_LENGTH"] = config["api_max_body_bytes"] + 1
    app.extensions["risk_config"] = config
    app.extensions["risk_data_roots"] = data_roots(config)  # resolved once: a request pays no realpath
    app.extensions["risk_openapi"] = openapi_document(config)
    app.extensions["risk_paths"] = path_replacements(config)
    serving.own_files(config.testdata_file, config.finaldata_file)  # never evicted by request files
    # Host allowlist (Flask checks request.host against it: 400 otherwise): a DNS-rebinding page
    # in the operator's browser names its own host, so it cannot read this server's answers.
    app.config["TRUSTED_HOSTS"] = trusted_hosts(config)
    auth.setup(app)
    metrics.install(app)  # first: a request the next hooks refuse is counted too, with its final answer
    app.before_request(check_headers)
    app.before_request(auth.check_token)
    app.after_request(json_options)
    app.after_request(security_headers)
    app.after_request(hide_paths)
    app.register_error_handler(PipelineError, pipeline_error)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
    app.register_blueprint(api)
    app.register_blueprint(dashboard.pages)
    return app


def trusted_hosts(config: Config) -> list[str]:
    """The Host names this server answers: the loopback names, api_host and api_allowed_hosts."""
    hosts = [*LOOPBACK_HOSTS, config["api_host"], *config["api_allowed_hosts"]]
    return [host for host in dict.fromkeys(hosts) if host not in ("0.0.0.0", "::")]


def check_headers():
    """Before anything reads them: headers whose parsing costs more than their size are refused."""
    for header in BOUNDED_HEADERS:
        value = request.headers.get(header, "")
        if len(value) > MAX_NEGOTIATED_HEADER:
            message = f"{header} is {len(value):,} characters; at most {MAX_NEGOTIATED_HEADER:,}"
            return error_response(431, "request_header_fields_too_large", message)
    return None


def security_headers(response):
    """Every answer: not sniffed, never framed, no referrer; client data never kept in a cache."""
    for header, value in SECURITY_HEADERS.items():
        response.headers.setdefault(header, value)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


def warm_up(app: Flask) -> None:
    """Load and check the deployed model now, so that a worker's first request does not pay for it."""
    try:
        metrics.note_served_model(serving.served_model(app.extensions["risk_config"].prod_folder))
    except PipelineError:
        pass  # serving.served_model logged it, once


def path_replacements(config: Config) -> list[tuple[bytes, bytes]]:
    """(an absolute path as an answer may spell it, the same relative to config.json's folder),
    longest first: the configured folders, config.json's folder and the code's folder, each as
    plain text, inside a JSON string and inside HTML."""
    pairs = {
        str(folder): config.relative(folder)
        for folder in (
            config.input_folder,
            config.output_folder,
            config.test_data,
            config.model_folder,
            config.prod_folder,
        )
    }
    pairs.update({f"{config.path.parent}/": "", f"{PROJECT_DIR}/": ""})
    spelled = {}
    for absolute, relative in pairs.items():
        for spell in (str, lambda text: json.dumps(text)[1:-1], lambda text: str(escape(text))):
            spelled[spell(absolute).encode()] = spell(relative).encode()
    return sorted(spelled.items(), key=lambda pair: -len(pair[0]))


def hide_paths(response):
    """Every answer and page names files relative to the project, never absolutely (a client
    learns nothing of the server's disk): run records, problems and errors alike."""
    if response.direct_passthrough or response.is_streamed:  # files sent as they are (PDF, CSV)
        return response
    data = changed = response.get_data()
    for absolute, relative in current_app.extensions["risk_paths"]:
        if absolute in changed:
            changed = changed.replace(absolute, relative)
    if changed is not data:
        response.set_data(changed)
    return response


def error_response(status: int, code: str, message: str, reason: str | None = None):
    """The JSON error answer; reason (default: code) is what the refusal counter calls it."""
    g.refusal = reason or code
    return Response(error_body(code, message), status=status, mimetype="application/json")


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
    return error_response(error.http_status, error.code, str(error), getattr(error, "reason", None))


def http_error(error: HTTPException):
    # a person in a browser gets a page; not for a Host off the allowlist (no links can be made)
    code = (error.name or "error").lower().replace(" ", "_")
    if not isinstance(error, SecurityError) and dashboard.is_page(request.path) and dashboard.wants_html():
        g.refusal = code
        page = render_template("error.html", status=f"{error.code} {error.name}", message=error.description)
        return page, error.code or 500
    response = error_response(error.code or 500, code, error.description or error.name)
    for header, value in error.get_headers():
        if header.lower() != "content-type":  # e.g. Allow on a 405
            response.headers[header] = value
    return response


def unexpected_error(error: Exception):
    log.error(
        "unexpected error on %s %s: %s: %s",
        request.method,
        request.path,
        type(error).__name__,
        str(error)[:300],
        exc_info=os.environ.get(DEBUG_ENV) == "1",
    )
    return error_response(500, "internal_error", "unexpected server error; see the server log")


def openapi_document(config: Config) -> dict:
    """openapi.json with this server's limits filled in."""
    document = json.loads(OPENAPI.read_text(encoding="utf-8"))
    limits = {
        "api_max_body_bytes": config["api_max_body_bytes"],
        "api_max_rows": config["api_max_rows"],
        "api_max_columns": config["api_max_columns"],
    }
    document["info"]["x-limits"] = limits
    return document


def served_app(test_config: dict | None = None) -> Deadlines:
    """The app as gunicorn serves it (wsgi.app): the model loaded before the first request, inside
    the deadlines on the socket (deadlines.py)."""
    flask_app = create_app(test_config)
    warm_up(flask_app)
    return Deadlines(flask_app, flask_app.extensions["risk_config"], metrics.refused_unrouted)
