"""One run of the pipeline, as fullprocess.py runs it: the seed's flow, each step a script run
as a subprocess (Run.step), every decision explained in the log and the run record.

1. New data: every *.csv of input_folder_path whose name is not in the deployed
   ingestedfiles.txt and was not already decided on, or whose content changed (size and
   mtime, then sha256, against the ingestion record). None: one log line, exit 0. This
   path imports no data library.
2. ingestion.py.
3. Drift (model/decisions.py's rule): the deployed model's F1 on the new finaldata.csv
   (scoring.py --deployed) against the deployed latestscore.txt (its sha256 verified), by
   drift_test (raw, parametric, nonparametric). No drift: recorded; diagnostics, call list and
   report refreshed on the new data; exit 0.
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
   api_host:api_port, a temporary gunicorn (attrition/api/server.py) serves the calls.
An empty production folder is bootstrapped: ingest, train, score, deploy, report (a missing
or damaged manifest.json is not empty: production's repair restores it from the archive).
One configuration per run: config.json is read once and every step gets that text (an edit
takes effect from the next run). Every run checks the sha256 of the live files a decision reads.
What a killed run started, the next one finishes: production's repairs (attrition/production/repair.py), a
killed step's temporary files in every folder the pipeline writes, a deployment's reports, and
reports that describe another version or older data than the live ones (attrition/production/stamps.py).

"""

from __future__ import annotations

import json
import logging

from attrition.core.errors import EXIT_LOCKED, EXIT_PARTIAL, DiskFull, PipelineError, disk_full
from attrition.core.logs import LogFileHandler
from attrition.core.names import LATESTSCORE, MANIFEST, RUN_HISTORY
from attrition.core.records import append_jsonl, list_csv_files, read_score, utc_now
from attrition.model import decisions
from attrition.monitoring import notify
from attrition.pipeline import newdata
from attrition.pipeline.recovery import (
    check_production,
    finish_pending_report,
    rebuild_missing_data,
    recover_run_record,
    refresh_stale_reports,
)
from attrition.pipeline.steps import (
    Busy,
    Run,
    Superseded,
    deploy,
    ingest,
    log,
    refresh_reports,
    retrain,
    write_decision,
)
from attrition.production import repair, versions


def execute(run: Run, args) -> str:
    """The seed's flow; returns the decision. Raises StepFailed when a step fails."""
    config = run.config
    if not args.dry_run:
        if not check_production(run, args.force):  # broken, and --force: replace the live version
            ingest(run)
            retrain(run)
            deploy(run, second=True, summary="Retrained and deployed over a broken live version (--force)")
            return "redeployed over a broken version"
        finish_what_a_killed_run_started(run)
    empty = not (config.prod_folder / MANIFEST).is_file()
    if args.dry_run and versions.live_version(config) is None and repair.restorable(config.prod_folder):
        state = "missing" if empty else "damaged"
        run.reason(f"{MANIFEST} is {state}: a run would restore the last live version from the archive first")
        return "dry run"
    if empty:
        return bootstrap(run, args.dry_run)
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
    decision, deployed_score = check_drift(run)
    if not decision["drift"]:
        if not args.force:
            keep_the_deployed_model(run)
            return "no drift: kept the deployed model"
        run.reason("--force: retraining anyway")
    retrain(run)
    gate = promotion_gate(run, deployed_score, args.force)
    if not gate["deploy"]:  # decision.json names the refused model: deployment.py by hand refuses it too
        write_decision(run, "The promotion gate refused the retrained model: the deployed model stays")
        keep_the_deployed_model(run)
        return "gate refused: kept the deployed model"
    deploy(run, second=True, summary=decisions.why_redeployed(decision["drift"], gate["passed"], args.force))
    return "redeployed"


def finish_what_a_killed_run_started(run: Run) -> None:
    recover_run_record(run)
    rebuild_missing_data(run)
    finish_pending_report(run)
    refresh_stale_reports(run)


def bootstrap(run: Run, dry_run: bool) -> str:
    """An empty production folder: ingest every input file, train, score, deploy and report."""
    config = run.config
    new = [path.name for path in list_csv_files(config.input_folder)] if config.input_folder.is_dir() else []
    run.record["new_files"] = new
    if dry_run:
        run.reason(f"production is empty: would ingest {len(new)} files, train, score, deploy and report")
        return "dry run"
    run.reason(f"production is empty: bootstrap from {config.input_folder} ({len(new)} files)")
    run.expected = "none"
    ingest(run)
    retrain(run)
    summary = f"First deployment: trained on the files of {config.relative(config.input_folder)}"
    deploy(run, second=False, summary=summary)
    return "bootstrapped"


def check_drift(run: Run) -> tuple[dict, float]:
    """The deployed model's F1 on the new finaldata.csv (scoring.py --deployed) against its recorded
    score, by the configured test (decisions.drift); returns (the decision, the deployed score)."""
    # the new-data path only: the nothing-new path imports no data library
    from attrition.monitoring import drift

    config = run.config
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
    history = drift.deployed_score_history(config)
    decision = decisions.drift(
        config["drift_test"], new_score, deployed_score, history, config["drift_tolerance"]
    )
    run.record["drift"] = decision
    if decision["note"]:
        run.reason(decision["note"])
    run.reason(
        f"drift check ({decision['test_used']}): deployed model F1 {new_score:.4f} on the new data, "
        f"threshold {decision['threshold']:.4f} ({decision['rule']}): "
        f"{'DRIFT' if decision['drift'] else 'no drift'}"
    )
    return decision, deployed_score


def promotion_gate(run: Run, deployed_score: float, force: bool) -> dict:
    """decisions.gate on the candidate's F1 (latestscore.txt) against the deployed model's."""
    config = run.config
    candidate = read_score(config.model_folder / LATESTSCORE)
    gate = decisions.gate(candidate, deployed_score, config["promotion_gate"], force)
    run.record["gate"] = gate
    run.reason(
        f"promotion gate: candidate F1 {gate['candidate_f1']:.4f} vs deployed {deployed_score:.4f} "
        f"on testdata: {'passes' if gate['passed'] else 'fails'}"
    )
    if gate["deploy"] and not gate["passed"]:
        run.reason(
            "--force: deploying anyway" if gate["forced"] else "promotion_gate is off: deploying anyway"
        )
    return gate


def keep_the_deployed_model(run: Run) -> None:
    """No redeployment: the call list and report refreshed on the new data, the files decided on."""
    refresh_reports(run)
    newdata.mark_processed(run.config)


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
