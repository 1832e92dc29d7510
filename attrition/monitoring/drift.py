"""Drift: the one home for the course's score-drift tests and the per-feature drift.

Not a script. Two kinds of drift, each a function that returns figures:

Score drift (fullprocess.py's decision to retrain; the rule itself is decisions.drift)
    decisions.drift(test, new_score, deployed_score, history, tolerance): the deployed model's F1 on
    the new data against the deployed score, by the configured drift_test:
      raw            drift when new < deployed - tolerance (the course's test)
      parametric     drift when new < mean - 2 std of the deployed versions' F1 - tolerance
                     (needs 2 deployed scores; fewer: the raw test decides)
      nonparametric  drift when new < Q1 - 1.5 IQR of those scores - tolerance
                     (needs 4; fewer: the raw test decides)

Feature drift (per feature: a KS test and the PSI; the data set drifts when half the
features do), as two named comparisons, each labelled wherever it is shown:
    TRIGGERED   "the drift that triggered this version": the training data of the version
                live before it was first deployed, against the data it was trained on
    SINCE       "drift since this version was trained": its training data against the
                latest ingested data
    comparisons(config, live, final)  both, stamped with the live version and the data
                (stamps.stamp); reporting.py writes them to drift.json, which the report
                and the dashboard show, and diagnostics.py's feature_drift is SINCE.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from attrition.core.config import Config
from attrition.core.errors import PipelineError
from attrition.core.names import FEATURES, REFERENCE_DATA
from attrition.data.clientdata import read_data_file
from attrition.production import stamps, versions

KS_THRESHOLD = 0.05  # drift when the KS p-value is at or below this (Evidently's default)
PSI_BANDS = (0.1, 0.25)  # below: no change; between: moderate; above: significant
DRIFT_SHARE = 0.5  # the data set drifts when at least this share of features drifts
PSI_BINS = 10
TRIGGERED = "the drift that triggered this version"
SINCE = "drift since this version was trained"


def deployed_score_history(config: Config) -> list[float]:
    """The F1 of each deployed version, in deployment order (rollbacks do not count)."""
    scores, seen = [], set()
    for entry in versions.deployments(config):
        if (
            entry.get("action") == "deploy"
            and entry.get("version") not in seen
            and entry.get("f1") is not None
        ):
            seen.add(entry.get("version"))
            scores.append(float(entry["f1"]))
    return scores


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
    # 1 s of import: loaded by the run that compares, not by every API worker
    from scipy.stats import ks_2samp

    features = []
    for feature in FEATURES:
        expected = pd.to_numeric(reference[feature], errors="coerce").dropna().to_numpy(float)
        actual = pd.to_numeric(current[feature], errors="coerce").dropna().to_numpy(float)
        if len(expected) == 0 or len(actual) == 0:
            features.append(
                {
                    "feature": feature,
                    "ks_statistic": None,
                    "ks_p_value": None,
                    "psi": None,
                    "psi_band": "unknown",
                    "drift": False,
                }
            )
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


def reference_of(config: Config, version: int) -> pd.DataFrame | None:
    """The training features an archived version was deployed with, or None."""
    path = config.prod_folder / versions.folder_name(version) / REFERENCE_DATA
    return read_data_file(path) if path.is_file() else None


def since_training(config: Config, state: versions.Live, final: pd.DataFrame) -> dict:
    """SINCE: the live version's training data against the latest ingested data."""
    reference = state.folder / REFERENCE_DATA
    if not reference.is_file():
        return {
            "label": SINCE,
            "error": f"version {state.version} was deployed without its training data "
            f"({REFERENCE_DATA}); redeploy a new model to compare",
        }
    return {
        "label": SINCE,
        "reference": f"version {state.version}'s training data",
        "current": "the latest ingested data",
        **compare_features(read_data_file(reference), final),
    }


def that_triggered(config: Config, state: versions.Live) -> dict:
    """TRIGGERED: the training data of the version live before this one was first deployed,
    against this version's own training data."""
    first = versions.archived_manifest(config.prod_folder, state.version) or state.manifest
    earlier = versions.lineage(config.prod_folder, first)
    if not earlier:
        return {
            "label": TRIGGERED,
            "error": f"version {state.version} was the first deployment: no earlier version to compare with",
        }
    try:
        before, own = reference_of(config, earlier[-1]), reference_of(config, state.version)
    except PipelineError as error:
        return {"label": TRIGGERED, "error": str(error)}
    if before is None or own is None:
        return {
            "label": TRIGGERED,
            "error": f"the training data of version {earlier[-1]} or {state.version} "
            "was not deployed with it",
        }
    return {
        "label": TRIGGERED,
        "reference": f"version {earlier[-1]}'s training data",
        "current": f"version {state.version}'s training data",
        **compare_features(before, own),
    }


def comparisons(
    config: Config,
    state: versions.Live,
    final: pd.DataFrame,
    data_sha256: str | None,
    since: dict | None = None,
) -> dict:
    """Both comparisons for the live version and the latest data, stamped with what they describe;
    since: SINCE when already computed for this version and data (diagnostics.recorded_drift)."""
    return {
        "stamp": stamps.stamp(config, state, data_sha256),
        "live": state.how(),
        "since_training": since or since_training(config, state, final),
        "triggered": that_triggered(config, state),
    }


def verdict(result: dict) -> str:
    """'data set drift: YES (3 of 3 features)' or the reason there are no figures."""
    if "features" not in result:
        return result.get("error", "no figures")
    return (
        f"data set drift: {'YES' if result['dataset_drift'] else 'no'} "
        f"({result['drifted_features']} of {len(result['features'])} features)"
    )
