"""The web dashboard: the model's health, its decisions and the clients to call, at a glance.

Server-rendered HTML (templates/, static/dashboard.css), registered by app.py. A page view
reads only what the pipeline wrote (the live version through production/versions.py, the run and
deployment histories, drift.json, diagnostics.json, the call list, finaldata.csv); it never
retrains or rescores. A panel whose file's stamp does not describe the live version and data
says so above it. Charts are inline SVG; nothing is loaded from the internet.

Pages
    /  (a browser: Accept text/html)   now, decisions over time, drift, clients, data
    /clients?q=&sort=&order=&page=     the call list: search, sort, pages of 50
    /clients/<id>                      one client: the reason for its score, its history (links
                                       percent-encode the ID: client_url; /clients/?id= for IDs
                                       a browser would resolve as folders)
    /calllist.csv                      the call list as reporting.py wrote it
    /reports/<version>/<name>.pdf      a version's reports: report.pdf (at deployment), report-<UTC>.pdf
    /login, /logout                    (auth.py) with RISK_API_TOKEN set: the token, once; a
                                       signed session cookie
"""

from __future__ import annotations

import math
from urllib.parse import quote

import pandas as pd
from flask import Blueprint, abort, current_app, render_template, request, send_file, url_for

from attrition.api import serving
from attrition.api.inputs import ascii_whole
from attrition.core.config import Config
from attrition.core.errors import PipelineError
from attrition.core.names import (
    DEPLOYMENT_HISTORY,
    DIAGNOSTICS,
    DRIFT,
    FEATURES,
    INGESTEDFILES,
    REPORT,
    RISK_RANKING,
    RISK_RANKING_BASIS,
    RUN_HISTORY,
    SCORE_METRICS,
    TARGET,
)
from attrition.core.records import last_records, read_ingested_files, read_jsonl
from attrition.production import stamps, versions
from attrition.reports import calllist, riskdb

PAGE_SIZE = 50
SORTS = riskdb.SORTS  # rank, risk, client, change
FEATURE_WORDS = {
    "lastmonth_activity": "Last month's activity",
    "lastyear_activity": "Last year's activity",
    "number_of_employees": "Number of employees",
}

pages = Blueprint("dashboard", __name__, template_folder="templates")


def config() -> Config:
    return current_app.extensions["risk_config"]


def wants_html() -> bool:
    """A browser (text/html asked for explicitly), not curl or a JSON client (*/* or JSON)."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return (
        best == "text/html"
        and request.accept_mimetypes["text/html"] > request.accept_mimetypes["application/json"]
    )


def live_state(cfg: Config) -> dict:
    """The live version (production/versions.py), how it went live, and whether the API can serve it."""
    try:
        state = versions.live(cfg)
    except PipelineError as error:
        return {"state": None, "problem": str(error)}
    if state is None:
        return {"state": None, "problem": None}
    ingested = state.folder / INGESTEDFILES
    live = {
        "state": state,
        "manifest": state.manifest,
        "how": state.how(),
        "problem": None,
        "serving": None,
        "metrics": versions.read_json(state.folder / SCORE_METRICS) or {},
        "decision": state.decision,
        "ingested": read_ingested_files(ingested) if ingested.is_file() else [],
    }
    try:
        served = serving.served_model(cfg.prod_folder)
        live["serving"], live["problem"] = served.version, served.problem
    except PipelineError as error:
        live["problem"] = str(error)
    return live


def stamped(cfg: Config, path, live: dict, model: bool = True) -> tuple[dict, str | None]:
    """(a derived JSON file, None when it describes the live version (model) and the latest data,
    else the words saying what it describes)."""
    value = versions.read_json(path)
    if not isinstance(value, dict):
        return {}, None
    return value, stamps.stamp_problem(
        stamps.stamp_of(value), live.get("state"), stamps.data_fingerprint(cfg), model
    )


def f1_chart(deployments: list[dict], width: int = 640, height: int = 180) -> dict | None:
    """Points of the live version's F1 over time (a step line), scaled into an SVG box."""
    points = [
        (entry.get("timestamp"), entry.get("f1"), entry.get("version"), entry.get("action", "deploy"))
        for entry in deployments
        if isinstance(entry.get("f1"), (int, float))
    ]
    if not points:
        return None
    times = pd.to_datetime([time for time, *_ in points], errors="coerce", utc=True)
    seconds = [(time - times.min()).total_seconds() if not pd.isna(time) else 0.0 for time in times]
    span = max(seconds) or 1.0
    scores = [score for _, score, *_ in points]
    low, high = min(scores) - 0.02, max(scores) + 0.02
    pad = 30

    def x(value):
        return pad + (width - 2 * pad) * (value / span if len(points) > 1 else 0.5)

    def y(value):
        return height - pad - (height - 2 * pad) * (value - low) / (high - low)

    marks = [
        {"x": round(x(sec), 1), "y": round(y(score), 1), "label": f"v{version} {score:.3f}", "action": action}
        for sec, (_, score, version, action) in zip(seconds, points, strict=True)
    ]
    path = []
    for index, mark in enumerate(marks):
        if index:
            path.append(f"L{mark['x']},{marks[index - 1]['y']}")
        path.append(f"{'M' if not index else 'L'}{mark['x']},{mark['y']}")
    if len(marks) == 1:
        path.append(f"L{width - pad},{marks[0]['y']}")
    return {
        "width": width,
        "height": height,
        "path": " ".join(path),
        "marks": marks[-40:],
        "low": round(low, 3),
        "high": round(high, 3),
        "first": str(times.min())[:16],
        "last": str(times.max())[:16],
    }


