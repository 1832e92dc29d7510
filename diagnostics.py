"""Model and data diagnostics: predictions, statistics, missing data, timing, dependencies, drift.

The functions return values; app.py, reporting.py and fullprocess.py call them.

Reads
    prod_deployment_path/trainedmodel.pkl (checked against manifest.json before it
    is unpickled), prod_deployment_path/referencedata.csv (the deployed model's
    training features), output_folder_path/finaldata.csv, testdata/testdata.csv,
    requirements.txt.
Writes (main() only, output_model_path, atomically)
    diagnostics.json                     everything below, for the deployed model
    diagnostics_history/diagnostics-<UTC time>.json  each run, kept for trends
    Caches go to .cache/ beside the config file, never to the data folders.
Run
    python diagnostics.py
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
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common import (
    FEATURES,
    MODEL,
    PROJECT_DIR,
    REFERENCE_DATA,
    Config,
    ModelIntegrityError,
    PipelineError,
    atomic_write_json,
    file_lock,
    load_config,
    read_deployed_model_bytes,
    run_main,
    setup_logging,
    utc_now,
)

NAME = "diagnostics"
DIAGNOSTICS = "diagnostics.json"
DIAGNOSTICS_HISTORY = "diagnostics_history"
REQUIREMENTS = PROJECT_DIR / "requirements.txt"
KS_THRESHOLD = 0.05  # drift when the KS p-value is at or below this (Evidently's default)
PSI_BANDS = (0.1, 0.25)  # below: no change; between: moderate; above: significant
DRIFT_SHARE = 0.5  # the data set drifts when at least this share of features drifts
PSI_BINS = 10
FAILED_PIP_CACHE_SECONDS = 3600  # an offline answer is retried after an hour

log = logging.getLogger(NAME)


def cache_dir(config: Config) -> Path:
    """Caches and locks live beside the config file, outside the data folders."""
    return config.path.parent / ".cache"


def _stamp(*paths: Path) -> tuple:
    """What changes when any of the files is replaced or rewritten."""
    stamp = []
    for path in paths:
        try:
            stat = path.stat()
        except FileNotFoundError:
            stamp.append(None)
            continue
        stamp.append((stat.st_ino, stat.st_mtime_ns, stat.st_size))
    return tuple(stamp)


class LinearScorer:
    """A fitted Pipeline(SimpleImputer, LogisticRegression) in closed form, for serving.

    The same arithmetic as scikit-learn's predict/predict_proba without its per-call input
    validation, which costs more than the prediction itself on a few rows. Built only for
    that exact pipeline and checked against the model's own answers when loaded.
    """

    def __init__(self, fill: np.ndarray, coef: np.ndarray, intercept: float, classes: np.ndarray):
        self.fill, self.coef, self.intercept, self.classes = fill, coef, intercept, classes

    def decision(self, matrix: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(matrix), self.fill, matrix)
        return filled @ self.coef + self.intercept

    def predict_proba(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy.special import expit

        decision = self.decision(matrix)
        return self.classes[(decision > 0).astype(int)], expit(decision)


def compile_scorer(model) -> LinearScorer | None:
    """A LinearScorer equal to model on probe rows, or None (then scikit-learn serves)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    steps = getattr(model, "steps", None)
    if not (
        isinstance(model, Pipeline)
        and len(steps) == 2
        and type(steps[0][1]) is SimpleImputer
        and type(steps[1][1]) is LogisticRegression
        and not steps[0][1].add_indicator
        and len(steps[1][1].classes_) == 2
        and steps[1][1].coef_.shape == (1, len(FEATURES))
        and list(getattr(model, "feature_names_in_", FEATURES)) == list(FEATURES)
    ):
        return None
    imputer, regression = steps[0][1], steps[1][1]
    scorer = LinearScorer(imputer.statistics_.astype(float), regression.coef_[0].astype(float),
                          float(regression.intercept_[0]), regression.classes_)  # fmt: skip
    rng = np.random.default_rng(0)
    probe = rng.gamma(1.0, 500.0, size=(256, len(FEATURES)))
    probe[rng.random(probe.shape) < 0.1] = np.nan
    frame = pd.DataFrame(probe, columns=list(FEATURES))
    predicted, probability = scorer.predict_proba(probe)
    if not (
        np.array_equal(predicted, model.predict(frame))
        and np.allclose(probability, model.predict_proba(frame)[:, 1], rtol=0, atol=1e-12)
    ):
        return None
    return scorer


