"""The two decisions (decisions.py) at their boundaries: pure functions, the fast tier."""

import numpy as np
import pytest

from attrition.model.decisions import drift as drift_decision
from attrition.model.decisions import gate

HISTORY = [0.70, 0.72, 0.75, 0.68, 0.74, 0.71]


@pytest.mark.parametrize("new_score", [0.50, 0.655, 0.66, 0.69, 0.80])
def test_drift_tests_match_the_course_formulas(new_score):
    deployed = HISTORY[-1]
    raw = drift_decision("raw", new_score, deployed, HISTORY)
    assert raw["drift"] == (new_score < deployed)
    parametric = drift_decision("parametric", new_score, deployed, HISTORY)
    assert parametric["threshold"] == pytest.approx(np.mean(HISTORY) - 2 * np.std(HISTORY))
    assert parametric["drift"] == (new_score < np.mean(HISTORY) - 2 * np.std(HISTORY))
    nonparametric = drift_decision("nonparametric", new_score, deployed, HISTORY)
    q1, q3 = np.quantile(HISTORY, 0.25), np.quantile(HISTORY, 0.75)
    assert nonparametric["threshold"] == pytest.approx(q1 - 1.5 * (q3 - q1))
    assert nonparametric["drift"] == (new_score < q1 - 1.5 * (q3 - q1))


def test_drift_hand_computed_cases():
    # mean 0.7, population std 0.1: threshold 0.5
    assert drift_decision("parametric", 0.49, 0.8, [0.6, 0.8])["drift"] is True
    assert drift_decision("parametric", 0.51, 0.8, [0.6, 0.8])["drift"] is False
    # sorted 0.6 0.7 0.7 0.8, linear interpolation: Q1 = 0.675, Q3 = 0.725, IQR 0.05: threshold 0.6
    history = [0.8, 0.7, 0.6, 0.7]
    assert drift_decision("nonparametric", 0.59, 0.8, history)["threshold"] == pytest.approx(0.6)
    assert drift_decision("nonparametric", 0.59, 0.8, history)["drift"] is True
    assert drift_decision("nonparametric", 0.61, 0.8, history)["drift"] is False
    assert drift_decision("raw", 0.79, 0.8, [], tolerance=0.02)["drift"] is False
    fallback = drift_decision("nonparametric", 0.5, 0.8, [0.6, 0.7, 0.8])
    assert fallback["test_used"] == "raw" and fallback["drift"] is True and "needs 4" in fallback["note"]


@pytest.mark.parametrize("test", ["raw", "parametric", "nonparametric"])
def test_an_equal_score_is_not_drift(test):
    """Each test's threshold itself is not drift (the rule is a strict <)."""
    history = [0.8] * 5 if test != "raw" else []
    result = drift_decision(test, 0.8, 0.8, history)
    assert result["threshold"] == pytest.approx(0.8)
    assert result["drift"] is False
    assert drift_decision(test, np.nextafter(0.8, 0), 0.8, history)["drift"] is True


def test_the_tolerance_edge_is_not_drift():
    assert drift_decision("raw", 0.75, 0.8, [], tolerance=0.05)["drift"] is False  # exactly the edge
    assert drift_decision("raw", 0.7499, 0.8, [], tolerance=0.05)["drift"] is True
    assert "tolerance 0.05" in drift_decision("raw", 0.7, 0.8, [], tolerance=0.05)["rule"]


@pytest.mark.parametrize(
    ("candidate", "deployed", "enabled", "forced", "deploy", "marked"),
    [
        (0.8, 0.8, True, False, True, False),  # equal F1 passes
        (np.nextafter(0.8, 0), 0.8, True, False, False, False),  # a hair lower: refused
        (0.9, 0.8, True, False, True, False),
        (0.7, 0.8, True, True, True, True),  # --force past a refusal: marked forced
        (0.7, 0.8, False, False, True, False),  # gate off
        (0.9, 0.8, True, True, True, False),  # forced but passing: nothing to mark
    ],
)
def test_the_gate_passes_an_equal_score_and_marks_what_it_was_forced_past(
    candidate, deployed, enabled, forced, deploy, marked
):
    result = gate(candidate, deployed, enabled, forced)
    assert result["passed"] is bool(candidate >= deployed)
    assert result["deploy"] is deploy
    assert result["forced"] is marked