def histogram_bars(histogram: dict, width: int = 260, height: int = 90) -> dict | None:
    """Reference and latest distributions as side-by-side bars in an SVG box."""
    if not histogram:
        return None
    reference, current = histogram["reference"], histogram["current"]
    top = max(reference + current) or 1.0
    slot = width / len(reference)
    bars = []
    for index, (ref, cur) in enumerate(zip(reference, current, strict=True)):
        for offset, share, kind in ((0.1, ref, "reference"), (0.5, cur, "current")):
            bar = (height - 14) * share / top
            bars.append(
                {
                    "x": round(index * slot + offset * slot, 1),
                    "y": round(height - 14 - bar, 1),
                    "w": round(0.4 * slot, 1),
                    "h": round(bar, 1),
                    "kind": kind,
                }
            )
    edges = histogram["edges"]
    return {"width": width, "height": height, "bars": bars, "low": edges[0], "high": edges[-1]}


@pages.app_template_global()
def client_url(client) -> str:
    """The link to a client's page, every character of the ID percent-encoded ("/" too), so that
    any ID leads to its own page; "." and "..", which a browser would resolve as a folder, and
    IDs with control characters are asked for by query (/clients/?id=)."""
    text = str(client)
    if text in (".", "..") or any(ord(char) < 32 or ord(char) == 127 for char in text):
        return url_for("dashboard.client_by_query", id=text)
    return url_for("dashboard.clients") + "/" + quote(text, safe="")


def call_store(cfg: Config) -> riskdb.Store | None:
    """The query store reporting.py wrote (riskdb.py), or None: none yet, or unreadable (the
    dashboard then says there is no call list; the API's /calllist says why, 503)."""
    try:
        return riskdb.store(cfg.model_folder)
    except PipelineError:
        return None


def report_time(stem: str) -> str:
    """'2026-11-28 22:43:12 UTC' of a later report's name (report-20261128T224312Z)."""
    digits = stem.removeprefix("report-")
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]} {digits[9:11]}:{digits[11:13]}:{digits[13:15]} UTC"


def report_links(cfg: Config, live_version: int | None) -> list[dict]:
    """Every version's reports, newest version first: the one made at its deployment, then each
    later one (new data, a rollback); the live version's newest is marked."""
    links = []
    for version in reversed(versions.archived_versions(cfg.prod_folder)):
        files = stamps.report_files(cfg, version)
        for index, path in enumerate(files):
            links.append(
                {
                    "version": version,
                    "name": path.name,
                    "url": url_for("dashboard.report", version=version, name=path.name),
                    "when": "at deployment" if path.name == REPORT else report_time(path.stem),
                    "live": version == live_version and index == len(files) - 1,
                }
            )
    return links


