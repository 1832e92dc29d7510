"""Model and data diagnostics: predictions, statistics, missing data, timing, dependencies, drift.

The course's diagnostics functions and the feature-drift check. They return values; app.py,
reporting.py and fullprocess.py (through this script) call them.

Reads
    prod_deployment_path/trainedmodel.pkl (riskmodel.load_deployed: checked against
    manifest.json before it is unpickled), prod_deployment_path/referencedata.csv (the
    deployed model's training features), output_folder_path/finaldata.csv,
    test_data_path/testdata.csv, requirements.txt.
Writes (main() only; output_model_path, atomically)
    diagnostics.json                     everything below, for the deployed model
    diagnostics_history/diagnostics-<UTC time>.json  each run, kept for trends
    Caches (timing, pip's answer) and the timing runs' temporary workspaces go to .cache/ beside
    the config file, never to the data folders; a workspace left by a killed run is removed by the
    next timing run.
Run
    python diagnostics.py
Exit status
    0 written; 65 a data file is missing or unusable; 69 no usable deployed model;
    1 the timing run failed; 78 bad config.json.
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
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

import riskmodel
from clientdata import feature_frame, read_data_file
from common import (
    CACHE_DIR,
    CONFIG_ENV,
    DIAGNOSTICS,
    DIAGNOSTICS_HISTORY,
    EXIT_PARTIAL,
    FEATURES,
    PROJECT_DIR,
    REFERENCE_DATA,
    REQUIRED_KEYS,
    Config,
    DeploymentUnavailable,
    PipelineError,
    atomic_write_json,
    command_line,
    file_lock,
    list_csv_files,
    live_folder,
    load_config,
    read_manifest,
    remove_leftovers,
    run_main,
    setup_logging,
    utc_now,
)

NAME = "diagnostics"
REQUIREMENTS = PROJECT_DIR / "requirements.txt"
KS_THRESHOLD = 0.05  # drift when the KS p-value is at or below this (Evidently's default)
PSI_BANDS = (0.1, 0.25)  # below: no change; between: moderate; above: significant
DRIFT_SHARE = 0.5  # the data set drifts when at least this share of features drifts
PSI_BINS = 10
FAILED_PIP_CACHE_SECONDS = 3600  # an offline answer is retried after an hour
TIMED_SCRIPTS = ("ingestion.py", "training.py")
TIMING_NICENESS = 10  # the timed scripts yield the CPU to the API's requests and to cron's runs

log = logging.getLogger(NAME)


def cache_dir(config: Config) -> Path:
    """Caches and locks live beside the config file, outside the data folders."""
    return config.path.parent / CACHE_DIR


def model_predictions(
    frame: pd.DataFrame, config: Config | None = None, source: str = "input data"
) -> list[int]:
    """The deployed model's 0/1 prediction for every row of frame, in row order.

    Any other columns (corporation, exited) and their order do not matter; a missing feature
    column is an InputError naming it.
    """
    config = config or load_config()
    return riskmodel.load_deployed(config.prod_folder).predict(feature_frame(frame, source)).tolist()


def risk_scores(frame: pd.DataFrame, config: Config | None = None, source: str = "input data") -> list[float]:
    """The deployed model's exit probability for every row of frame, in row order."""
    config = config or load_config()
    return riskmodel.load_deployed(config.prod_folder).exit_probability(feature_frame(frame, source)).tolist()


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
    return summary_statistics(read_data_file(config.finaldata_file))


def missing_percent(frame: pd.DataFrame) -> dict[str, float]:
    """{column: percent of NA values}, in column order."""
    if not len(frame):
        return {column: 0.0 for column in frame.columns}
    return {column: float(value) for column, value in (frame.isna().mean() * 100).round(6).items()}


def missing_data(config: Config | None = None) -> dict[str, float]:
    """Percent of NA values in each column of finaldata.csv, in column order (the course's list
    is list(missing_data().values()))."""
    config = config or load_config()
    return missing_percent(read_data_file(config.finaldata_file))


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
    cache = cache_dir(config)
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
    cache = cache_dir(config)
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
                    preexec_fn=lambda: os.nice(TIMING_NICENESS),
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
    answer is cached (dependency_cache_hours; an offline answer for an hour).
    """
    config = config or load_config()
    cache = cache_dir(config) / "dependencies.json"
    pins = requirement_pins()
    if not refresh:
        try:
            cached = json.loads(cache.read_text())
            max_age = (
                config["dependency_cache_hours"] * 3600 if cached["online"] else FAILED_PIP_CACHE_SECONDS
            )
            if time.time() - cached["checked"] < max_age and [
                row["module"] for row in cached["table"]
            ] == list(pins):
                return cached["table"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass
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
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache, {"checked": time.time(), "online": latest is not None, "table": table})
    return table


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS, epsilon: float = 1e-4) -> float:
    """Population stability index of current against reference, on the reference's quantile bins."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    inner_edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1))[1:-1])
    expected = np.bincount(
        np.searchsorted(inner_edges, reference, side="right"), minlength=len(inner_edges) + 1
    )
    actual = np.bincount(np.searchsorted(inner_edges, current, side="right"), minlength=len(inner_edges) + 1)
    expected = np.clip(expected / len(reference), epsilon, None)
    actual = np.clip(actual / len(current), epsilon, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def histogram(reference: np.ndarray, current: np.ndarray, bins: int = 12) -> dict:
    """Both distributions on common bins up to the 99th percentile of both (the last bin takes
    the tail), as shares: what the dashboard draws side by side."""
    top = float(max(np.quantile(reference, 0.99), np.quantile(current, 0.99)))
    low = float(min(reference.min(), current.min()))
    edges = np.linspace(low, top if top > low else low + 1.0, bins + 1)
    shares = []
    for values in (reference, current):
        counts = np.bincount(
            np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1), minlength=bins
        )
        shares.append((counts / len(values)).round(6).tolist())
    return {"edges": edges.round(3).tolist(), "reference": shares[0], "current": shares[1]}


