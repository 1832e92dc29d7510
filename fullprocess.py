"""The unattended loop: new data -> ingest -> drift check -> retrain -> gate -> redeploy -> report.

cron runs it every 10 minutes (crontab.txt). It chains the other scripts as subprocesses
(each bounded by step_timeout_seconds) and explains every decision in its log.

1. New data: every *.csv of input_folder_path whose name is not in the deployed
   ingestedfiles.txt and was not already decided on, or whose content changed (size and
   mtime, then sha256, against the ingestion record). None: one log line, exit 0. This
   path imports no data library.
2. ingestion.py.
3. Drift (drift.py): the deployed model's F1 on the new finaldata.csv (scoring.py --deployed)
   against the deployed latestscore.txt (its sha256 verified), by drift_test (raw, parametric,
   nonparametric). No drift: recorded; diagnostics, call list and report refreshed on the new
   data; exit 0.
4. training.py, scoring.py: the candidate and its F1 on testdata.
5. Gate (promotion_gate, default on): redeploy only when the candidate's F1 is not below
   the deployed model's; otherwise keep it, record why, and refresh the call list and report.
6. deployment.py, with decision.json (why) beside the model it deploys, and the manifest
   digest the drift test and the gate compared against: when a person rolled back or deployed
   meanwhile, that change stands, nothing is deployed ("superseded", exit 0, a warning) and the
   next run decides afresh on the same files.
7. diagnostics.py, reporting.py and apicalls.py for the new deployment: after a redeploy
   they write confusionmatrix2.png and apireturns2.txt, after the first deployment
   confusionmatrix.png and apireturns.txt. When no API serves the live version at
   api_host:api_port, a temporary gunicorn (apiserver.py) serves the calls.
An empty production folder is bootstrapped: ingest, train, score, deploy, report (a missing
or damaged manifest.json is not empty: deployment.py's repair restores it from the archive).
One configuration per run: config.json is read once and every step gets that text (an edit
takes effect from the next run). Every run checks the sha256 of the live files a decision reads.
What a killed run started, the next one finishes: production's repairs (deployment.py), a
killed step's temporary files in every folder the pipeline writes, a deployment's reports, and
reports that describe another version or older data than the live ones (production.py's stamps).

Reads/writes
    the other scripts' files; in prod_deployment_path: runhistory.jsonl (one JSON line per run),
    fullprocess.log, processedfiles.json (the input files decided on), .fullprocess.lock;
    decision.json beside a model it deploys (why). Tells people through notify.py.
Run
    python fullprocess.py              # what cron runs
    python fullprocess.py --dry-run    # say what would happen, change nothing
    python fullprocess.py --force      # retrain and redeploy whatever drift and gate say
    python fullprocess.py --summary    # the last run: its decision, the files it wrote, what next
Exit status
    0 success (also: nothing new, no drift, the gate kept the deployed model)
    3 success, but ingestion rejected some input files (named in the log and the run record)
    1 a step failed, production is broken, another checkout's production folder, or the deploy
      lock held for more than 20 minutes (the line names the holder and says what is live)
    74 a disk filled up (the line names the file, the run history and the log included; a
      deployment whose run record was lost is recorded by the next run)
    75 another run holds a lock (a deployment by hand: for less than 20 minutes)
    78 bad config.json; 2 a usage error
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time

import deployment
from attrition.api import server
from attrition.core.config import Config, load_config
from attrition.core.errors import EXIT_LOCKED, EXIT_PARTIAL, DiskFull, PipelineError, disk_full
from attrition.core.files import atomic_write_json, clear_odd_entry
from attrition.core.logs import LogFileHandler, command_line, run_main, setup_logging
from attrition.core.names import (
    APIRETURNS,
    APIRETURNS_AFTER_REDEPLOY,
    CONFUSION_MATRIX,
    CONFUSION_MATRIX_AFTER_REDEPLOY,
    DECISION,
    DIAGNOSTICS,
    INGESTION_RECORD,
    LATESTSCORE,
    MANIFEST,
    MODEL,
    PROJECT_DIR,
    QUERY_STORE,
    RISK_RANKING_BASIS,
    RUN_HISTORY,
)
from attrition.core.processes import die_with_parent, file_lock, lock_holder, sweep
from attrition.core.records import append_jsonl, list_csv_files, read_score, sha256_file, tail_jsonl, utc_now
from attrition.model import decisions
from attrition.monitoring import notify
from attrition.pipeline import newdata
from attrition.production import versions
from attrition.reports import riskdb

NAME = "fullprocess"
FULLPROCESS_LOG = "fullprocess.log"  # the runs' log (prod_deployment_path)
LOCK = ".fullprocess.lock"
LOCK_ALARM_SECONDS = 20 * 60  # the deploy lock held longer (two cron periods) is a failure, not "busy"
PENDING_REPORT = "pendingreport.json"  # a deployment's reports still to produce (a killed run's)
SWITCHES = {
    "--force": "retrain and redeploy whatever drift and gate say",
    "--dry-run": "say what would happen, change nothing",
    "--summary": "print what the last run decided and wrote, and what to do next; run nothing",
}

log = logging.getLogger(NAME)


class StepFailed(PipelineError):
    """A step (a child script) failed or timed out."""


class Busy(PipelineError):
    """Production is being changed by another process (a deployment.py run by hand): try later."""

    exit_code = EXIT_LOCKED


class Superseded(PipelineError):
    """Production changed during the run (a person's rollback or deployment): that change wins,
    nothing is deployed, and the next run decides afresh on the same files."""

    exit_code = 0


class Run:
    """One run: its steps, their durations, and the record appended to the run history."""

    def __init__(self, config: Config, args):
        self.config = config
        self.record = {
            "start": utc_now(),
            "end": None,
            "force": args.force,
            "dry_run": args.dry_run,
            "new_files": [],
            "steps": [],
            "reasons": [],
        }
        self.log_file = None if args.dry_run else config.prod_folder / FULLPROCESS_LOG
        self.lock = None  # the open lock file: every child inherits it, so the lock outlives a killed parent
        self.log_error: OSError | None = None  # the log file could not be written
        self.expected = None  # manifest.json's digest when the run read what its decision compares against

    def reason(self, message: str) -> None:
        log.info("%s", message)
        self.record["reasons"].append(message)

    def emit_child(self, text: str) -> None:
        """A child's own log lines (same format), to our stderr and log file."""
        if not text:
            return
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        if self.log_file is not None and self.log_error is None:
            try:
                with open(self.log_file, "a", encoding="utf-8") as handle:
                    handle.write(text if text.endswith("\n") else text + "\n")
            except OSError as error:  # a full disk: said once, and in the exit status (record_run)
                self.log_error = error

    def measured(self) -> list[str]:
        """diagnostics.py's --measured: the seconds this run's ingestion.py and training.py took on the
        current inputs, when both ran and succeeded (timing them again would do the run's work twice)."""
        seconds = {
            step["step"]: step["seconds"]
            for step in self.record["steps"]
            if step["exit"] in (0, EXIT_PARTIAL)
        }
        if "ingestion.py" in seconds and "training.py" in seconds:
            return ["--measured", str(seconds["ingestion.py"]), str(seconds["training.py"])]
        return []

    def inherited_fds(self) -> tuple[int, ...]:
        return (self.lock.fileno(),) if self.lock is not None else ()

    def step(self, script: str, *args: str, ok_codes: tuple[int, ...] = (0,)):
        started = time.perf_counter()
        name = " ".join([script, *args])
        try:
            result = subprocess.run(
                [sys.executable, str(PROJECT_DIR / script), *args],
                cwd=PROJECT_DIR,
                capture_output=True,
                text=True,
                timeout=self.config["step_timeout_seconds"],
                pass_fds=self.inherited_fds(),
                preexec_fn=die_with_parent,
            )
        except subprocess.TimeoutExpired as error:
            seconds = round(time.perf_counter() - started, 3)
            self.record["steps"].append({"step": name, "exit": None, "seconds": seconds})
            self.emit_child(error.stderr.decode() if isinstance(error.stderr, bytes) else error.stderr or "")
            raise StepFailed(f"step {name} timed out after {self.config['step_timeout_seconds']} s") from None
        seconds = round(time.perf_counter() - started, 3)
        self.record["steps"].append({"step": name, "exit": result.returncode, "seconds": seconds})
        self.emit_child(result.stderr)
        if result.returncode not in ok_codes:
            errors = [
                line for line in result.stderr.splitlines() if " ERROR " in line
            ] or result.stderr.splitlines()
            last = errors[-1].split(": ", 1)[-1] if errors else "no output"
            failure = DiskFull if result.returncode == DiskFull.exit_code else StepFailed
            raise failure(f"step {name} failed (exit {result.returncode}): {last}")
        log.info("step %s done in %.2f s", name, seconds)
        return result


def report(run: Run, second: bool) -> None:
    """Diagnostics, reporting and the API calls for the newly deployed model (the API at
    api_host:api_port when it serves the live version, else a temporary one: apiserver.py)."""
    run.step("diagnostics.py", *run.measured())
    run.step("reporting.py", "--output", CONFUSION_MATRIX_AFTER_REDEPLOY if second else CONFUSION_MATRIX)
    try:
        with server.serving_live_version(run.config, pass_fds=run.inherited_fds()) as url:
            run.step(
                "apicalls.py", "--url", url, "--output", APIRETURNS_AFTER_REDEPLOY if second else APIRETURNS
            )
    except StepFailed:
        raise
    except PipelineError as error:  # the temporary server did not start
        raise StepFailed(str(error)) from None


def refresh_reports(run: Run) -> None:
    """The deployed model stays, but the clients to call are those of the new data: the diagnostics,
    the call list, the drift figures and the report (whose page 1 lists the call list's first 10)."""
    run.step("diagnostics.py", *run.measured())
    run.step("reporting.py")
    run.reason("diagnostics, call list and report refreshed on the new data for the live version")


def retrain(run: Run) -> None:
    """training.py and scoring.py: the candidate model and its F1 on testdata."""
    run.step("training.py")
    run.step("scoring.py")


def ingest(run: Run) -> None:
    """ingestion.py; files it rejected are named in the log, the run record and the exit status."""
    run.step("ingestion.py", ok_codes=(0, EXIT_PARTIAL))
    record = json.loads((run.config.output_folder / INGESTION_RECORD).read_text(encoding="utf-8"))
    for name in record.get("archived_now", []):
        run.reason(
            f"{name} is no longer in {run.config.input_folder}: its clients stay in the data from its "
            f"kept copy (`python ingestion.py --forget {name}` drops them)"
        )
    rejected = [entry for entry in record["files"] if entry.get("status") == "rejected"]
    if rejected:
        run.record["rejected_files"] = [
            {"name": entry["name"], "reasons": entry.get("reasons", [])} for entry in rejected
        ]
        names = ", ".join(
            f"{entry['name']!r} ({'; '.join(entry.get('reasons', []))[:120]})" for entry in rejected[:5]
        )
        more = f" and {len(rejected) - 5} more" if len(rejected) > 5 else ""
        run.reason(f"{len(rejected)} input file(s) rejected, the others ingested: {names}{more}")


def write_decision(run: Run, summary: str) -> None:
    """decision.json beside the model: why this run deploys it. deployment.py deploys it with the
    model (when it names the model's sha256) and the report of that version states it."""
    config = run.config
    atomic_write_json(
        config.model_folder / DECISION,
        {
            "model_sha256": sha256_file(config.model_folder / MODEL),
            "summary": summary,
            "run_start": run.record["start"],
            "drift": run.record.get("drift"),
            "gate": run.record.get("gate"),
            "new_files": run.record.get("new_files", []),
            "rejected_files": run.record.get("rejected_files", []),
            "reasons": list(run.record["reasons"]),
        },
    )


def deploy(run: Run, second: bool, summary: str) -> None:
    """deployment.py, then the reports; a run killed in between leaves a note the next run finishes."""
    config = run.config
    before = versions.live_version(config)
    write_decision(run, summary)
    atomic_write_json(config.prod_folder / PENDING_REPORT, {"after_version": before, "second": second})
    expect = ["--expect-manifest", run.expected] if run.expected else []
    forced = ["--force"] if (run.record.get("gate") or {}).get("forced") else []
    result = run.step("deployment.py", *expect, *forced, ok_codes=(0, EXIT_LOCKED))
    if result.returncode == EXIT_LOCKED:  # compare and swap: a person changed production meanwhile
        (config.prod_folder / PENDING_REPORT).unlink(missing_ok=True)
        raise Superseded(
            f"production changed during this run ({versions.what_is_live_now(config, before)}): "
            "that change stands, nothing deployed; the next run decides afresh on the same files"
        )
    run.record["deployed_version"] = versions.live_version(config)
    newdata.mark_processed(config)
    report(run, second)
    (config.prod_folder / PENDING_REPORT).unlink(missing_ok=True)


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
    data = versions.data_fingerprint(config)
    for script, path, model in (
        ("diagnostics.py", DIAGNOSTICS, False),
        ("reporting.py", RISK_RANKING_BASIS, True),
    ):
        stamp = versions.read_stamp(config.model_folder / path)
        problem = versions.stamp_problem(stamp, state, data, model) if stamp is not None and state else None
        if problem is None and path == RISK_RANKING_BASIS and stamp is not None:
            damaged = versions.derived_problems(config, stamp)  # a person's edit, damage, deletion
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
    with file_lock(prod / deployment.LOCK, blocking=False) as lock:
        if lock is None:
            raise held(prod / deployment.LOCK)
        try:
            repairs = deployment.repair(prod)
        except deployment.ProductionBroken as error:
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
    for path in sweep(versions.written_folders(config)):  # a killed step's temporary files
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
    problems = deployment.archive_problems(prod, manifest, every=every)
    for problem in problems:
        log.warning("%s", problem)
        run.record["reasons"].append(problem)
        run.record.setdefault("archive_problems", []).append(problem)
    if every:
        try:
            atomic_write_json(stamp, {"checked": time.time(), "problems": problems})
        except OSError:
            pass  # checked again next run


def execute(run: Run, args) -> str:
    """The flow; returns the decision. Raises StepFailed when a step fails."""
    config = run.config
    if not args.dry_run:
        if not check_production(run, args.force):  # broken, and --force: replace the live version
            ingest(run)
            retrain(run)
            deploy(run, second=True, summary="Retrained and deployed over a broken live version (--force)")
            return "redeployed over a broken version"
        recover_run_record(run)
        rebuild_missing_data(run)
        finish_pending_report(run)
        refresh_stale_reports(run)
    bootstrap = not (config.prod_folder / MANIFEST).is_file()
    if args.dry_run and versions.live_version(config) is None and deployment.restorable(config.prod_folder):
        state = "missing" if bootstrap else "damaged"
        run.reason(f"{MANIFEST} is {state}: a run would restore the last live version from the archive first")
        return "dry run"
    if bootstrap:
        new = (
            [path.name for path in list_csv_files(config.input_folder)]
            if config.input_folder.is_dir()
            else []
        )
        run.record["new_files"] = new
        if args.dry_run:
            run.reason(f"production is empty: would ingest {len(new)} files, train, score, deploy and report")
            return "dry run"
        run.reason(f"production is empty: bootstrap from {config.input_folder} ({len(new)} files)")
        run.expected = "none"
        ingest(run)
        retrain(run)
        deploy(
            run,
            second=False,
            summary=f"First deployment: trained on the files of {config.relative(config.input_folder)}",
        )
        return "bootstrapped"

    new, _ = newdata.find_new_files(config)
    run.record["new_files"] = new
    if not new and not args.force:
        run.reason(f"no new data in {config.input_folder}")
        return "nothing new"
    if new:
        run.reason(f"new data in {config.input_folder}: {', '.join(new)}")
    if args.dry_run:
        then = ", then retrain and redeploy (--force)" if args.force else ""
        run.reason(f"would ingest, then check drift ({config['drift_test']} test){then}")
        return "dry run"

    ingest(run)
    from attrition.monitoring import (
        drift,
    )  # the new-data path only: the nothing-new path imports no data library

    state = versions.live(config)
    deployed_score = versions.verified_score(state)
    result = run.step("scoring.py", "--deployed", "--data", str(config.finaldata_file), "--json")
    scored = json.loads(result.stdout)
    if scored.get("model_sha256") != state.model_sha256:
        raise Superseded(
            f"production changed during the drift test (version {scored.get('deployed_version')} is live "
            f"now, not {state.version}): nothing decided; the next run decides afresh"
        )
    new_score = scored["f1"]
    decision = decisions.drift(
        config["drift_test"],
        new_score,
        deployed_score,
        drift.deployed_score_history(config),
        config["drift_tolerance"],
    )
    run.record["drift"] = decision
    if decision["note"]:
        run.reason(decision["note"])
    run.reason(
        f"drift check ({decision['test_used']}): deployed model F1 {new_score:.4f} on the new data, "
        f"threshold {decision['threshold']:.4f} ({decision['rule']}): "
        f"{'DRIFT' if decision['drift'] else 'no drift'}"
    )
    if not decision["drift"]:
        if not args.force:
            refresh_reports(run)
            newdata.mark_processed(config)
            return "no drift: kept the deployed model"
        run.reason("--force: retraining anyway")

    retrain(run)
    gate = decisions.gate(
        read_score(config.model_folder / LATESTSCORE), deployed_score, config["promotion_gate"], args.force
    )
    run.record["gate"] = gate
    run.reason(
        f"promotion gate: candidate F1 {gate['candidate_f1']:.4f} vs deployed {deployed_score:.4f} "
        f"on testdata: {'passes' if gate['passed'] else 'fails'}"
    )
    if not gate["deploy"]:  # decision.json names the refused model: deployment.py by hand refuses it too
        write_decision(run, "The promotion gate refused the retrained model: the deployed model stays")
        refresh_reports(run)
        newdata.mark_processed(config)
        return "gate refused: kept the deployed model"
    if not gate["passed"]:
        run.reason(
            "--force: deploying anyway" if gate["forced"] else "promotion_gate is off: deploying anyway"
        )
    deploy(run, second=True, summary=decisions.why_redeployed(decision["drift"], gate["passed"], args.force))
    return "redeployed"


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    for switch, words in SWITCHES.items():
        parser.add_argument(switch, action="store_true", help=words)
    args = parser.parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    if args.summary:
        print(versions.summary(config))
        return 0
    os.environ.update(
        config.frozen()
    )  # every step uses this run's configuration: an edit waits for the next run
    run = Run(config, args)
    if run.log_file is not None:
        setup_logging(NAME, run.log_file)
    if args.dry_run:  # changes nothing: no lock file, no history, no log file
        return finish(run, args)
    config.prod_folder.mkdir(parents=True, exist_ok=True)
    with file_lock(config.prod_folder / LOCK, blocking=False) as lock:
        if lock is None:
            log.warning("another fullprocess.py run holds %s: exiting", config.prod_folder / LOCK)
            return EXIT_LOCKED
        run.lock = lock
        return finish(run, args)


def record_run(run: Run, before: int | None) -> int:
    """Append the run's record (before the notification: a full disk on it is what people hear of);
    the exit status, 74 or 1 when the record or the log could not be written."""
    failures = []
    try:
        append_jsonl(run.config.prod_folder / RUN_HISTORY, run.record)
    except OSError as error:
        failures.append(
            (
                error,
                f"could not record this run in {run.config.relative(run.config.prod_folder / RUN_HISTORY)}",
            )
        )
    log_failed = next(
        (
            handler.failed
            for handler in logging.getLogger().handlers
            if isinstance(handler, LogFileHandler) and handler.failed
        ),
        run.log_error,
    )
    if log_failed is not None:
        failures.append((log_failed, f"could not write {run.config.relative(run.log_file)}"))
    if not failures:
        return run.record["exit_status"]
    full = any(disk_full(error) for error, _ in failures)
    words = "; ".join(f"{what} ({error.strerror or error})" for error, what in failures)
    status = DiskFull.exit_code if full else 1
    log.error("%s; %s", words, versions.what_is_live_now(run.config, before))
    if run.record["exit_status"] == 0 or status == DiskFull.exit_code:
        run.record.update(
            decision=f"failed: {words} (the run itself: {run.record['decision']})", exit_status=status
        )
    return run.record["exit_status"]


def finish(run: Run, args) -> int:
    """Execute the flow, record the run, log the decision; returns the exit status."""
    status = 0
    before = None if args.dry_run else versions.live_version(run.config)
    try:
        decision = execute(run, args)
    except Busy as error:
        log.warning("%s", error)
        decision, status = f"busy: {error}", EXIT_LOCKED
    except Superseded as error:
        log.warning("%s", error)
        decision = f"superseded: {error}"
    except PipelineError as error:  # StepFailed and DiskFull included
        log.error("%s; %s", error, versions.what_is_live_now(run.config, before))
        decision, status = f"failed: {error}", DiskFull.exit_code if isinstance(error, DiskFull) else 1
    if status == 0 and run.record.get("rejected_files"):
        decision += f"; {len(run.record['rejected_files'])} input file(s) rejected"
        status = EXIT_PARTIAL
    run.record.update(end=utc_now(), decision=decision, exit_status=status)
    if not args.dry_run:
        status = record_run(run, before)
        notify.notify(run.config, run.record)
    took = sum(step["seconds"] for step in run.record["steps"])
    (log.warning if status else log.info)(
        "decision: %s (%d steps, %.1f s)", decision, len(run.record["steps"]), took
    )
    return status


if __name__ == "__main__":
    run_main(main, NAME)
