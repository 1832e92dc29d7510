"""Call the API's four endpoints and save their combined answers.

Reads
    the running API (--url, default http://api_host:api_port of config.json), after checking
    with /health that it serves this production folder's live version (manifest.json).
Writes (output_model_path, atomically)
    apireturns.txt   one JSON document: {"prediction": ..., "scoring": ...,
                     "summarystats": ..., "diagnostics": ...}; --output picks another
                     name (apireturns2.txt, as the course asks after a redeploy)
Run
    make serve &                 # or: python app.py
    python apicalls.py
    python apicalls.py --output apireturns2.txt --url http://127.0.0.1:8000
Environment
    RISK_API_TOKEN    sent as "Authorization: Bearer <token>" when set
Exit status
    0 saved; 69 the API did not answer; 1 it answered with an error, or it serves another
    deployment than this production folder's (one line says which);
    78 bad config.json; 2 a usage error.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import requests

from attrition.core.config import load_config
from attrition.core.errors import PipelineError, Unavailable
from attrition.core.files import atomic_write_text
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import APIRETURNS, TOKEN_ENV
from attrition.core.records import utc_now
from attrition.production import versions

NAME = "apicalls"

log = logging.getLogger(NAME)


def call(session: requests.Session, method: str, url: str, timeout: float, **kwargs) -> dict:
    """One endpoint's JSON answer; no answer, or an error status, is a PipelineError saying which."""
    try:
        response = session.request(method, url, timeout=timeout, **kwargs)
    except requests.ConnectionError:
        base = url.split("/", 3)[:3]
        raise Unavailable(
            f"{'/'.join(base)}: the API does not answer; start it with `make serve` (or `python app.py`)"
        ) from None
    except requests.Timeout:
        raise Unavailable(f"{url}: no answer within {timeout:g} s") from None
    try:
        body = response.json()
    except ValueError:
        raise PipelineError(f"{url}: HTTP {response.status_code}, not a JSON answer") from None
    if response.status_code != 200:
        message = body.get("message") if isinstance(body, dict) else body
        raise PipelineError(f"{url}: HTTP {response.status_code}: {message}")
    return body


def check_deployment(health: dict, manifest: dict | None, url: str) -> None:
    """Refuse a server that serves another deployment than this production folder's live one."""
    if manifest is None:
        return  # nothing deployed here: the endpoints will say so
    if not versions.serves_live_version(health, manifest):
        raise PipelineError(
            f"{url}: the API serves model version {health.get('model_version')} deployed at "
            f"{health.get('deployed_at')}, not this production folder's live version {manifest['version']} "
            f"deployed at {manifest.get('timestamp')} (another checkout's server?); "
            "its answers are not recorded"
        )


def call_all(
    base_url: str,
    data_file: str,
    token: str | None = None,
    timeout: float = 300.0,
    manifest: dict | None = None,
) -> dict:
    """The four endpoints' answers, combined, once /health shows the server serves manifest's version."""
    base_url = base_url.rstrip("/")
    with requests.Session() as session:
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        check_deployment(call(session, "GET", f"{base_url}/health", timeout), manifest, base_url)
        return {
            "timestamp": utc_now(),
            "url": base_url,
            "prediction": call(
                session, "POST", f"{base_url}/prediction", timeout, json={"filepath": data_file}
            ),
            "scoring": call(session, "GET", f"{base_url}/scoring", timeout),
            "summarystats": call(session, "GET", f"{base_url}/summarystats", timeout),
            "diagnostics": call(session, "GET", f"{base_url}/diagnostics", timeout),
        }


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--url", help="the API's address (default: http://api_host:api_port of config.json)")
    parser.add_argument("--output", default=APIRETURNS, help="file name in output_model_path (%(default)s)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per call (%(default)s)")
    args = parser.parse_args(argv)
    if Path(args.output).name != args.output:
        parser.error(f"--output {args.output!r}: give a file name (it goes to output_model_path)")
    setup_logging(NAME)
    config = load_config()
    url = args.url or f"http://{config['api_host']}:{config['api_port']}"
    testdata = config.testdata_file
    try:
        data_file = str(testdata.relative_to(config.path.parent))
    except ValueError:
        data_file = str(testdata)
    manifest = versions.current_manifest(config.prod_folder)
    answers = call_all(url, data_file, os.environ.get(TOKEN_ENV), args.timeout, manifest)
    target = config.model_folder / args.output
    atomic_write_text(target, json.dumps(answers, indent=2) + "\n")
    log.info(
        "%d predictions, F1 %.4f from %s; wrote %s",
        len(answers["prediction"]["predictions"]),
        answers["scoring"]["f1"],
        url,
        target,
    )
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
