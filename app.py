"""The risk model's JSON API: predictions, scores, summary statistics, diagnostics.

Endpoints (JSON; the contract, with every parameter and error, is GET /openapi.json)
    GET  /health        200 when the served model scores a probe row; 503 when none can be used
    GET|POST /prediction   predictions of the deployed model for a data file (?filepath=), for
                        rows (JSON, a text/csv body) or an uploaded CSV; ?proba=1, ?reasons=1
    GET  /scoring       F1 and other metrics of the deployed model on testdata (or a named file)
    GET  /summarystats  mean, median, mode, std of each numeric column of finaldata.csv
    GET  /diagnostics   timing, missing data, dependency table
    GET  /calllist, /runs, /metrics, /openapi.json   the call list, the last runs, Prometheus
    GET  /              the endpoints; in a browser, the dashboard (/clients, /reports/, /login)
Errors: {"error": code, "message": text} with a 4xx for bad input, 503 while no deployed model
or server data can be used, 500 (one log line, no traceback) for anything else.
The app itself (factory, error mapping, routes, request parsing, auth, dashboard, deadlines):
attrition/api/. Its limits and security: docs/api.md.
Environment
    RISK_API_TOKEN      when set, every endpoint but /health and /openapi.json needs
                        "Authorization: Bearer <token>"
Run
    make serve                      # gunicorn, as in production (wsgi.py, gunicorn.conf.py)
    python app.py [--port 8000]     # Flask's development server, 127.0.0.1 only
"""

from __future__ import annotations

from attrition.api.app import NAME, create_app, warm_up
from attrition.core.logs import command_line, run_main, setup_logging

__all__ = ["create_app"]  # the course's functions, importable from this script as before


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
