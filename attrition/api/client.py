"""The API's client, as apicalls.py uses it: the four course endpoints called in turn, after /health
says the server serves this production folder's live version.
"""

from __future__ import annotations

import logging

import requests

from attrition.core.errors import PipelineError, Unavailable
from attrition.core.records import utc_now
from attrition.production import stamps

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
    if not stamps.serves_live_version(health, manifest):
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
