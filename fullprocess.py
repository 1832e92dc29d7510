"""The unattended loop: new data -> ingest -> drift check -> retrain -> gate -> redeploy -> report.

cron runs it every 10 minutes (crontab.txt). It chains the other scripts as subprocesses
(each bounded by step_timeout_seconds) and explains every decision in its log.

1. New data: every *.csv of input_folder_path whose name is not in the deployed
   ingestedfiles.txt and was not already decided on, or whose content changed (size and
   mtime, then sha256, against the ingestion record). None: one log line, exit 0. This
   path imports no data library.
2. ingestion.py.
3. Drift: the deployed model's F1 on the new finaldata.csv (scoring.py --deployed) against
   the deployed latestscore.txt, by the configured drift_test:
     raw            drift when new < deployed - tolerance (the course's test)
     parametric     drift when new < mean - 2 std of the deployed versions' F1 - tolerance
                    (needs 2 deployed scores; fewer: the raw test decides)
     nonparametric  drift when new < Q1 - 1.5 IQR of those scores - tolerance
                    (needs 4; fewer: the raw test decides)
   No drift: recorded, the risk ranking refreshed on the new data, exit 0.
4. training.py, scoring.py: the candidate and its F1 on testdata.
5. Gate (promotion_gate, default on): redeploy only when the candidate's F1 is not below
   the deployed model's; otherwise keep it, record why, and refresh the risk ranking.
6. deployment.py.
7. diagnostics.py, reporting.py and apicalls.py for the new deployment: after a redeploy
   they write confusionmatrix2.png and apireturns2.txt, after the first deployment
   confusionmatrix.png and apireturns.txt. When no API answers at api_host:api_port, a
   temporary gunicorn serves the calls and is stopped afterwards.
An empty production folder is bootstrapped: ingest, train, score, deploy, report.

Reads/writes
    the other scripts' files; in prod_deployment_path: runhistory.jsonl (one JSON line
    per run), fullprocess.log (the log), processedfiles.json (the input files already
    decided on), .fullprocess.lock; decision.json beside a model it deploys (why).
Tells
    notify_urls (apprise) of a run that matters: a deployment, a failure, rejected input,
    drift the gate kept out, a repair; heartbeat_url after every run (+ "/fail" after a
    failed one). Bounded by notify_timeout_seconds; never fails the run.
Run
    python fullprocess.py              # what cron runs
    python fullprocess.py --dry-run    # say what would happen, change nothing
    python fullprocess.py --force      # retrain and redeploy whatever drift and gate say
    python fullprocess.py --summary    # the last run: its decision, the files it wrote, what next
Exit status
    0 success (also: nothing new, no drift, the gate kept the deployed model)
    3 success, but ingestion rejected some input files (named in the log and the run record)
    1 a step failed, or production is broken (the line says what is live)
    75 another run holds the lock
    78 bad config.json; 2 a usage error
Start-up
    The "nothing new" path runs every 10 minutes and has a budget (README: Benchmarks): it
    imports no data library, and subprocess, statistics, socket, ctypes and urllib are imported
    inside the functions that need them, which that path never calls.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import deployment
from common import (
    APIRETURNS,
    APIRETURNS_AFTER_REDEPLOY,
    ARCHIVE_DIR,
    CACHE_DIR,
    CONFIG_ENV,
    CONFUSION_MATRIX,
    CONFUSION_MATRIX_AFTER_REDEPLOY,
    DECISION,
    DEPLOYMENT_HISTORY,
    EXIT_PARTIAL,
    FULLPROCESS_LOG,
    INGESTEDFILES,
    INGESTION_RECORD,
    LATESTSCORE,
    MANIFEST,
    MODEL,
    PROCESSED_FILES,
    PROJECT_DIR,
    REPORTS_DIR,
    RISK_RANKING,
    RISK_RANKING_BASIS,
    RUN_HISTORY,
    Config,
    PipelineError,
    append_jsonl,
    atomic_write_json,
    die_with_parent,
    file_lock,
    list_csv_files,
    live_folder,
    load_config,
    parse_switches,
    read_ingested_files,
    read_jsonl,
    read_manifest,
    read_score,
    remove_leftovers,
    run_main,
    setup_logging,
    sha256_file,
    utc_now,
)

NAME = "fullprocess"
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
LOCK = ".fullprocess.lock"
PENDING_REPORT = "pendingreport.json"  # a deployment's reports still to produce (a killed run's)
MIN_HISTORY = {"raw": 0, "parametric": 2, "nonparametric": 4}
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


def known_files(config: Config) -> tuple[set[str], dict[str, dict]]:
    """(names the deployment was trained on, {name: size/mtime/sha256} of files decided on)."""
    prod = config.prod_folder
    live = live_folder(prod, read_manifest(prod))
    deployed = set(read_ingested_files(live / INGESTEDFILES)) if (live / INGESTEDFILES).is_file() else set()
    known: dict[str, dict] = {}
    for path in (live / INGESTION_RECORD, prod / PROCESSED_FILES):  # later sources win
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            continue
        if record.get("input_folder_relative") == config.relative(config.input_folder):
            known.update({entry["name"]: entry for entry in record.get("files", []) if "name" in entry})
    return deployed, known


def find_new_files(config: Config) -> tuple[list[str], list[dict]]:
    """(names of new or changed input files, the current files' size/mtime/sha256 entries)."""
    if not config.input_folder.is_dir():
        raise PipelineError(f"{config.input_folder}: input folder does not exist")
    deployed, known = known_files(config)
    new, current = [], []
    for path in list_csv_files(config.input_folder):
        stat = path.stat()
        entry = {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        seen = known.get(path.name)
        if seen is None and path.name not in deployed:
            new.append(path.name)
        elif seen is not None and (seen.get("size"), seen.get("mtime_ns")) != (
            stat.st_size,
            stat.st_mtime_ns,
        ):
            entry["sha256"] = sha256_file(path)
            if entry["sha256"] != seen.get("sha256"):
                new.append(path.name)
        current.append(entry)
    return new, current


def drift_decision(test: str, new_score: float, deployed_score: float, history: list[float],
                   tolerance: float = 0.0) -> dict:  # fmt: skip
    """Whether new_score shows drift, by the course's raw, parametric or non-parametric test.

    history: the F1 of each deployed version. Too short a history for the chosen test
    (parametric needs 2, non-parametric 4) falls back to the raw test, and says so.
    """
    import statistics

    used, note = test, None
    if len(history) < MIN_HISTORY[test]:
        used = "raw"
        note = f"{test} test needs {MIN_HISTORY[test]} deployed scores, history has {len(history)}: raw test used"
    if used == "raw":
        threshold = deployed_score
        rule = "new F1 < deployed F1"
    elif used == "parametric":
        mean, std = statistics.fmean(history), statistics.pstdev(history)
        threshold = mean - 2 * std
        rule = f"new F1 < mean - 2 std of {len(history)} deployed scores ({mean:.4f} - 2 x {std:.4f})"
    else:
        q1, _, q3 = statistics.quantiles(history, n=4, method="inclusive")
        threshold = q1 - 1.5 * (q3 - q1)
        rule = f"new F1 < Q1 - 1.5 IQR of {len(history)} deployed scores ({q1:.4f} - 1.5 x {q3 - q1:.4f})"
    if tolerance:
        rule += f" - tolerance {tolerance}"
    return {
        "test": test,
        "test_used": used,
        "note": note,
        "new_score": new_score,
        "deployed_score": deployed_score,
        "threshold": threshold - tolerance,
        "rule": rule,
        "drift": new_score < threshold - tolerance,
    }


def deployed_score_history(config: Config) -> list[float]:
    """The F1 of each deployed version, in deployment order (rollbacks do not count)."""
    scores, seen = [], set()
    for entry in read_jsonl(config.prod_folder / DEPLOYMENT_HISTORY):
        if (
            entry.get("action") == "deploy"
            and entry.get("version") not in seen
            and entry.get("f1") is not None
        ):
            seen.add(entry.get("version"))
            scores.append(float(entry["f1"]))
    return scores


class Run:
    """One run: its steps, their durations, and the record appended to the run history."""

    def __init__(self, config: Config, args):
        self.config = config
        self.record = {"start": utc_now(), "end": None, "force": args.force, "dry_run": args.dry_run,
                       "new_files": [], "steps": [], "reasons": []}  # fmt: skip
        self.log_file = None if args.dry_run else config.prod_folder / FULLPROCESS_LOG
        self.lock = None  # the open lock file: every child inherits it, so the lock outlives a killed parent

    def reason(self, message: str) -> None:
        log.info("%s", message)
        self.record["reasons"].append(message)

    def emit_child(self, text: str) -> None:
        """A child's own log lines (same format), to our stderr and log file."""
        if not text:
            return
        sys.stderr.write(text if text.endswith("\n") else text + "\n")
        if self.log_file is not None:
            with open(self.log_file, "a", encoding="utf-8") as handle:
                handle.write(text if text.endswith("\n") else text + "\n")

    def inherited_fds(self) -> tuple[int, ...]:
        return (self.lock.fileno(),) if self.lock is not None else ()

    def step(self, script: str, *args: str, ok_codes: tuple[int, ...] = (0,)):
        import subprocess

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
            raise StepFailed(f"step {name} failed (exit {result.returncode}): {last}")
        log.info("step %s done in %.2f s", name, seconds)
        return result


def report(run: Run, second: bool) -> None:
    """Diagnostics, reporting and the API calls for the newly deployed model.

    apicalls.py calls the API at api_host:api_port when it serves this production folder's live
    version; otherwise (nothing answers, or another checkout's server does) a temporary gunicorn
    on a free loopback port serves the calls and is stopped afterwards.
    """
    config = run.config
    run.step("diagnostics.py")
    run.step("reporting.py", "--output", CONFUSION_MATRIX_AFTER_REDEPLOY if second else CONFUSION_MATRIX)
    url = f"http://{config['api_host']}:{config['api_port']}"
    server = None
    serves = serves_live_version(api_health(url), read_manifest(config.prod_folder))
    if not serves:
        port = free_port()
        log.info("the API at %s %s: starting a temporary gunicorn on 127.0.0.1:%d for apicalls.py", url,
                 "does not answer" if serves is None else "serves another deployment", port)  # fmt: skip
        try:
            server = start_api_server("127.0.0.1", port, config.prod_folder / "temporary-api.log", workers=1,
                                      pass_fds=run.inherited_fds())  # fmt: skip
        except PipelineError as error:
            raise StepFailed(str(error)) from None
        url = f"http://127.0.0.1:{port}"
    try:
        run.step("apicalls.py", "--url", url, "--output", APIRETURNS_AFTER_REDEPLOY if second else APIRETURNS)
    finally:
        if server is not None:
            stop_process(server)


def serves_live_version(health: dict | None, manifest: dict) -> bool | None:
    """Whether an API's /health answer is this live version's (None: nothing answered)."""
    if health is None:
        return None
    return (health.get("model_sha256"), health.get("deployed_at")) == (
        manifest["files"][MODEL]["sha256"],
        manifest.get("timestamp"),
    )


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_health(url: str, timeout: float = 3.0) -> dict | None:
    """The API's /health answer at url ({"status": ...} also for a 503), or None when nothing answers."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            return json.loads(error.read()) if error.code == 503 else None
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def start_api_server(host: str, port: int, log_path: Path, workers: int | None = None, env: dict | None = None,
                     access_log: bool = True, timeout: float = 60.0, pass_fds: tuple[int, ...] = ()):  # fmt: skip
    """gunicorn as `make serve` runs it (gunicorn.conf.py), once it answers /health.

    Its output goes to log_path: a pipe nobody reads would fill and stall the workers.
    The tests and benchmarks start their servers with it too.
    """
    import subprocess

    command = [sys.executable, "-m", "gunicorn", "-c", str(PROJECT_DIR / "gunicorn.conf.py"),
               "--chdir", str(PROJECT_DIR), "-b", f"{host}:{port}", "wsgi:app"]  # fmt: skip
    if workers:
        command[-1:-1] = ["-w", str(workers)]
    if not access_log:
        command[-1:-1] = ["--access-logfile", "/dev/null"]
    with open(log_path, "ab") as output:
        server = subprocess.Popen(command, cwd=PROJECT_DIR, env=env, stdout=output, stderr=subprocess.STDOUT,
                                  pass_fds=pass_fds, preexec_fn=die_with_parent)  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise PipelineError(f"the API on {host}:{port} did not start: see {log_path}")
        if api_health(f"http://{host}:{port}") is not None:
            return server
        time.sleep(0.1)
    stop_process(server)
    raise PipelineError(f"the API on {host}:{port} did not answer within {timeout:g} s: see {log_path}")


def stop_process(process, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after timeout seconds."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def refresh_ranking(run: Run) -> None:
    """The deployed model stays, but the clients to call are those of the new data: rank them."""
    run.step("reporting.py", "--ranking-only")
    run.reason(f"risk ranking refreshed on the new data: {run.config.model_folder / RISK_RANKING}")


def mark_processed(config: Config) -> None:
    """Remember the files of the latest ingestion as decided on (written only once decided)."""
    record = json.loads((config.output_folder / INGESTION_RECORD).read_text(encoding="utf-8"))
    atomic_write_json(
        config.prod_folder / PROCESSED_FILES,
        {"timestamp": utc_now(), "input_folder": record["input_folder"],
         "input_folder_relative": record["input_folder_relative"],
         "files": [{key: entry.get(key) for key in ("name", "size", "mtime_ns", "sha256", "status")}
                   for entry in record["files"]]},
    )  # fmt: skip


def ingest(run: Run) -> None:
    """ingestion.py; files it rejected are named in the log, the run record and the exit status."""
    run.step("ingestion.py", ok_codes=(0, EXIT_PARTIAL))
    record = json.loads((run.config.output_folder / INGESTION_RECORD).read_text(encoding="utf-8"))
    rejected = [entry for entry in record["files"] if entry.get("status") == "rejected"]
    if rejected:
        run.record["rejected_files"] = [{"name": entry["name"], "reasons": entry.get("reasons", [])}
                                        for entry in rejected]  # fmt: skip
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
        {"model_sha256": sha256_file(config.model_folder / MODEL), "summary": summary, "run_start": run.record["start"],
         "drift": run.record.get("drift"), "gate": run.record.get("gate"), "new_files": run.record.get("new_files", []),
         "rejected_files": run.record.get("rejected_files", []), "reasons": list(run.record["reasons"])},
    )  # fmt: skip


def deploy(run: Run, second: bool, summary: str) -> None:
    """deployment.py, then the reports; a run killed in between leaves a note the next run finishes."""
    config = run.config
    before = live_version(config)
    write_decision(run, summary)
    atomic_write_json(config.prod_folder / PENDING_REPORT, {"after_version": before, "second": second})
    run.step("deployment.py")
    run.record["deployed_version"] = live_version(config)
    mark_processed(config)
    report(run, second)
    (config.prod_folder / PENDING_REPORT).unlink(missing_ok=True)


def finish_pending_report(run: Run) -> None:
    """Report on a version whose run was killed (or failed) between deploying it and reporting on it."""
    config = run.config
    path = config.prod_folder / PENDING_REPORT
    try:
        pending = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return
    except ValueError:
        pending = {"after_version": None, "second": True}
    version = live_version(config)
    if version is None or version == pending.get("after_version"):
        path.unlink(missing_ok=True)  # the deployment itself did not happen: nothing to report
        return
    run.reason(
        f"version {version} went live in an earlier run that stopped before its reports: reporting now"
    )
    run.record["reported_pending_version"] = version
    report(run, bool(pending.get("second", True)))
    path.unlink(missing_ok=True)


def refresh_stale_reports(run: Run) -> None:
    """The call list and report describe another version than the live one (a rollback whose report
    refresh was killed or failed): report on the live version now."""
    config = run.config
    try:
        basis = json.loads((config.model_folder / RISK_RANKING_BASIS).read_text(encoding="utf-8"))
        manifest = read_manifest(config.prod_folder)
    except (FileNotFoundError, ValueError, PipelineError):
        return  # no report yet (the bootstrap writes one), or nothing live
    if basis.get("model_sha256") == manifest["files"][MODEL]["sha256"]:
        return
    run.reason(f"the call list describes version {basis.get('model_version')}, version {manifest['version']} "
               "is live: reporting on it")  # fmt: skip
    run.step("reporting.py")


def live_version(config: Config) -> int | None:
    manifest = deployment.current_manifest(config.prod_folder)
    return manifest["version"] if manifest else None


def check_production(run: Run, force: bool = False) -> bool:
    """Finish or clear what a killed run left in production; stop (ProductionBroken) when the live
    version itself is damaged. Under the deploy lock: a deployment.py run by hand is not half-way."""
    prod = run.config.prod_folder
    with file_lock(prod / deployment.LOCK, blocking=False) as lock:
        if lock is None:
            raise Busy(f"{prod / deployment.LOCK}: a deployment.py run is in progress; trying again next run")
        try:
            repairs = deployment.repair(prod)
        except deployment.ProductionBroken as error:
            if not force:
                raise
            run.reason(f"{error}; --force: retraining and deploying a new version without a drift check")
            return False
    config = run.config
    reports = sorted((prod / ARCHIVE_DIR).glob(f"v*/{REPORTS_DIR}"))  # a killed report of a version
    for folder in (config.output_folder, config.model_folder, config.path.parent / CACHE_DIR, *reports):
        for path in remove_leftovers(folder):  # a killed step's temporary files
            repairs.append(f"removed {config.relative(path)}, left by a killed run")
            log.warning("repair: removed %s, left by a killed run", path)
    for message in repairs:
        run.record.setdefault("repairs", []).append(message)
    return True


def execute(run: Run, args) -> str:
    """The flow; returns the decision. Raises StepFailed when a step fails."""
    config = run.config
    if not args.dry_run:
        if not check_production(run, args.force):  # broken, and --force: replace the live version
            ingest(run)
            run.step("training.py")
            run.step("scoring.py")
            deploy(run, second=True, summary="Retrained and deployed over a broken live version (--force)")
            return "redeployed over a broken version"
        finish_pending_report(run)
        refresh_stale_reports(run)
    bootstrap = not (config.prod_folder / MANIFEST).is_file()
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
        ingest(run)
        run.step("training.py")
        run.step("scoring.py")
        deploy(
            run,
            second=False,
            summary=f"First deployment: trained on the files of {config.relative(config.input_folder)}",
        )
        return "bootstrapped"

    new, _ = find_new_files(config)
    run.record["new_files"] = new
    if not new and not args.force:
        run.reason(f"no new data in {config.input_folder}")
        return "nothing new"
    if new:
        run.reason(f"new data in {config.input_folder}: {', '.join(new)}")
    if args.dry_run:
        run.reason(
            f"would ingest, then check drift ({config['drift_test']} test)"
            + (", then retrain and redeploy (--force)" if args.force else "")
        )
        return "dry run"

    ingest(run)
    deployed_score = read_score(
        live_folder(config.prod_folder, read_manifest(config.prod_folder)) / LATESTSCORE
    )
    result = run.step("scoring.py", "--deployed", "--data", str(config.finaldata_file), "--json")
    new_score = json.loads(result.stdout)["f1"]
    decision = drift_decision(config["drift_test"], new_score, deployed_score, deployed_score_history(config),
                              config["drift_tolerance"])  # fmt: skip
    run.record["drift"] = decision
    if decision["note"]:
        run.reason(decision["note"])
    run.reason(
        f"drift check ({decision['test_used']}): deployed model F1 {new_score:.4f} on the new data, "
        f"threshold {decision['threshold']:.4f} ({decision['rule']}): {'DRIFT' if decision['drift'] else 'no drift'}"
    )
    if not decision["drift"]:
        if not args.force:
            refresh_ranking(run)
            mark_processed(config)
            return "no drift: kept the deployed model"
        run.reason("--force: retraining anyway")

    run.step("training.py")
    run.step("scoring.py")
    candidate = read_score(config.model_folder / LATESTSCORE)
    run.record["gate"] = {"candidate_f1": candidate, "deployed_f1": deployed_score,
                          "enabled": config["promotion_gate"], "passed": candidate >= deployed_score}  # fmt: skip
    verdict = "passes" if candidate >= deployed_score else "fails"
    run.reason(
        f"promotion gate: candidate F1 {candidate:.4f} vs deployed {deployed_score:.4f} on testdata: {verdict}"
    )
    if candidate < deployed_score:
        if args.force:
            run.reason("--force: deploying anyway")
        elif config["promotion_gate"]:
            refresh_ranking(run)
            mark_processed(config)
            return "gate refused: kept the deployed model"
        else:
            run.reason("promotion_gate is off: deploying anyway")
    if not decision["drift"]:
        why = "Retrained and redeployed on request (--force), without drift"
    elif candidate >= deployed_score:
        why = "Retrained because the model then live lost accuracy on the new data (drift), and redeployed because the retrained model scored at least as well"
    else:
        why = "Retrained because of drift, and redeployed although the retrained model scored lower (" + (
            "--force)" if args.force else "promotion_gate is off)"
        )
    deploy(run, second=True, summary=why)
    return "redeployed"


def main(argv: list[str] | None = None) -> int:
    args = parse_switches(__doc__, SWITCHES, argv)
    setup_logging(NAME)
    config = load_config()
    if args.summary:
        print(summary(config))
        return 0
    os.environ[CONFIG_ENV] = str(config.path)  # absolute: the children start in another folder
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


def worth_telling(record: dict) -> bool:
    """A run a person should hear of: a deployment, a failure, rejected input, drift the gate kept
    out, a repair of production. Not: nothing new, no drift, another run holding the lock."""
    decision = record["decision"]
    return decision.startswith(("bootstrapped", "redeployed", "gate refused", "failed")) or bool(
        record.get("rejected_files") or record.get("repairs") or record.get("reported_pending_version")
    )


def message(config: Config, record: dict) -> tuple[str, str]:
    """(title, body) of a run's notification: short, and true of the state the run left."""
    live = safe_live_version(config)
    title = f"risk model: {record['decision']}"[:200]
    lines = [f"{record['decision']} (exit {record['exit_status']}); version {live} is live." if live is not None
             else f"{record['decision']} (exit {record['exit_status']}); no version is live."]  # fmt: skip
    drift = record.get("drift")
    if drift:
        lines.append(f"Drift ({drift['test_used']}): F1 {drift['new_score']:.4f} on the new data vs threshold "
                     f"{drift['threshold']:.4f}: {'drift' if drift['drift'] else 'no drift'}.")  # fmt: skip
    gate = record.get("gate")
    if gate:
        lines.append(f"Gate: candidate F1 {gate['candidate_f1']:.4f} vs deployed {gate['deployed_f1']:.4f}: "
                     f"{'passed' if gate['passed'] else 'failed'}.")  # fmt: skip
    for entry in record.get("rejected_files", [])[:5]:
        lines.append(f"Rejected {entry['name']}: {'; '.join(entry.get('reasons', []))[:200]}")
    for repair in record.get("repairs", [])[:5]:
        lines.append(f"Repaired: {repair}")
    lines.append(f"Host {os.uname().nodename}, production {config.relative(config.prod_folder)}; "
                 f"details: {config.relative(config.prod_folder / RUN_HISTORY)}.")  # fmt: skip
    return title, "\n".join(lines)


def notify(config: Config, record: dict) -> None:
    """Tell notify_urls of a run that matters (apprise), and ping heartbeat_url after every run.
    Bounded by notify_timeout_seconds in all; a failure to notify is logged and never fails the run."""
    import threading

    timeout = config["notify_timeout_seconds"]
    jobs = []
    if config["notify_urls"] and worth_telling(record):
        jobs.append(("notification", lambda: send_notification(config, *message(config, record))))
    if config["heartbeat_url"]:
        failed = record["exit_status"] not in (0, EXIT_PARTIAL, EXIT_LOCKED)
        jobs.append(("heartbeat", lambda: ping(config["heartbeat_url"].rstrip("/") + ("/fail" if failed else ""),
                                                timeout)))  # fmt: skip
    deadline = time.monotonic() + timeout
    for name, job in jobs:
        outcome = []
        worker = threading.Thread(
            target=lambda job=job, outcome=outcome: outcome.append(_attempt(job)), daemon=True
        )
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.warning(
                "%s: not sent within notify_timeout_seconds (%g s); the run is unaffected", name, timeout
            )
        elif outcome and outcome[0]:
            log.warning("%s: not sent (%s); the run is unaffected", name, outcome[0])


def _attempt(job) -> str | None:
    """None when job() succeeded, else why not."""
    try:
        return job()
    except Exception as error:  # a notification must never fail the run
        return f"{type(error).__name__}: {error}"[:300]


def send_notification(config: Config, title: str, body: str) -> str | None:
    import apprise

    sender = apprise.Apprise()
    for url in config["notify_urls"]:
        if not sender.add(url):
            return f"{url.split(':', 1)[0]}://...: not an apprise URL apprise can use"
    return (
        None if sender.notify(title=title, body=body) else "apprise reported a failed delivery (see its log)"
    )


def ping(url: str, timeout: float) -> str | None:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (the operator's URL)
        answer.read(1024)
    return None


def summary(config: Config) -> str:
    """The last run, for a person at a terminal (make run): its decision, the files it wrote (by
    modification time, in the folders of the configuration in force), and the next step."""
    runs = read_jsonl(config.prod_folder / RUN_HISTORY)
    if not runs:
        return f"No fullprocess.py run recorded in {config.relative(config.prod_folder)} yet."
    last = runs[-1]
    import calendar

    started = calendar.timegm(time.strptime(last["start"][:19], "%Y-%m-%dT%H:%M:%S")) - 1
    folders = [config.output_folder, config.model_folder, config.prod_folder]
    manifest = (
        deployment.current_manifest(config.prod_folder) if (config.prod_folder / MANIFEST).is_file() else None
    )
    if manifest and manifest.get("folder"):
        folders += [
            config.prod_folder / manifest["folder"],
            config.prod_folder / manifest["folder"] / "reports",
        ]
    written = sorted({config.relative(path) for folder in folders if folder.is_dir() for path in folder.iterdir()
                      if path.is_file() and not path.name.startswith(".") and path.stat().st_mtime >= started})  # fmt: skip
    lines = [f"Last run ({last['start'][:19]} UTC): {last['decision']} (exit {last['exit_status']}); "
             + (f"version {manifest['version']} is live." if manifest else "nothing is live."),
             "Files it wrote:" if written else "It wrote no file."]  # fmt: skip
    lines += [f"  {name}" for name in written]
    if config.relative(config.input_folder) == "practicedata":
        lines.append("Next: `make serve` for the API, or point config.json at sourcedata and models and "
                     "`make run` again (README: walkthrough).")  # fmt: skip
    else:
        lines.append(f"Next: `make serve` for the API; the call list is {config.relative(config.model_folder)}/"
                     f"{RISK_RANKING}, the report {config.relative(config.model_folder)}/report.pdf.")  # fmt: skip
    return "\n".join(lines)


def safe_live_version(config: Config) -> int | None:
    try:
        return live_version(config)
    except PipelineError:
        return None


def live_state(config: Config, before: int | None) -> str:
    """What is live now, said truthfully at the end of a failed run."""
    now = safe_live_version(config)
    if now is None:
        return "production is empty" if before is None else "no usable version is live"
    if now == before:
        return f"production left as it was (version {now} live)"
    return f"version {now} is now live"


def finish(run: Run, args) -> int:
    """Execute the flow, record the run, log the decision; returns the exit status."""
    status = 0
    before = None if args.dry_run else safe_live_version(run.config)
    try:
        decision = execute(run, args)
    except Busy as error:
        log.warning("%s", error)
        decision, status = f"busy: {error}", EXIT_LOCKED
    except PipelineError as error:  # StepFailed included
        log.error("%s; %s", error, live_state(run.config, before))
        decision, status = f"failed: {error}", 1
    if status == 0 and run.record.get("rejected_files"):
        decision += f"; {len(run.record['rejected_files'])} input file(s) rejected"
        status = EXIT_PARTIAL
    run.record.update(end=utc_now(), decision=decision, exit_status=status)
    if not args.dry_run:
        append_jsonl(run.config.prod_folder / RUN_HISTORY, run.record)
        notify(run.config, run.record)
    took = sum(step["seconds"] for step in run.record["steps"])
    (log.warning if status else log.info)(
        "decision: %s (%d steps, %.1f s)", decision, len(run.record["steps"]), took
    )
    return status


if __name__ == "__main__":
    run_main(main, NAME)
