"""The call list: which clients to call first, why, and what changed since the last list.

One home for it; not a script. reporting.py writes it for the ingested data (riskranking.csv),
scoring.py --rank for any client file, and the API's answers carry the same reasons.

    call_list(frame, scorer, previous)   (the call list, the clients lost since the last list)
    reasons(scorer, matrix)               each row's top reason, in words, and its log-odds

The rules, stated once:
- A client's state is its latest row (the last one in the data: extracts are ingested in
  order). Clients whose latest row has exited=1 are not on the call list. The lost list: those
  of them who were on the previous list, or whose row before the latest had not exited (they
  left between the last two extracts that mention them).
- Riskiest first: exit probability at full precision, ties broken by client ID (ascending).
- The reason for a score: the logistic regression's log-odds are a sum over features of
  coefficient x (value - reference), plus the reference client's log-odds. The reference
  client is the training data's median client (the imputer's fill values). The top reason is
  the feature that adds most to the log-odds, named in words with the client's value beside
  the median; when no feature adds anything, the risk is the reference client's own.
- The change: against the previous list's probability for the same client (new client, risk
  up or down by how much, unchanged below 0.0005).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clientdata import feature_frame
from common import FEATURES, ID_COLUMN, TARGET, atomic_path
from riskmodel import LinearScorer

FEATURE_WORDS = {
    "lastmonth_activity": "last month's activity",
    "lastyear_activity": "last year's activity",
    "number_of_employees": "number of employees",
}
UNCHANGED = 0.0005  # a change in probability smaller than this is "unchanged"
CALL_COLUMNS = ["rank", ID_COLUMN, "exit_probability", "reason", "reason_log_odds", "change",
                "previous_probability", *FEATURES]  # fmt: skip


def contributions(scorer: LinearScorer, matrix: np.ndarray) -> np.ndarray:
    """Each feature's share of each row's log-odds against the reference client (a missing value
    is the reference's, so it contributes 0)."""
    filled = np.where(np.isnan(matrix), scorer.fill, matrix)
    return (filled - scorer.fill) * scorer.coef


def describe(feature: str, value: float, median: float, log_odds: float) -> str:
    """'last month's activity far below typical (12 vs. median 78)'."""
    size = abs(log_odds)
    degree = "far " if size >= 1.0 else "slightly " if size < 0.25 else ""
    side = "below" if value < median else "above"
    return f"{FEATURE_WORDS.get(feature, feature)} {degree}{side} typical ({value:,.0f} vs. median {median:,.0f})"


def reasons(scorer: LinearScorer, matrix: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(each row's top reason in words, the log-odds that reason adds)."""
    shares = contributions(scorer, matrix)
    if len(matrix) == 0:
        return [], np.zeros(0)
    top = np.argmax(shares, axis=1)
    added = shares[np.arange(len(matrix)), top]
    filled = np.where(np.isnan(matrix), scorer.fill, matrix)
    words = [
        describe(FEATURES[column], filled[row, column], scorer.fill[column], added[row])
        if added[row] > 0
        else "no factor above the median client's risk"
        for row, column in enumerate(top)
    ]
    return words, np.where(added > 0, added, 0.0)


def latest_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Each client's latest row (the last one: extracts are ingested in order)."""
    return frame.drop_duplicates(subset=[ID_COLUMN], keep="last")


def clients_who_left_since_their_previous_row(frame: pd.DataFrame) -> list[str]:
    """Clients whose latest row says exited=1 and whose row before it did not."""
    if TARGET not in frame.columns:
        return []
    ids = frame[ID_COLUMN].astype(str)
    latest = frame[~ids.duplicated(keep="last")]
    earlier = frame[ids.duplicated(keep="last")]
    before_latest = earlier[~earlier[ID_COLUMN].astype(str).duplicated(keep="last")]
    stayed = set(before_latest.loc[before_latest[TARGET] != 1, ID_COLUMN].astype(str))
    return [client for client in latest.loc[latest[TARGET] == 1, ID_COLUMN].astype(str) if client in stayed]


def call_list(
    frame: pd.DataFrame, scorer: LinearScorer, previous: pd.DataFrame | None = None, source: str = "data"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the call list, the lost list) of a client table (exited may be absent: then nobody is lost).

    previous: an earlier call list (its corporation and exit_probability columns), or None.
    """
    latest = latest_rows(frame).reset_index(drop=True)
    gone = (latest[TARGET] == 1).to_numpy() if TARGET in latest.columns else np.zeros(len(latest), dtype=bool)
    staying, lost = latest[~gone], latest[gone]
    matrix = feature_frame(staying, source).to_numpy()
    probability = scorer.predict_proba(matrix)[:, 1] if len(matrix) else np.zeros(0)
    words, log_odds = reasons(scorer, matrix)
    ids = staying[ID_COLUMN].astype(str).to_numpy()
    before = (
        dict(zip(previous[ID_COLUMN].astype(str), previous["exit_probability"].astype(float), strict=True))
        if previous is not None
        else {}
    )
    previous_probability = np.array([before.get(client, np.nan) for client in ids], dtype=float)
    calls = pd.DataFrame({ID_COLUMN: ids, "exit_probability": probability, "reason": words,
                          "reason_log_odds": log_odds, "change": change_words(probability, previous_probability),
                          "previous_probability": previous_probability})  # fmt: skip
    for feature in FEATURES:
        calls[feature] = staying[feature].to_numpy()
    calls = calls.sort_values(["exit_probability", ID_COLUMN], ascending=[False, True], kind="stable")
    calls.insert(0, "rank", np.arange(1, len(calls) + 1))
    lost_ids = lost[ID_COLUMN].astype(str).to_numpy()
    left_lately = set(clients_who_left_since_their_previous_row(frame))
    keep = np.array([client in before or client in left_lately for client in lost_ids], dtype=bool)
    lost = lost[keep]
    lost_list = pd.DataFrame({ID_COLUMN: lost_ids[keep],
                              "previous_probability": [before.get(c, np.nan) for c in lost_ids[keep]]})  # fmt: skip
    for feature in FEATURES:
        lost_list[feature] = lost[feature].to_numpy()
    return calls.reset_index(drop=True)[CALL_COLUMNS], lost_list.sort_values(ID_COLUMN).reset_index(drop=True)


def change_words(now: np.ndarray, before: np.ndarray) -> list[str]:
    """'new client', 'risk up 0.031', 'risk down 0.005' or 'unchanged', row by row."""
    words = []
    for current, earlier in zip(now, before, strict=True):
        if np.isnan(earlier):
            words.append("new client")
        elif abs(current - earlier) < UNCHANGED:
            words.append("unchanged")
        else:
            words.append(f"risk {'up' if current > earlier else 'down'} {abs(current - earlier):.3f}")
    return words


def write_csv(frame: pd.DataFrame, path) -> None:
    """A call list or lost list, atomically, its counts as integers (blank where missing)."""
    with atomic_path(path) as temp:
        frame.astype({feature: "Int64" for feature in FEATURES}).to_csv(temp, index=False)
