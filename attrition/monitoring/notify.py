"""Alerts: tell people of the runs that matter, each message typed as a failure, warning or success.

Not a script; fullprocess.py calls notify() once per run.
    notify_urls (apprise: e-mail, Slack, Teams, ntfy, webhooks, ...) get one message per run that
    matters, with apprise's type, which the services show as a colour or an icon:
        failure   a run that failed (the message says what is live)
        warning   rejected input files, drift the gate kept out, a repair of production, a
                  report finished for an earlier run
        success   a deployment (bootstrapped or redeployed) with nothing to warn of
    A quiet run (nothing new, no drift, another run holding the lock) sends nothing.
    heartbeat_url is fetched after every run, with "/fail" appended after a failed one: a
    dead-man's switch (healthchecks.io and the like).
Bounded by notify_timeout_seconds in all, in daemon threads; a failure to notify is a warning in
the log and never changes the run's exit status.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from attrition.core.config import Config
from attrition.core.errors import EXIT_LOCKED, EXIT_PARTIAL
from attrition.core.names import RUN_HISTORY
from attrition.production import versions

FAILURE, WARNING, SUCCESS = "failure", "warning", "success"  # apprise's NotifyType values

log = logging.getLogger("notify")


def kind(record: dict) -> str | None:
    """The type of a run's message, or None for a run nobody needs to hear of."""
    decision = record["decision"]
    if record["exit_status"] not in (0, EXIT_PARTIAL, EXIT_LOCKED) or decision.startswith("failed"):
        return FAILURE
    if (
        record.get("rejected_files")
        or record.get("repairs")
        or record.get("reported_pending_version")
        or decision.startswith(("gate refused", "superseded"))
    ):
        return WARNING
    if decision.startswith(("bootstrapped", "redeployed")):
        return SUCCESS
    return None


def message(config: Config, record: dict) -> tuple[str, str]:
    """(title, body) of a run's notification: short, and true of the state the run left."""
    live = versions.live_version(config)
    title = f"risk model: {record['decision']}"[:200]
    lines = [
        f"{record['decision']} (exit {record['exit_status']}); "
        + (f"version {live} is live." if live is not None else "no version is live.")
    ]
    drift = record.get("drift")
    if drift:
        lines.append(
            f"Drift ({drift['test_used']}): F1 {drift['new_score']:.4f} on the new data vs threshold "
            f"{drift['threshold']:.4f}: {'drift' if drift['drift'] else 'no drift'}."
        )
    gate = record.get("gate")
    if gate:
        lines.append(
            f"Gate: candidate F1 {gate['candidate_f1']:.4f} vs deployed {gate['deployed_f1']:.4f}: "
            f"{'passed' if gate['passed'] else 'failed'}."
        )
    for entry in record.get("rejected_files", [])[:5]:
        lines.append(f"Rejected {entry['name']}: {'; '.join(entry.get('reasons', []))[:200]}")
    for repair in record.get("repairs", [])[:5]:
        lines.append(f"Repaired: {repair}")
    lines.append(
        f"Host {os.uname().nodename}, production {config.relative(config.prod_folder)}; "
        f"details: {config.relative(config.prod_folder / RUN_HISTORY)}."
    )
    return title, "\n".join(lines)


def notify(config: Config, record: dict) -> None:
    """Tell notify_urls of a run that matters, and ping heartbeat_url after every run."""
    timeout = config["notify_timeout_seconds"]
    jobs = []
    type_ = kind(record)
    if config["notify_urls"] and type_ is not None:
        jobs.append(("notification", lambda: send(config, *message(config, record), type_)))
    if config["heartbeat_url"]:
        failed = record["exit_status"] not in (0, EXIT_PARTIAL, EXIT_LOCKED)
        url = config["heartbeat_url"].rstrip("/") + ("/fail" if failed else "")
        jobs.append(("heartbeat", lambda: ping(url, timeout)))
    deadline = time.monotonic() + timeout
    for name, job in jobs:
        outcome = []
        worker = threading.Thread(
            target=lambda job=job, outcome=outcome: outcome.append(attempt(job)), daemon=True
        )
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.warning(
                "%s: not sent within notify_timeout_seconds (%g s); the run is unaffected", name, timeout
            )
        elif outcome and outcome[0]:
            log.warning("%s: not sent (%s); the run is unaffected", name, outcome[0])


def attempt(job) -> str | None:
    """None when job() succeeded, else why not."""
    try:
        return job()
    except Exception as error:  # a notification must never fail the run
        return f"{type(error).__name__}: {error}"[:300]


def send(config: Config, title: str, body: str, type_: str) -> str | None:
    """One message to every notify_url, with its apprise type; None when delivered, else why not."""
    import apprise  # only when there is something to send: its import costs a tenth of a second

    sender = apprise.Apprise()
    for url in config["notify_urls"]:
        if not sender.add(url):
            return f"{url.split(':', 1)[0]}://...: not an apprise URL apprise can use"
    delivered = sender.notify(title=title, body=body, notify_type=apprise.NotifyType(type_))
    return None if delivered else "apprise reported a failed delivery (see its log)"


def ping(url: str, timeout: float) -> str | None:
    import urllib.request  # only when there is a heartbeat to send (see attrition/api/server.api_health)

    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (the operator's URL)
        answer.read(1024)
    return None
