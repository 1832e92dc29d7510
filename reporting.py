"""Reports on the live version: the call list, drift figures, confusion matrix and PDF report.

Every output is computed for one snapshot of the live version and the latest ingested data, and
says so (a stamp: version, model sha256, data fingerprint). fullprocess.py runs it whenever the
live version or the ingested data changes, deployment.py --rollback after a rollback.
Reads
    the live version's numbers, testdata/testdata.csv, output_folder_path/finaldata.csv and
    finaldataextracts.csv, earlier versions' training data, the score and deployment histories
Writes (output_model_path, each file atomically)
    riskranking.csv, lostclients.csv, riskranking.json   the call list, the clients lost since
                         the last list, and what they were computed for
    riskdata.sqlite      the lists and finaldata.csv's rows as the dashboard and the API query them
    drift.json           the two drift comparisons, stamped
    confusionmatrix.png  the live version on testdata (--output picks another name)
    report.pdf           page 1 for a client manager, then metrics, ROC, F1 history, summary
                         statistics, missing data, drift, the first 20 clients
Keeps (prod_deployment_path/archive/vNNNN/reports/)
    the first report of a version with the files above; every later one as report-<UTC time>.pdf
Run
    python reporting.py
    python reporting.py --output confusionmatrix2.png
Exit status
    0 written; 65 testdata is missing or unusable; 69 no usable deployed model, or finaldata.csv
    missing or unusable; 74 disk full; 78 bad config.json; 2 a usage error (--output not a .png name).
"""

from __future__ import annotations

from pathlib import Path

from attrition.core.config import load_config
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import CONFUSION_MATRIX
from attrition.monitoring import drift
from attrition.reports.reporting import NAME, log, report_live_version


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument(
        "--output", default=CONFUSION_MATRIX, help="confusion matrix file name (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if Path(args.output).name != args.output or not args.output.lower().endswith(".png"):
        parser.error(
            f"--output {args.output!r}: give a file name ending in .png (it goes to the model folder)"
        )
    setup_logging(NAME)
    config = load_config()
    outputs = report_live_version(config, args.output)
    log.info(
        "version %d: wrote %s and %s (%d clients to call, %d lost since the last list; %s: %s); kept in %s",
        outputs["version"],
        ", ".join(config.relative(path) for path in outputs["written"]),
        config.relative(outputs["report"]),
        outputs["calls"],
        outputs["lost"],
        drift.SINCE,
        drift.verdict(outputs["since_training"]),
        config.relative(outputs["kept"]),
    )
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
