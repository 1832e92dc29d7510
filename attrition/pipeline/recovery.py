"""What a run checks and finishes before it decides anything: production's health and repairs
(attrition/production/repair.py), the archive's versions, a killed run's record, a deployment's
reports still to produce, a lost finaldata.csv, and reports that describe another version or older
data than the live ones (attrition/production/versions.py's stamps).
"""

from __future__ import annotations

import json
import time

from attrition.core.errors import PipelineError
from attrition.core.files import atomic_write_json, clear_odd_entry
from attrition.core.names import DIAGNOSTICS, MANIFEST, QUERY_STORE, RISK_RANKING_BASIS, RUN_HISTORY
from attrition.core.processes import file_lock, lock_holder, sweep
from attrition.core.records import append_jsonl, tail_jsonl
from attrition.pipeline.steps import PENDING_REPORT, Busy, Run, ingest, log, report
from attrition.production import repair, stamps, switch, versions
from attrition.reports import riskdb

LOCK_ALARM_SECONDS = 20 * 60  # the deploy lock held longer (two cron periods) is a failure, not "busy"


def recover_run_record(run: Run) -> None:
    """A run that deployed but could not record itself (a full disk): its record, from deployments.jsonl."""
    config = run.config
    deployed = [entry for entry in versions.deployments(config) if entry.get("run_start")]
    if not deployed:
        return
    last = deployed[-1]
    recent = tail_jsonl(config.prod_folder / RUN_HISTORY)
    if any(entry.get("start", "") >= last["run_start"] for entry in recent):
        return
    append_jsonl(
        config.prod_folder / RUN_HISTORY,
        {
            "start": last["run_start"],
            "end": None,
            "decision": f"redeployed (version {last['version']}; this record "
            "was written by the next run: the run's own could not be written)",
            "exit_status": None,
            "deployed_version": last["version"],
            "recorded_by": "next run",
            "steps": [],
            "reasons": [],
        },
    )
    run.reason(
        f"recorded the run of {last['run_start']} that deployed version {last['version']} (its own record "
        "was lost)"
    )


def finish_pending_report(run: Run) -> None:
    """Report on a version whose run was killed (or failed) between deploying it and reporting on it."""
    config = run.config
    path = config.prod_folder / PENDING_REPORT
    clear_odd_entry(path)
    try:
        pending = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except ValueError:
        pending = {"after_version": None, "second": True}
    version = versions.live_version(config)
    if version is None or version == pending.get("after_version"):
        path.unlink(missing_ok=True)  # the deployment itself did not happen: nothing to report
        return
    run.reason(
        f"version {version} went live in an earlier run that stopped before its reports: reporting now"
    )
    run.record["reported_pending_version"] = version
    report(run, bool(pending.get("second", True)))
    path.unlink(missing_ok=True)


def rebuild_missing_data(run: Run) -> None:
    """finaldata.csv gone (deleted, or not a file) while a version is live: ingestion.py rebuilds
    it from the input folder and the kept copies of archived extracts, before anything reads it."""
    config = run.config
    if config.finaldata_file.is_file() or not (config.prod_folder / MANIFEST).is_file():
        return
    run.reason(
        f"{config.relative(config.finaldata_file)} is missing: rebuilding it from the ingested extracts"
    )
    ingest(run)


def refresh_stale_reports(run: Run) -> None:
    """The call list and report describe another version, or other data, than the live ones (a
    rollback whose report refresh was killed or failed, a run killed before reporting): report now."""
    config = run.config
    try:
        state = versions.live(config)
    except PipelineError:
        return  # nothing usable is live: check_production said so
    data = stamps.data_fingerprint(config)
    for script, path, model in (
        ("diagnostics.py", DIAGNOSTICS, False),
        ("reporting.py", RISK_RANKING_BASIS, True),
    ):
        stamp = stamps.read_stamp(config.model_folder / path)
        problem = stamps.stamp_problem(stamp, state, data, model) if stamp is not None and state else None
        if problem is None and path == RISK_RANKING_BASIS and stamp is not None:
            damaged = stamps.derived_problems(config, stamp)  # a person's edit, damage, deletion
            held = {} if damaged else riskdb.basis_of(config.model_folder) or {}
            if damaged:
                problem = "; ".join(damaged) + ": restoring it"
            elif held.get("list_sha256") != stamp.get("list_sha256"):  # deleted, damaged, or older
                problem = f"{QUERY_STORE} does not hold this call list"
        if problem is not None:  # None: nothing live, or no report yet (the bootstrap writes one)
            run.reason(f"{path}: {problem}; running {script} for version {state.version} now")
            run.step(script)


def held(path) -> PipelineError:
    """The deploy lock is held: Busy (try next run), or a failure naming the holder when held too long."""
    holder = lock_holder(path) or {}
    age = time.time() - holder.get("since", time.time())
    who = (
        f"PID {holder.get('pid')} ({holder.get('command') or 'unknown command'})"
        if holder
        else "an unknown process"
    )
    if age > LOCK_ALARM_SECONDS:
        return PipelineError(
            f"{path}: held by {who} for {age / 60:.0f} minutes (more than two cron periods): a stuck "
            "deployment? new data waits until it ends; stop it or let it finish"
        )
    return Busy(f"{path}: a deployment.py run is in progress ({who}); trying again next run")


def check_production(run: Run, force: bool = False) -> bool:
    """Finish or clear what a killed run left in production; stop (ProductionBroken) when the live
    version itself is damaged. Under the deploy lock: a deployment.py run by hand is not half-way."""
    prod = run.config.prod_folder
    with file_lock(prod / switch.LOCK, blocking=False) as lock:
        if lock is None:
            raise held(prod / switch.LOCK)
        try:
            repairs = repair.repair(prod)
        except switch.ProductionBroken as error:
            if not force:
                raise
            run.reason(f"{error}; --force: retraining and deploying a new version without a drift check")
            return False
        run.expected = versions.manifest_digest(prod)  # what this run's decision compares against
        check_archive(run)
    config = run.config
    other = versions.other_checkout(config)
    if other:
        raise PipelineError(other)
    for path in sweep(stamps.written_folders(config)):  # a killed step's temporary files
        repairs.append(f"removed {config.relative(path)}, left by a killed run")
        log.warning("repair: removed %s, left by a killed run", config.relative(path))
    for message in repairs:
        run.record.setdefault("repairs", []).append(message)
    return True


ARCHIVE_CHECKED = "archivecheck.json"  # cache folder: when every archived version was last verified


ARCHIVE_CHECK_HOURS = 24.0


def check_archive(run: Run) -> None:
    """Name a damaged version before a rollback needs it: the rollback target on every run (a few KB
    hashed), every archived version in full once a day (the reference data grows with the data)."""
    config, prod = run.config, run.config.prod_folder
    try:
        manifest = versions.read_manifest(prod)
    except PipelineError:
        return  # nothing live (empty, or repair said why)
    stamp = config.cache_folder / ARCHIVE_CHECKED
    try:
        last = float(json.loads(stamp.read_text(encoding="utf-8"))["checked"])
    except (OSError, ValueError, KeyError, TypeError):
        last = 0.0
    every = time.time() - last > ARCHIVE_CHECK_HOURS * 3600
    problems = repair.archive_problems(prod, manifest, every=every)
    for problem in problems:
        log.warning("%s", problem)
        run.record["reasons"].append(problem)
        run.record.setdefault("archive_problems", []).append(problem)
    if every:
        try:
            atomic_write_json(stamp, {"checked": time.time(), "problems": problems})
        except OSError:
            pass  # checked again next run