def overview():
    """The dashboard's main page (app.py's / for a browser)."""
    cfg = config()
    runs = last_records(cfg.prod_folder / RUN_HISTORY, 30)[::-1]
    deployments = read_jsonl(cfg.prod_folder / DEPLOYMENT_HISTORY)
    live = live_state(cfg)
    diagnostics, diagnostics_note = stamped(cfg, cfg.model_folder / DIAGNOSTICS, live, model=False)
    figures, drift_note = stamped(cfg, cfg.model_folder / DRIFT, live)
    comparisons = [
        figures[key] for key in ("triggered", "since_training") if isinstance(figures.get(key), dict)
    ]
    for comparison in comparisons:
        for feature in comparison.get("features", []):
            feature["bars"] = histogram_bars(feature.get("histogram"))
            feature["words"] = FEATURE_WORDS.get(feature["feature"], feature["feature"])
    store = call_store(cfg)
    basis, calls_note = stamped(cfg, cfg.model_folder / RISK_RANKING_BASIS, live)
    return render_template(
        "dashboard.html",
        live=live,
        runs=runs,
        last_run=runs[0] if runs else None,
        chart=f1_chart(deployments),
        deployments=deployments[::-1][:20],
        comparisons=comparisons,
        drift_note=drift_note,
        diagnostics=diagnostics,
        diagnostics_note=diagnostics_note,
        calls_total=None if store is None else store.counts["calls"],
        top=[] if store is None else store.call_list(0, 10),
        lost_count=None if store is None else store.counts["lost"],
        lost_means=calllist.LOST_MEANS,
        basis=basis,
        calls_note=calls_note,
        reports=report_links(cfg, live["state"].version if live.get("state") else None),
        features=FEATURES,
    )


@pages.get("/clients")
def clients():
    """The call list: IDs starting with q (any case), in a sort, a page of 50 (riskdb.py's queries)."""
    cfg = config()
    query = request.args.get("q", "").strip()[:100]
    sort = request.args.get("sort", "rank")
    order = request.args.get("order", "asc")
    if sort not in SORTS or order not in ("asc", "desc"):
        abort(400, "sort must be rank, risk, client or change, and order asc or desc")
    page = ascii_whole(request.args.get("page", "1"))
    if page is None or page < 1:
        abort(400, "page must be a whole number from 1 (digits 0-9)")
    store = call_store(cfg)
    if store is None:
        return render_template(
            "clients.html", rows=[], total=0, query=query, sort=sort, order=order, page=1, pages=0, empty=True
        )
    rows, total, page = store.clients(query, sort, order, page, PAGE_SIZE)
    return render_template(
        "clients.html",
        rows=rows,
        total=total,
        all_total=store.counts["calls"],
        query=query,
        sort=sort,
        order=order,
        page=page,
        pages=max(1, math.ceil(total / PAGE_SIZE)),
        empty=False,
        features=FEATURES,
    )


@pages.get("/clients/<path:client>")
def client_page(client: str):
    """A client: its row of the call list (rank, risk, reason, change) and its rows across extracts."""
    store = call_store(config())
    row = None if store is None else store.client(client)
    history = [] if store is None else store.history(client)
    if row is None and not history:
        abort(404, f"no client {client!r} in the call list or the ingested data")
    lost = row is None and bool(history) and history[-1].get(TARGET) == 1
    return render_template(
        "client.html",
        client=client,
        row=row,
        history=history,
        lost=lost,
        features=FEATURES,
        words=FEATURE_WORDS,
    )


@pages.get("/clients/")
def client_by_query():
    """/clients/?id=: the page of a client whose ID cannot be a path (client_url)."""
    if "id" not in request.args:
        abort(404, "no client named: /clients/?id=<client ID>")
    return client_page(request.args["id"])


@pages.get("/calllist.csv")
def calllist_csv():
    path = config().model_folder / RISK_RANKING
    if not path.is_file():
        abort(404, "no call list yet: run reporting.py (fullprocess.py runs it)")
    return send_file(path, mimetype="text/csv", as_attachment=True, download_name=RISK_RANKING, max_age=0)


@pages.get("/reports/<int:version>/<name>")
def report(version: int, name: str):
    """A version's report: report.pdf (made at its deployment) or a later report-<UTC time>.pdf."""
    path = next((path for path in stamps.report_files(config(), version) if path.name == name), None)
    if path is None:
        abort(404, f"no report {name!r} for version {version}")
    return send_file(path, mimetype="application/pdf", download_name=f"v{version:04d}-{name}", max_age=0)


def is_page(path: str) -> bool:
    """The dashboard's own pages (HTML), which send an unauthenticated browser to /login."""
    return path == "/" or path.startswith(("/clients", "/calllist.csv", "/reports/"))
