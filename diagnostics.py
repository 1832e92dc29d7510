"""Model and data diagnostics of the live version: the course's functions, and diagnostics.json.

The course's functions (importable from here as before; attrition/monitoring/ holds them):
    model_predictions(frame)        the live version's 0/1 prediction for every row
    dataframe_summary()             mean, median, mode, std of each numeric column of finaldata.csv
    missing_data()                  percent missing in each column of finaldata.csv
    execution_time()                seconds of ingestion.py and training.py, timed on a copy
    outdated_packages_list()        installed and latest version of each requirement
Reads
    the live version, output_folder_path/finaldata.csv, test_data_path/testdata.csv, requirements.txt
Writes (output_model_path, atomically)
    diagnostics.json                everything above and drift since training, stamped with the
                                    version and data it describes
    diagnostics_history/diagnostics-<UTC time>.json  each run, kept for trends
    Caches (timing, pip's answer) go to .cache/ beside the config file, never the data folders.
Run
    python diagnostics.py
    python diagnostics.py --measured 0.7 2.3   seconds already measured on the current inputs: not
                                               timed again (fullprocess.py, after retraining)
Exit status
    0 written; 69 no usable deployed model, or finaldata.csv / testdata.csv missing or unusable;
    1 the timing run failed; 74 disk full; 78 bad config.json.
"""

from __future__ import annotations

import math

from attrition.core.config import load_config
from attrition.core.files import atomic_write_json
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import DIAGNOSTICS, DIAGNOSTICS_HISTORY
from attrition.monitoring import drift
from attrition.monitoring.dependencies import outdated_packages_list
from attrition.monitoring.diagnostics import (
    NAME,
    dataframe_summary,
    log,
    missing_data,
    model_predictions,
    run_all,
)
from attrition.monitoring.timing import execution_time

# the course's functions, importable from this script as before
__all__ = [
    "model_predictions",
    "dataframe_summary",
    "missing_data",
    "execution_time",
    "outdated_packages_list",
]


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument(
        "--measured",
        nargs=2,
        type=float,
        metavar=("INGESTION", "TRAINING"),
        help="seconds ingestion.py and training.py just took on the current input files (fullprocess.py "
        "passes its own steps'): used instead of timing them again",
    )
    args = parser.parse_args(argv)
    if args.measured and not all(0 <= value < math.inf for value in args.measured):
        parser.error(f"--measured: seconds must be finite and not negative, not {args.measured}")
    setup_logging(NAME)
    config = load_config()
    report = run_all(config, args.measured)
    target = config.model_folder / DIAGNOSTICS
    history = config.model_folder / DIAGNOSTICS_HISTORY
    history.mkdir(parents=True, exist_ok=True)
    stamp = report["timestamp"].replace(":", "").replace("-", "")
    atomic_write_json(history / f"diagnostics-{stamp}.json", report)
    atomic_write_json(target, report)
    figures = report["feature_drift"]
    outdated = [row["module"] for row in report["dependencies"] if row["outdated"]]
    log.info(
        "deployed version %s: %d predictions, ingestion %.2fs, training %.2fs, %s %s, "
        "outdated packages %s; wrote %s",
        report["deployed_version"],
        len(report["predictions"]["values"]),
        *report["execution_time_seconds"].values(),
        drift.SINCE,
        drift.verdict(figures),
        ", ".join(outdated) or "none",
        target,
    )
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
