"""The unattended loop: new data -> ingest -> drift check -> retrain -> gate -> redeploy -> report.

cron runs it every 10 minutes (crontab.txt). It chains the other scripts as subprocesses (each
bounded by step_timeout_seconds) and explains every decision in its log; the flow, step by step,
is attrition/pipeline/run.py's execute. With nothing new it logs one line and imports no data
library. An empty production folder is bootstrapped: ingest, train, score, deploy, report. What a
killed run started, the next one finishes (attrition/pipeline/recovery.py).

Reads/writes
    the other scripts' files; in prod_deployment_path: runhistory.jsonl (one JSON line per run),
    fullprocess.log, processedfiles.json (the input files decided on), .fullprocess.lock;
    decision.json beside a model it deploys (why). Tells people through the notify_urls.
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
    74 a disk filled up (the line names the file; a deployment whose run record was lost is
      recorded by the next run)
    75 another run holds a lock (a deployment by hand: for less than 20 minutes)
    78 bad config.json; 2 a usage error
"""

from __future__ import annotations

import os

from attrition.core.config import load_config
from attrition.core.errors import EXIT_LOCKED
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.processes import file_lock
from attrition.pipeline import summary
from attrition.pipeline.run import finish
from attrition.pipeline.steps import LOCK, NAME, Run, log

SWITCHES = {
    "--force": "retrain and redeploy whatever drift and gate say",
    "--dry-run": "say what would happen, change nothing",
    "--summary": "print what the last run decided and wrote, and what to do next; run nothing",
}


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    for flag, words in SWITCHES.items():
        parser.add_argument(flag, action="store_true", help=words)
    args = parser.parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    if args.summary:
        print(summary.summary(config))
        return 0
    os.environ.update(config.frozen())  # every step uses this run's configuration: an edit waits for the next
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


if __name__ == "__main__":
    run_main(main, NAME)
