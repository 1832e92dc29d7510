"""Prometheus metrics: GET /metrics, the API's own numbers and the pipeline's, for the operators' tools.

Not a script. app.py times and counts every request (start, observe) and answers /metrics with
exposition(). Made with prometheus-client. Under gunicorn (make serve) every worker's numbers
add up: gunicorn.conf.py gives the workers one folder of the server's own (beneath
PROMETHEUS_MULTIPROC_DIR when set), new when the server starts, and marks a worker's files dead
when it exits (the library's multiprocess mode); any other server (python app.py, Flask's test
client) counts in its one process.

Families (the README's Operations section has a scrape block and alert rules)
  the API, per route (the URL rule, never the raw path), summed over workers
    risk_http_requests_total{route, method, status}  route "unmatched": no route (404); "unrouted":
                                                   refused before Flask (deadlines.py's 413)
    risk_http_request_duration_seconds{route}      histogram, 0.5 ms to 30 s
    risk_http_request_bytes_total{route}, risk_http_response_bytes_total{route}
    risk_rows_scored_total{route}                  rows answered by /prediction and /scoring
    risk_http_refused_total{status, reason}        4xx refusals, by the limit or check that
                                                   refused: 413 too large, 400 by kind, 401 ...
  the model each worker serves (one series per worker: the library's pid label)
    risk_served_model_info{version, sha256}        1; 0 for a version the worker served before
    risk_served_model_live_since_timestamp_seconds when that version went live
    risk_served_model_is_live                      1, or 0 while it serves a previous version
  the pipeline, read from what it writes (each file read again only when it changes)
    risk_last_run_start_timestamp_seconds, risk_last_run_duration_seconds,
    risk_last_run_exit_status, risk_last_run_decision{decision} (1 for the last run's kind:
    DECISIONS), risk_last_run_rejected_files, risk_last_successful_run_timestamp_seconds
    risk_live_model_version, risk_live_model_live_since_timestamp_seconds, risk_live_model_forced,
    risk_live_model_score{metric}                  the live version's F1, precision, ... on testdata
    risk_drift_check_score, risk_drift_check_threshold, risk_drift_check_drift
                                                   the last run that checked for drift
    risk_feature_drift_statistic{feature, statistic}, risk_feature_drift{feature}
                                                   drift since training (reporting.py's drift.json)
    risk_call_list_clients                         clients on the call list
  process_* (the library's own) of the worker that answers the scrape.
A scrape reads no file larger than the run history, and that one only from its end.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from attrition.core.config import Config
from attrition.core.errors import PipelineError
from attrition.core.files import file_stamp
from attrition.core.names import DRIFT, MANIFEST, RUN_HISTORY, SCORE_METRICS
from attrition.core.records import last_records
from attrition.production import versions
from attrition.reports import riskdb

disable_created_metrics()  # no *_created series: Prometheus needs none of them
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SCORES = ("f1", "precision", "recall", "accuracy", "roc_auc")
# fullprocess.py's decisions, by the words they start with (the rest names versions and reasons)
DECISIONS = {
    "bootstrapped": "bootstrapped",
    "nothing new": "nothing_new",
    "no drift": "kept_no_drift",
    "gate refused": "kept_gate_refused",
    "redeployed": "redeployed",
    "dry run": "dry_run",
    "failed": "failed",
}

REQUESTS = Counter("risk_http_requests", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram("risk_http_request_duration_seconds", "Time to answer", ["route"], buckets=BUCKETS)
REQUEST_BYTES = Counter("risk_http_request_bytes", "Request body bytes received", ["route"])
RESPONSE_BYTES = Counter("risk_http_response_bytes", "Answer body bytes sent", ["route"])
ROWS_SCORED = Counter("risk_rows_scored", "Client rows scored by the model", ["route"])
REFUSED = Counter("risk_http_refused", "Requests refused (4xx), by what refused them", ["status", "reason"])
SERVED_INFO = Gauge(
    "risk_served_model_info",
    "The model version each worker serves (1), and those it served before (0)",
    ["version", "sha256"],
    multiprocess_mode="liveall",
)
SERVED_SINCE = Gauge(
    "risk_served_model_live_since_timestamp_seconds",
    "When the version a worker serves went live",
    multiprocess_mode="liveall",
)
SERVED_IS_LIVE = Gauge(
    "risk_served_model_is_live",
    "1 when a worker serves the live version, 0 while it serves a previous one",
    multiprocess_mode="liveall",
)

_served_lock = threading.Lock()
_served: dict = {}  # the model this process last reported: {"model": ServedModel, "labels": (version, sha)}


def timestamp(text: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 UTC time as the pipeline writes it ("...Z")."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # any other: "other"


def observe_request(route: str, method: str, status: int, seconds: float, received: int, sent: int) -> None:
    """One answered request. Every label has a bounded set of values (a client choosing a method
    name or a path must not grow the workers' metrics)."""
    REQUESTS.labels(route, method if method in METHODS else "other", str(status)).inc()
    LATENCY.labels(route).observe(seconds)
    REQUEST_BYTES.labels(route).inc(received)
    RESPONSE_BYTES.labels(route).inc(sent)


def install(app) -> None:
    """Time and count every request of a Flask app: call before the app's other hooks, so that its
    clock starts first and its count sees the final answer (Flask runs after_request hooks last to
    first). A refusal's reason is g.refusal, which the app's error answers set."""
    from flask import g, request

    from attrition.api import serving

    def start_clock():
        g.started = time.perf_counter()

    def count_request(response):
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        status = response.status_code
        sent = response.calculate_content_length() if not response.is_streamed else None
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        observe_request(route, request.method, status, seconds, request.content_length or 0, sent or 0)
        if 400 <= status < 500:
            refused(status, g.get("refusal") or "other")
        note_served_model(serving.current_model(app.extensions["risk_config"].prod_folder))
        return response

    app.before_request(start_clock)
    app.after_request(count_request)


def refused(status: int, reason: str) -> None:
    REFUSED.labels(str(status), reason).inc()


def refused_unrouted(status: int, reason: str, method: str) -> None:
    """A request refused before it reached the app (the deadline middleware's 413)."""
    refused(status, reason)
    observe_request("unrouted", method, status, 0.0, 0, 0)


def rows_scored(route: str, rows: int) -> None:
    ROWS_SCORED.labels(route).inc(rows)


def note_served_model(model) -> None:
    """The model this worker serves now (a serving.ServedModel, or None): its gauges, when it changed."""
    with _served_lock:
        if model is None or _served.get("model") is model:
            return
        labels = (str(model.version), model.sha256)
        previous = _served.get("labels")
        if previous is not None and previous != labels:
            SERVED_INFO.labels(*previous).set(0)
        SERVED_INFO.labels(*labels).set(1)
        SERVED_SINCE.set(timestamp(model.manifest.get("timestamp")) or 0)
        SERVED_IS_LIVE.set(1 if model.problem is None else 0)
        _served.update(model=model, labels=labels)


def decision_kind(decision: str | None) -> str:
    text = str(decision or "")
    return next((kind for words, kind in DECISIONS.items() if text.startswith(words)), "other")


def newest(path: Path, *wanted) -> list[dict | None]:
    """For each test of wanted, the newest record of a JSON-lines history for which it is true
    (None: none), in one read from its end, growing until all are found or the history is read."""
    count = 16
    while True:
        records = last_records(path, count)
        found = [next((record for record in reversed(records) if test(record)), None) for test in wanted]
        if all(record is not None for record in found) or len(records) < count:
            return found
        count *= 4


class PipelineCollector:
    """The pipeline's gauges, from the files it writes; worked out again only when one changes."""

    def __init__(self, config: Config):
        self.config = config
        self.lock = threading.Lock()
        self.stamp: tuple | None = None
        self.families: list = []

    def paths(self) -> list[Path]:
        config = self.config
        return [
            config.prod_folder / RUN_HISTORY,
            config.prod_folder / MANIFEST,
            config.model_folder / DRIFT,
            config.model_folder / riskdb.QUERY_STORE,
        ]

    def collect(self):
        stamp = file_stamp(*self.paths())
        with self.lock:
            if stamp != self.stamp:
                self.families, self.stamp = self.read(), stamp
            return list(self.families)

    def read(self) -> list:
        families = []

        def gauge(name: str, text: str, value, labels: dict | None = None, family=None):
            if value is None:
                return family
            if family is None:
                family = GaugeMetricFamily(name, text, labels=list(labels or {}))
                families.append(family)
            family.add_metric(list((labels or {}).values()), float(value))
            return family

        self.runs(gauge)
        self.live(gauge)
        self.drift(gauge)
        try:
            store = riskdb.store(self.config.model_folder)
        except PipelineError:
            store = None
        if store is not None:
            gauge("risk_call_list_clients", "Clients on the call list", store.counts.get("calls"))
        return families

    def runs(self, gauge) -> None:
        """The last run, the last successful one, the last drift check (from the run history's end)."""
        history = self.config.prod_folder / RUN_HISTORY
        last, succeeded, checked = newest(
            history,
            lambda record: True,
            lambda record: record.get("exit_status") in (0, 3),
            lambda record: isinstance(record.get("drift"), dict),
        )
        if last is not None:
            start, end = timestamp(last.get("start")), timestamp(last.get("end"))
            gauge("risk_last_run_start_timestamp_seconds", "When the last fullprocess.py run started", start)
            if start is not None and end is not None:
                gauge("risk_last_run_duration_seconds", "How long the last run took", end - start)
            status = last.get("exit_status")
            gauge("risk_last_run_exit_status", "The last run's exit status (0: success)", status)
            kind = decision_kind(last.get("decision"))
            family = None
            for each in [*dict.fromkeys(DECISIONS.values()), "other"]:
                family = gauge(
                    "risk_last_run_decision",
                    "The last run's decision (1 for its kind)",
                    int(each == kind),
                    {"decision": each},
                    family,
                )
            rejected = len(last.get("rejected_files") or [])
            gauge("risk_last_run_rejected_files", "Input files the last run's ingestion rejected", rejected)
        if succeeded is not None:
            gauge(
                "risk_last_successful_run_timestamp_seconds",
                "When the last successful run ended (exit 0, or 3: some files rejected)",
                timestamp(succeeded.get("end")),
            )
        if checked is not None:
            drift = checked["drift"]
            for name, text, value in (
                ("risk_drift_check_score", "The live model's F1 on the new data", drift.get("new_score")),
                ("risk_drift_check_threshold", "The F1 below which it is drift", drift.get("threshold")),
                ("risk_drift_check_drift", "1 when the check found drift", int(bool(drift.get("drift")))),
            ):
                gauge(name, f"{text} (the last run that checked for drift)", value)

    def live(self, gauge) -> None:
        try:
            state = versions.live(self.config)
        except PipelineError:
            state = None
        if state is None:
            return
        gauge("risk_live_model_version", "The live version", state.version)
        gauge("risk_live_model_live_since_timestamp_seconds", "When it went live", timestamp(state.timestamp))
        gauge(
            "risk_live_model_forced",
            "1 when the live version was deployed past the promotion gate's refusal (--force)",
            1 if state.manifest.get("forced") else 0,
        )
        try:
            scores = json.loads((state.folder / SCORE_METRICS).read_text())
        except (OSError, ValueError):
            return
        family = None
        for metric in SCORES:
            value = scores.get(metric) if isinstance(scores, dict) else None
            if isinstance(value, int | float):
                family = gauge(
                    "risk_live_model_score",
                    "The live version's scores on the test data",
                    value,
                    {"metric": metric},
                    family,
                )

    def drift(self, gauge) -> None:
        try:
            figures = json.loads((self.config.model_folder / DRIFT).read_text())
            features = figures["since_training"]["features"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        statistic = verdict = None
        for feature in features if isinstance(features, list) else []:
            name = str(feature.get("feature"))
            for key, label in (("ks_statistic", "ks"), ("psi", "psi")):
                if isinstance(feature.get(key), int | float):
                    statistic = gauge(
                        "risk_feature_drift_statistic",
                        "Drift of each feature since the live version was trained",
                        feature[key],
                        {"feature": name, "statistic": label},
                        statistic,
                    )
            verdict = gauge(
                "risk_feature_drift",
                "1 when a feature drifted since the live version was trained",
                int(bool(feature.get("drift"))),
                {"feature": name},
                verdict,
            )


_registries: dict[Path, CollectorRegistry] = {}
_registries_lock = threading.Lock()


def registry_for(config: Config) -> CollectorRegistry:
    """The registry /metrics exposes: every worker's numbers (multiprocess mode) or this process's,
    and the pipeline's gauges; one per configuration, made once."""
    with _registries_lock:
        registry = _registries.get(config.path)
        if registry is None:
            folder = os.environ.get(MULTIPROCESS_ENV)
            if folder:
                registry = CollectorRegistry()
                MultiProcessCollector(registry, path=folder)
                ProcessCollector(registry=registry)  # the answering worker's
            else:
                registry = CollectorRegistry()
                registry.register(_Default())
            registry.register(PipelineCollector(config))
            registry = _registries[config.path] = registry
        return registry


class _Default:
    """The library's default registry (this process's metrics and process_*), inside another."""

    def collect(self):
        return REGISTRY.collect()


def exposition(config: Config) -> tuple[bytes, str]:
    """(the text exposition, its content type)."""
    return generate_latest(registry_for(config)), CONTENT_TYPE_LATEST