@dataclass
class LoadedModel:
    model: object
    manifest: dict
    stamp: tuple
    scorer: LinearScorer | None = None

    @property
    def version(self) -> int:
        return self.manifest.get("version")

    def predict(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(0/1 predictions, exit probabilities) for a float matrix with the FEATURES columns."""
        if self.scorer is not None:
            return self.scorer.predict_proba(matrix)
        frame = pd.DataFrame(matrix, columns=list(FEATURES))
        return self.model.predict(frame), self.model.predict_proba(frame)[:, 1]


_model_cache: dict[Path, LoadedModel] = {}
_csv_cache: dict[Path, tuple[tuple, pd.DataFrame]] = {}
_matrix_cache: dict[Path, tuple[tuple, np.ndarray]] = {}
_cache_lock = threading.Lock()


def deployed_model(config: Config | None = None, allow_stale: bool = False) -> LoadedModel:
    """The deployed model, loaded once per process and again only when the deployment changes.

    The bytes are checked against manifest.json before unpickling. With allow_stale (the API),
    a deployment that does not verify (a redeploy half-way, or a tampered file) keeps the model
    already loaded and verified in service instead of failing the request.
    """
    from scoring import unpickle_model

    config = config or load_config()
    prod = config.prod_folder
    stamp = _stamp(prod / "manifest.json", prod / MODEL)
    with _cache_lock:
        cached = _model_cache.get(prod)
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            blob, manifest = read_deployed_model_bytes(prod)
        except ModelIntegrityError as error:
            if allow_stale and cached is not None:
                log.warning("%s; still serving version %s", error, cached.version)
                return cached
            raise
        model = unpickle_model(blob, prod / MODEL)
        loaded = LoadedModel(model, manifest, stamp, compile_scorer(model))
        _model_cache[prod] = loaded
        if cached is not None and cached.version != loaded.version:
            log.info("loaded deployed model version %s (was %s)", loaded.version, cached.version)
        return loaded


def _cached(cache: dict, path: Path, load):
    """load(path), kept per process and loaded again only when the file changes."""
    stamp = _stamp(path)
    with _cache_lock:
        cached = cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    value = load(path)
    with _cache_lock:
        cache[path] = (stamp, value)
    return value


def read_csv_cached(path: Path) -> pd.DataFrame:
    """A CSV read once per process and again only when the file changes. Do not modify it."""
    from scoring import read_data_file

    return _cached(_csv_cache, path, read_data_file)


def feature_matrix_cached(path: Path) -> np.ndarray:
    """The FEATURES columns of a CSV as a read-only float matrix, cached like read_csv_cached."""
    from scoring import feature_frame

    def load(path: Path) -> np.ndarray:
        matrix = feature_frame(read_csv_cached(path), str(path)).to_numpy()
        matrix.flags.writeable = False
        return matrix

    return _cached(_matrix_cache, path, load)


def model_predictions(
    frame: pd.DataFrame,
    config: Config | None = None,
    proba: bool = False,
    allow_stale: bool = False,
    source: str = "input data",
) -> list[int] | tuple[list[int], list[float]]:
    """The deployed model's 0/1 prediction for every row (and, with proba, each exit probability).

    Any other columns (corporation, exited) and their order do not matter; a missing feature
    column is an error naming it.
    """
    from scoring import feature_frame

    loaded = deployed_model(config, allow_stale)
    return predict_matrix(loaded, feature_frame(frame, source).to_numpy(), proba)


def predict_matrix(loaded: LoadedModel, matrix: np.ndarray, proba: bool = False):
    """Predictions (and probabilities) of a loaded model for a FEATURES-column float matrix."""
    if len(matrix) == 0:
        return ([], []) if proba else []
    predicted, probability = loaded.predict(matrix)
    predicted = predicted.astype(int).tolist()
    return (predicted, probability.tolist()) if proba else predicted


def risk_scores(frame: pd.DataFrame, config: Config | None = None) -> list[float]:
    """Each row's exit probability under the deployed model."""
    return model_predictions(frame, config, proba=True)[1]


def _number(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def dataframe_summary(config: Config | None = None, as_list: bool = False):
    """Mean, median, mode and standard deviation of each numeric column of finaldata.csv.

    As a dict {column: {mean, median, mode, std}}, or with as_list the course's flat list
    [mean, median, mode, std of the first column, then of the next, ...].
    """
    config = config or load_config()
    frame = read_csv_cached(config.finaldata_file)
    summary = {}
    for column in frame.select_dtypes("number").columns:
        values = frame[column].dropna()
        modes = values.mode()
        summary[column] = {
            "mean": _number(values.mean()),
            "median": _number(values.median()),
            "mode": _number(modes.iloc[0]) if len(modes) else None,  # the smallest when tied
            "std": _number(values.std()),
        }
    if as_list:
        return [value for stats in summary.values() for value in stats.values()]
    return summary


def missing_data(config: Config | None = None, as_dict: bool = False):
    """Percent of NA values in each column of finaldata.csv, in column order."""
    config = config or load_config()
    frame = read_csv_cached(config.finaldata_file)
    percent = (frame.isna().mean() * 100).round(6) if len(frame) else frame.isna().sum() * 0.0
    if as_dict:
        return {column: float(value) for column, value in percent.items()}
    return [float(value) for value in percent]


def execution_time(config: Config | None = None, max_age: float = 0.0) -> list[float]:
    """[ingestion seconds, training seconds]: the real scripts, timed on a temporary workspace.

    The temporary config reads the real input folder (through a link) and writes every output
    into a temporary folder, so nothing in the real folders changes. Concurrent callers share
    one run: the second waits for the first and takes its answer. With max_age, a timing of
    the same input files (names, sizes, modification times) at most max_age seconds old is
    reused: the API passes the cron period, so that fullprocess.py's diagnostics.py and its
    /diagnostics call do not time the same work twice.
    """
    config = config or load_config()
    cache = cache_dir(config)
    cache.mkdir(parents=True, exist_ok=True)
    result_path = cache / "timing.json"
    requested = time.time()
    inputs = _input_signature(config)
    with file_lock(cache / "timing.lock"):
        try:
            previous = json.loads(result_path.read_text())
            if previous["finished"] >= requested:  # another caller's run finished while we waited
                return previous["seconds"]
            if previous["inputs"] == inputs and requested - previous["finished"] <= max_age:
                return previous["seconds"]
        except (FileNotFoundError, ValueError, KeyError):
            pass
        seconds = _time_scripts(config)
        atomic_write_json(result_path, {"finished": time.time(), "inputs": inputs, "seconds": seconds})
    return seconds


def _input_signature(config: Config) -> list:
    from common import list_csv_files

    if not config.input_folder.is_dir():
        return []
    return [
        [path.name, path.stat().st_size, path.stat().st_mtime_ns]
        for path in list_csv_files(config.input_folder)
    ]


def _time_scripts(config: Config) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="risk-timing-") as temp:
        workspace = Path(temp)
        (workspace / "input").symlink_to(config.input_folder, target_is_directory=True)
        temp_config = workspace / "config.json"
        temp_config.write_text(
            json.dumps(
                {
                    "input_folder_path": "input",
                    "output_folder_path": "ingesteddata",
                    "test_data_path": "testdata",
                    "output_model_path": "models",
                    "prod_deployment_path": "production_deployment",
                }
            )
        )
        env = {**os.environ, "RISK_CONFIG": str(temp_config)}
        seconds = []
        for script in ("ingestion.py", "training.py"):
            started = time.perf_counter()
            result = subprocess.run(
                [sys.executable, str(PROJECT_DIR / script)],
                cwd=workspace,
                env=env,
                capture_output=True,
                text=True,
                timeout=config["step_timeout_seconds"],
            )
            seconds.append(round(time.perf_counter() - started, 4))
            if result.returncode not in (0, 3):  # 3: ingested, some file rejected
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


def psi_band(value: float) -> str:
    if math.isnan(value):
        return "unknown"
    return "none" if value < PSI_BANDS[0] else "moderate" if value < PSI_BANDS[1] else "significant"


def compare_features(reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    """Per feature KS test and PSI, and the data-set verdict."""
    from scipy.stats import ks_2samp

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


def feature_drift(config: Config | None = None) -> dict:
    """The deployed model's training data against the latest ingested data."""
    config = config or load_config()
    reference_path = config.prod_folder / REFERENCE_DATA
    if not reference_path.is_file():
        raise PipelineError(
            f"{reference_path}: the deployment has no training reference; redeploy a new model"
        )
    result = compare_features(read_csv_cached(reference_path), read_csv_cached(config.finaldata_file))
    return {"reference": str(reference_path), "current": str(config.finaldata_file), **result}


def run_all(config: Config) -> dict:
    """Every diagnostic of the deployed model and the ingested data."""
    loaded = deployed_model(config)
    test = read_csv_cached(config.testdata_file)
    return {
        "timestamp": utc_now(),
        "deployed_version": loaded.version,
        "model_sha256": loaded.manifest["files"][MODEL]["sha256"],
        "predictions": {"data": str(config.testdata_file), "values": model_predictions(test, config)},
        "summary_statistics": dataframe_summary(config),
        "missing_data_percent": missing_data(config, as_dict=True),
        "execution_time_seconds": dict(zip(("ingestion", "training"), execution_time(config), strict=True)),
        "dependencies": outdated_packages_list(config),
        "feature_drift": feature_drift(config),
    }


def main() -> int:
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