def psi_band(value: float) -> str:
    if math.isnan(value):
        return "unknown"
    return "none" if value < PSI_BANDS[0] else "moderate" if value < PSI_BANDS[1] else "significant"


def compare_features(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    """Per feature KS test and PSI, and the data-set verdict."""
    features = []
    for feature in FEATURES:
        expected = pd.to_numeric(reference[feature], errors="coerce").dropna().to_numpy(float)
        actual = pd.to_numeric(current[feature], errors="coerce").dropna().to_numpy(float)
        if len(expected) == 0 or len(actual) == 0:
            features.append({"feature": feature, "ks_statistic": None, "ks_p_value": None, "psi": None,
                             "psi_band": "unknown", "drift": False})  # fmt: skip
            continue
        test = ks_2samp(expected, actual)
        value = psi(expected, actual)
        features.append(
            {
                "feature": feature,
                "ks_statistic": float(test.statistic),
                "ks_p_value": float(test.pvalue),
                "psi": value,
                "psi_band": psi_band(value),
                "drift": bool(test.pvalue <= KS_THRESHOLD),
                "reference_mean": float(expected.mean()),
                "current_mean": float(actual.mean()),
                "histogram": histogram(expected, actual),
            }
        )
    drifted = sum(feature["drift"] for feature in features)
    return {
        "features": features,
        "drifted_features": drifted,
        "share_drifted": drifted / len(features),
        "dataset_drift": drifted / len(features) >= DRIFT_SHARE,
        "thresholds": {
            "ks_p_value": KS_THRESHOLD,
            "psi_bands": list(PSI_BANDS),
            "dataset_share": DRIFT_SHARE,
        },
    }


def feature_drift(config: Config | None = None, current: pd.DataFrame | None = None) -> dict:
    """The deployed model's training data against the latest ingested data (current: finaldata.csv,
    when the caller has read it already)."""
    config = config or load_config()
    reference_path = live_folder(config.prod_folder, read_manifest(config.prod_folder)) / REFERENCE_DATA
    if not reference_path.is_file():
        raise DeploymentUnavailable(
            f"{reference_path}: the deployment has no training reference; redeploy a new model"
        )
    if current is None:
        current = read_data_file(config.finaldata_file)
    result = compare_features(read_data_file(reference_path), current)
    return {"reference": str(reference_path), "current": str(config.finaldata_file), **result}


def run_all(config: Config) -> dict:
    """Every diagnostic of the deployed model and the ingested data."""
    deployed = riskmodel.load_deployed(config.prod_folder)
    test = read_data_file(config.testdata_file)
    final = read_data_file(config.finaldata_file)
    return {
        "timestamp": utc_now(),
        "deployed_version": deployed.version,
        "model_sha256": deployed.sha256,
        "predictions": {
            "data": str(config.testdata_file),
            "values": deployed.predict(feature_frame(test, str(config.testdata_file))).tolist(),
        },
        "summary_statistics": summary_statistics(final),
        "missing_data_percent": missing_percent(final),
        "execution_time_seconds": dict(zip(("ingestion", "training"), execution_time(config), strict=True)),
        "dependencies": outdated_packages_list(config),
        "feature_drift": feature_drift(config, final),
    }


def main(argv: list[str] | None = None) -> int:
    command_line(__doc__).parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    report = run_all(config)
    target = config.model_folder / DIAGNOSTICS
    history = config.model_folder / DIAGNOSTICS_HISTORY
    history.mkdir(parents=True, exist_ok=True)
    stamp = report["timestamp"].replace(":", "").replace("-", "")
    atomic_write_json(history / f"diagnostics-{stamp}.json", report)
    atomic_write_json(target, report)
    drift = report["feature_drift"]
    outdated = [row["module"] for row in report["dependencies"] if row["outdated"]]
    log.info(
        "deployed version %s: %d predictions, ingestion %.2fs, training %.2fs, drifted features %d/%d, "
        "outdated packages %s; wrote %s",
        report["deployed_version"],
        len(report["predictions"]["values"]),
        *report["execution_time_seconds"].values(),
        drift["drifted_features"],
        len(drift["features"]),
        ", ".join(outdated) or "none",
        target,
    )
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
