"""The pipeline's two decisions, each written once, as pure functions (standard library only:
deployment.py, a light path, asks the gate too).

drift(test, new_score, deployed_score, history, tolerance)
    whether the deployed model's F1 on the new data shows drift, by the configured drift_test:
      raw            drift when new < deployed - tolerance (the course's test; equal is not drift)
      parametric     drift when new < mean - 2 std of the deployed versions' F1 - tolerance
                     (needs 2 deployed scores; fewer: the raw test decides)
      nonparametric  drift when new < Q1 - 1.5 IQR of those scores - tolerance
                     (needs 4; fewer: the raw test decides)
gate(candidate, deployed, enabled, forced)
    whether a retrained candidate is deployed (an equal F1 passes).
why_redeployed(drifted, at_least_as_good, forced)
    the reason in a manager's words.
"""

from __future__ import annotations

import statistics

MIN_HISTORY = {"raw": 0, "parametric": 2, "nonparametric": 4}


def drift(
    test: str, new_score: float, deployed_score: float, history: list[float], tolerance: float = 0.0
) -> dict:
    """Whether new_score shows drift, by the course's raw, parametric or non-parametric test.

    history: the F1 of each deployed version. Too short a history for the chosen test
    (parametric needs 2, non-parametric 4) falls back to the raw test, and says so.
    """
    used, note = test, None
    if len(history) < MIN_HISTORY[test]:
        used = "raw"
        note = (
            f"{test} test needs {MIN_HISTORY[test]} deployed scores, "
            f"history has {len(history)}: raw test used"
        )
    if used == "raw":
        threshold = deployed_score
        rule = "new F1 < deployed F1"
    elif used == "parametric":
        mean, std = statistics.fmean(history), statistics.pstdev(history)
        threshold = mean - 2 * std
        rule = f"new F1 < mean - 2 std of {len(history)} deployed scores ({mean:.4f} - 2 x {std:.4f})"
    else:
        q1, _, q3 = statistics.quantiles(history, n=4, method="inclusive")
        threshold = q1 - 1.5 * (q3 - q1)
        rule = f"new F1 < Q1 - 1.5 IQR of {len(history)} deployed scores ({q1:.4f} - 1.5 x {q3 - q1:.4f})"
    if tolerance:
        rule += f" - tolerance {tolerance}"
    return {
        "test": test,
        "test_used": used,
        "note": note,
        "new_score": new_score,
        "deployed_score": deployed_score,
        "threshold": threshold - tolerance,
        "rule": rule,
        "drift": bool(new_score < threshold - tolerance),
    }


def why_redeployed(drifted: bool, at_least_as_good: bool, forced: bool) -> str:
    """The reason a retrained model is deployed, in a manager's words (decision.json's summary)."""
    if not drifted:
        return "Retrained and redeployed on request (--force), without drift"
    if at_least_as_good:
        return (
            "Retrained because the model then live lost accuracy on the new data (drift), and redeployed "
            "because the retrained model scored at least as well"
        )
    return "Retrained because of drift, and redeployed although the retrained model scored lower (" + (
        "--force)" if forced else "promotion_gate is off)"
    )


def gate(candidate: float, deployed: float, enabled: bool = True, forced: bool = False) -> dict:
    """The promotion gate: a candidate passes when its F1 on testdata is at least the deployed
    model's (an equal score passes). It is deployed when it passes, when the gate is off, or when
    forced; a deployment the gate refused is marked forced wherever it is shown."""
    passed = bool(candidate >= deployed)
    return {
        "candidate_f1": candidate,
        "deployed_f1": deployed,
        "enabled": enabled,
        "passed": passed,
        "deploy": bool(passed or forced or not enabled),
        "forced": bool(forced and enabled and not passed),
    }
