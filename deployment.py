"""Deploy the trained model, its score and the ingestion record to production.

It creates no model: it copies files. Each version is written whole into its own folder, then one
atomic replace of manifest.json makes it live, so every reader sees the old version or the new one.
Before every deploy and rollback it repairs what a killed run left (attrition/production/repair.py).

Reads
    output_model_path: trainedmodel.pkl, trainedmodel.json, latestscore.txt, latestscore.json
    (and referencedata.csv, decision.json when present); output_folder_path: ingestedfiles.txt,
    ingestionrecord.json. Files that do not describe one model and its data: refused (65).
Writes (prod_deployment_path)
    archive/vNNNN/    the version's files, its manifest.json and live.json, read-only
    manifest.json     the live version (replaced atomically: the switch)
    trainedmodel.pkl, trainedmodel.json, latestscore.txt, ingestedfiles.txt   the course's copies
    deployments.jsonl one line per deployment or rollback
Run
    python deployment.py                          # deploy what training and scoring produced
    python deployment.py --force                  # also a model the promotion gate refused
    python deployment.py --expect-manifest SHA256 # only if production is still that state
    python deployment.py --rollback               # back to the version live before; then
                                                  # reporting.py refreshes the report for it
Exit status
    0 deployed or rolled back; 65 a missing or inconsistent file, or a model the gate refused;
    75 production changed since --expect-manifest; 1 nothing to roll back to, a damaged archive,
    a broken live version or another checkout's production; 74 a full disk; 78 bad config.json.
    Production is unchanged in each failure unless the line says otherwise.
Start-up
    It imports no data library: a rollback is a file switch (tens of milliseconds).
"""

from __future__ import annotations

import os
import subprocess
import sys

from attrition.core.config import Config, load_config
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import PROJECT_DIR, RISK_RANKING_BASIS
from attrition.core.processes import die_with_parent
from attrition.production.deploy import NAME, deploy, log, rollback
from attrition.production.stamps import read_stamp


def refresh_reports(config: Config, version: int) -> None:
    """After a rollback, the report and the call list describe the version live again (reporting.py
    in its own process). A failure leaves the rollback done and says so; the next fullprocess.py
    run refreshes them. Without a call list yet (deployed by hand, never reported) there is
    nothing to refresh: fullprocess.py's rule too (refresh_stale_reports); reporting.py writes
    the first."""
    if read_stamp(config.model_folder / RISK_RANKING_BASIS) is None:
        log.info(
            "version %d is live; there is no call list or report to refresh yet (reporting.py writes them)",
            version,
        )
        return

    result = subprocess.run(
        [sys.executable, str(PROJECT_DIR / "reporting.py")],
        capture_output=True,
        text=True,
        env={**os.environ, **config.frozen()},
        preexec_fn=die_with_parent,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning(
            "version %d is live; its reports were not refreshed (%s); the next fullprocess.py run "
            "refreshes them",
            version,
            last,
        )
    else:
        log.info("refreshed the report and the call list for version %d", version)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--rollback", action="store_true", help="go back to the version that was live before")
    parser.add_argument(
        "--force", action="store_true", help="deploy a model the promotion gate refused (marked forced)"
    )
    parser.add_argument(
        "--expect-manifest",
        metavar="SHA256",
        help="deploy only if manifest.json still has this "
        "sha256 ('none': production empty); exit 75 otherwise (fullprocess.py's compare and swap)",
    )
    args = parser.parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    if args.rollback:
        manifest = rollback(config)
        log.info(
            "rolled back %s from version %d to version %d (F1 %s)",
            config.prod_folder,
            manifest["rolled_back_from"],
            manifest["version"],
            manifest["f1"],
        )
        refresh_reports(config, manifest["version"])
    else:
        manifest = deploy(config, args.expect_manifest, args.force)
        forced = " past the promotion gate's refusal (--force)" if manifest.get("forced") else ""
        log.info(
            "deployed version %d (F1 %s) to %s%s",
            manifest["version"],
            manifest["f1"],
            config.prod_folder,
            forced,
        )
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
