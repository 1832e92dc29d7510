"""The steps of a run: each a course script run as a subprocess (bounded by step_timeout_seconds,
its log lines passed on), and the run's record (steps, durations, reasons).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

from attrition.api import server
from attrition.core.config import Config
from attrition.core.errors import EXIT_LOCKED, EXIT_PARTIAL, DiskFull, PipelineError
from attrition.core.files import atomic_write_json
from attrition.core.names import (
    APIRETURNS,
    APIRETURNS_AFTER_REDEPLOY,
    CONFUSION_MATRIX,
    CONFUSION_MATRIX_AFTER_REDEPLOY,
    DECISION,
    INGESTION_RECORD,
    MODEL,
    PROJECT_DIR,
)
from attrition.core.processes import die_with_parent
from attrition.core.records import sha256_file, utc_now
from attrition.pipeline import newdata
from attrition.production import versions

NAME = "fullprocess"


FULLPROCESS_LOG = "fullprocess.log"  # the runs' log (prod_deployment_path)


LOCK = ".fullprocess.lock"


PENDING_REPORT = "pendingreport.json"  # a deployment's reports still to produce (a killed run's)


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
    api_host:api_port when it serves the live version, else a temporary one: attrition/api/server.py)."""
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
