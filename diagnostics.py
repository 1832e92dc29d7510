"""Model and data diagnostics: the course's functions, for the live version and the ingested data.

The course's diagnostics functions return values; app.py (the API's routes), reporting.py and
this script call them. Underneath they use the API's fast path (serving.py): the live model's
closed form (plain numbers of trainedmodel.json, checked against manifest.json: nothing is
unpickled) and data files cached until they change.
    predict(data, config)           the live version's predictions and probabilities (model_predictions)
    dataframe_summary(config)       mean, median, mode, std of each numeric column of finaldata.csv
    missing_data(config)            percent missing in each column of finaldata.csv
    execution_time(config)          seconds of ingestion.py and training.py, timed on a copy (or the
                                    seconds fullprocess.py's own steps took: --measured)
    outdated_packages_list(config)  installed and latest version of each requirement
Drift has its own home (drift.py); diagnostics.json carries drift since the live version was
trained, stamped with the version and data it describes.

Reads
    the live version (production.py), output_folder_path/finaldata.csv,
    test_data_path/testdata.csv, requirements.txt.
Writes (main() only; output_model_path, atomically)
    diagnostics.json                     everything above, stamped (model_version, data_sha256)
    diagnostics_history/diagnostics-<UTC time>.json  each run, kept for trends
    Caches (timing, pip's answer) and the timing runs' temporary workspaces go to .cache/ beside
    the config file, never to the data folders; a workspace left by a killed run is removed by the
    next timing run.
Run
    python diagnostics.py
    python diagnostics.py --measured 0.7 2.3   seconds already measured on the current inputs: not
                                               timed again (fullprocess.py, after retraining)
Exit status
    0 written; 69 no usable deployed model, or finaldata.csv / testdata.csv missing or unusable;
    1 the timing run failed; 74 disk full; 78 bad config.json.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from attrition.api import serving
from attrition.core.config import REQUIRED_KEYS, Config, load_config
from attrition.core.errors import EXIT_PARTIAL, DataUnavailable, DeploymentUnavailable, PipelineError
from attrition.core.files import atomic_write_json
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import CONFIG_ENV, DIAGNOSTICS, DIAGNOSTICS_HISTORY, PROJECT_DIR
from attrition.core.processes import die_with_parent, file_lock, remove_leftovers
from attrition.core.records import list_csv_files, utc_now
from attrition.data.clientdata import feature_frame
from attrition.model import riskmodel
from attrition.monitoring import drift
from attrition.production import versions

NAME = "diagnostics"
REQUIREMENTS = PROJECT_DIR / "requirements.txt"
FAILED_PIP_CACHE_SECONDS = 3600  # an offline answer is retried after an hour
TIMED_SCRIPTS = ("ingestion.py", "training.py")
TIMING_NICENESS = 10  # the timed scripts yield the CPU to the API's requests and to cron's runs

log = logging.getLogger(NAME)


@dataclass(frozen=True)
class Predictions:
    """The live version's answers for some rows."""

    version: int | None
    scorer: riskmodel.LinearScorer
    predictions: np.ndarray  # 0/1
    probabilities: np.ndarray  # of exited=1


def predict(
    data: pd.DataFrame | np.ndarray, config: Config | None = None, source: str = "input data"
) -> Predictions:
    """The live version's predictions for data: a frame with the feature columns (any others and
    their order do not matter; a missing feature column is an InputError naming it) or a float
    matrix of the FEATURES columns in order."""
    config = config or load_config()
    served = serving.served_model(config.prod_folder)
    matrix = data if isinstance(data, np.ndarray) else feature_frame(data, source).to_numpy()
    predictions, probabilities = served.predict(matrix)
    return Predictions(served.version, served.scorer, predictions, probabilities)


def model_predictions(
    frame: pd.DataFrame, config: Config | None = None, source: str = "input data"
) -> list[int]:
    """The course's model_predictions: the live version's 0/1 prediction for every row, in row order."""
    return predict(frame, config, source).predictions.tolist()


def _float_or_none(value) -> float | None:
    """A JSON-ready number: NaN (the statistic of an empty column) becomes None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def summary_statistics(frame: pd.DataFrame) -> dict[str, dict[str, float | None]]:
    """{column: {mean, median, mode, std}} of each numeric column, in column order."""
    summary = {}
    for column in frame.select_dtypes("number").columns:
        values = frame[column].dropna()
        modes = values.mode()
        summary[column] = {
            "mean": _float_or_none(values.mean()),
            "median": _float_or_none(values.median()),
            "mode": _float_or_none(modes.iloc[0]) if len(modes) else None,  # the smallest when tied
            "std": _float_or_none(values.std()),
        }
    return summary


def dataframe_summary(config: Config | None = None) -> dict[str, dict[str, float | None]]:
    """Mean, median, mode and standard deviation of each numeric column of finaldata.csv.

    The course's flat list is [value for stats in dataframe_summary().values() for value in
    stats.values()]: mean, median, mode, std of the first column, then of the next, ...
    """
    config = config or load_config()
    return summary_statistics(serving.server_data(config.finaldata_file))


def missing_percent(frame: pd.DataFrame) -> dict[str, float]:
    """{column: percent of NA values}, in column order."""
    if not len(frame):
        return {column: 0.0 for column in frame.columns}
    return {column: float(value) for column, value in (frame.isna().mean() * 100).round(6).items()}


def missing_data(config: Config | None = None) -> dict[str, float]:
    """Percent of NA values in each column of finaldata.csv, in column order (the course's list
    is list(missing_data().values()))."""
    config = config or load_config()
    return missing_percent(serving.server_data(config.finaldata_file))


def figures_of_finaldata(config: Config, key: str, compute):
    """diagnostics.json's figures under key ("summary_statistics", "missing_data_percent") when its
    stamp says they describe the ingested data of now, as the API serves them: computed once per
    run, not per request. Without such a record, compute(config) when finaldata.csv is no larger
    than a request may be (api_max_body_bytes), else DataUnavailable (503) saying what to run."""
    report = versions.read_json(config.model_folder / DIAGNOSTICS)
    data = versions.data_fingerprint(config)
    if isinstance(report, dict) and key in report and data is not None:
        if (versions.stamp_of(report) or {}).get("data_sha256") == data:
            return report[key]
    try:
        size = config.finaldata_file.stat().st_size
    except OSError:
        size = 0  # serving.server_data says what is wrong with it
    if size > config["api_max_body_bytes"]:
        raise DataUnavailable(
            f"{config.relative(config.finaldata_file)} ({size:,} bytes) is larger than a request reads "
            f"and {DIAGNOSTICS} does not describe it yet: run diagnostics.py (fullprocess.py runs it)"
        )
    return compute(config)


def recorded_drift(config: Config, state: versions.Live, data_sha256: str | None) -> dict | None:
    """diagnostics.json's drift since the live version was trained, when its stamp says it describes
    that version and this data (fullprocess.py runs diagnostics.py just before reporting.py: the KS
    tests over every row of finaldata.csv, once per run, not twice); else None."""
    report = versions.read_json(config.model_folder / DIAGNOSTICS)
    if not isinstance(report, dict) or not isinstance(report.get("feature_drift"), dict):
        return None
    stamp = versions.stamp_of(report)
    if data_sha256 is None or versions.stamp_problem(stamp, state, data_sha256) is not None:
        return None
    return report["feature_drift"]


def execution_time(config: Config | None = None, max_age: float = 0.0) -> list[float]:
    """[ingestion seconds, training seconds]: the real scripts, timed on a temporary workspace.

    The temporary config reads the real input folder (through a link) and writes every output
    into a temporary folder, so nothing in the real folders changes. Concurrent callers share
    one run: the second waits for the first and takes its answer. With max_age, a timing of
    the same input files (names, sizes, modification times) at most max_age seconds old is
    reused: the API passes the cron period, so that fullprocess.py's diagnostics.py and its
    /diagnostics call do not time the same work twice. The scripts run at nice 10 (what a busy
    machine reports is the time they take at that priority), and a caller waits for another's
    run by polling the lock, which an API worker serves other requests during.
    """
    config = config or load_config()
    cache = config.cache_folder
    cache.mkdir(parents=True, exist_ok=True)
    result_path = cache / "timing.json"
    requested = time.time()
    inputs = input_signature(config)
    with file_lock(cache / "timing.lock", poll=0.05):
        try:
            previous = json.loads(result_path.read_text())
            if previous["finished"] >= requested:  # another caller's run finished while we waited
                return previous["seconds"]
            if previous["inputs"] == inputs and requested - previous["finished"] <= max_age:
                return previous["seconds"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass
        seconds = time_scripts(config)
        atomic_write_json(result_path, {"finished": time.time(), "inputs": inputs, "seconds": seconds})
    return seconds


def keep_timing(config: Config, seconds: list[float]) -> list[float]:
    """A caller's own timing of ingestion.py and training.py on the current input files (fullprocess.py
    passes the seconds its steps just took: timing them again would do the run's work twice), kept
    as execution_time's answer for those files (the API's /diagnostics reuses it like its own)."""
    cache = config.cache_folder
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / "timing.lock", poll=0.05):
        atomic_write_json(
            cache / "timing.json",
            {"finished": time.time(), "inputs": input_signature(config), "seconds": seconds},
        )
    return seconds


def input_signature(config: Config) -> list[list]:
    """[name, size, mtime] of each input file: what a timing is valid for."""
    if not config.input_folder.is_dir():
        return []
    return [
        [path.name, path.stat().st_size, path.stat().st_mtime_ns]
        for path in list_csv_files(config.input_folder)
    ]


def time_scripts(config: Config) -> list[float]:
    """Run ingestion.py and training.py on a temporary workspace that reads the real input folder."""
    cache = config.cache_folder
    remove_leftovers(cache)  # a timing workspace whose run was killed with its caller
    with tempfile.TemporaryDirectory(prefix=f"timing-{os.getpid()}-", dir=cache) as temp:
        workspace = Path(temp)
        (workspace / "input").symlink_to(config.input_folder, target_is_directory=True)
        folders = dict(
            zip(REQUIRED_KEYS, ("input", "ingesteddata", "testdata", "models", "production"), strict=True)
        )
        temp_config = workspace / "config.json"
        temp_config.write_text(json.dumps(folders))
        env = {**os.environ, CONFIG_ENV: str(temp_config)}
        seconds = []
        for script in TIMED_SCRIPTS:
            started = time.perf_counter()
            try:
                result = subprocess.run(
                    [sys.executable, str(PROJECT_DIR / script)],
                    cwd=workspace,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=config["step_timeout_seconds"],
                    preexec_fn=lambda: (os.nice(TIMING_NICENESS), die_with_parent()),  # no orphan
                )
            except subprocess.TimeoutExpired:
                raise PipelineError(
                    f"timing {script} did not finish within {config['step_timeout_seconds']} s"
                ) from None
            seconds.append(round(time.perf_counter() - started, 4))
            if result.returncode not in (0, EXIT_PARTIAL):
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise PipelineError(f"timing {script} failed (exit {result.returncode}): {last}")
        return seconds


def requirement_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """{name: pinned version} of a requirements file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)\s*==\s*([^\s;]+)", line)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _ask_pip(timeout: float) -> dict[str, str] | None:
    """{normalised name: latest version} from pip, or None when pip cannot reach an index."""
    base = [sys.executable, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"]
    network = ["--retries", "0", "--timeout", str(max(1, int(timeout / 3)))]
    processes = [
        subprocess.Popen([*base, flag, *network], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for flag in ("--outdated", "--uptodate")
    ]
    deadline = time.monotonic() + timeout
    latest: dict[str, str] = {}
    try:
        for process, key in zip(processes, ("latest_version", "version"), strict=True):
            stdout, _ = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
            if process.returncode != 0:
                return None
            for entry in json.loads(stdout or "[]"):
                latest[_normalise(entry["name"])] = entry[key]
    except (subprocess.TimeoutExpired, ValueError):
        return None
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return latest


def outdated_packages_list(config: Config | None = None, refresh: bool = False) -> list[dict]:
    """module | installed | latest for every package of requirements.txt, by running pip.

    pip is bounded by dependency_timeout_seconds; without an index latest is "unknown". The
    answer is cached (dependency_cache_hours; an offline answer for an hour). One pip at a
    time: concurrent callers (API workers, a run) wait for the one running, polling its lock,
    and take its answer.
    """
    config = config or load_config()
    cache = config.cache_folder / "dependencies.json"
    pins = requirement_pins()
    requested = time.time()

    def cached_table(fresh_after: float | None) -> list[dict] | None:
        try:
            cached = json.loads(cache.read_text())
            max_age = (
                config["dependency_cache_hours"] * 3600 if cached["online"] else FAILED_PIP_CACHE_SECONDS
            )
            young = fresh_after is None and time.time() - cached["checked"] < max_age
            if (young or (fresh_after is not None and cached["checked"] >= fresh_after)) and [
                row["module"] for row in cached["table"]
            ] == list(pins):
                return cached["table"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass
        return None

    if not refresh and (table := cached_table(None)) is not None:
        return table
    with file_lock(config.cache_folder / "dependencies.lock", poll=0.05):
        # another caller's pip may have answered while this one waited
        table = cached_table(requested if refresh else None)
        if table is not None:
            return table
        latest = _ask_pip(config["dependency_timeout_seconds"])
        table = []
        for module, pinned in pins.items():
            try:
                installed = importlib.metadata.version(module)
            except importlib.metadata.PackageNotFoundError:
                installed = "not installed"
            newest = (latest or {}).get(_normalise(module), "unknown")
            table.append(
                {
                    "module": module,
                    "required": pinned,
                    "installed": installed,
                    "latest": newest,
                    "outdated": newest not in ("unknown", installed),
                }
            )
        atomic_write_json(cache, {"checked": time.time(), "online": latest is not None, "table": table})
    return table


def run_all(config: Config, measured: list[float] | None = None) -> dict:
    """Every diagnostic of the live version and the ingested data, stamped with what it describes.
    measured: [ingestion, training] seconds the caller timed on the current inputs (else timed here)."""
    state = versions.live(config)
    if state is None:
        raise DeploymentUnavailable(
            f"{config.prod_folder}: no deployment yet; run deployment.py (or fullprocess.py)"
        )
    data_sha256 = versions.data_fingerprint(config)
    test = serving.server_data(config.testdata_file)
    final = serving.server_data(config.finaldata_file)
    return {
        "timestamp": utc_now(),
        "stamp": versions.stamp(config, state, data_sha256),
        "deployed_version": state.version,
        "model_sha256": state.model_sha256,
        "predictions": {
            "data": config.relative(config.testdata_file),
            "values": model_predictions(test, config, config.relative(config.testdata_file)),
        },
        "summary_statistics": dataframe_summary(config),
        "missing_data_percent": missing_data(config),
        "execution_time_seconds": dict(
            zip(
                ("ingestion", "training"),
                keep_timing(config, measured) if measured else execution_time(config),
                strict=True,
            )
        ),
        "dependencies": outdated_packages_list(config),
        "feature_drift": drift.since_training(config, state, final),
    }


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
