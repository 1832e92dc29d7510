"""The call list: which clients to call first, why, and what changed since the last list.

One home for it; not a script. reporting.py writes it for the ingested data (riskranking.csv),
scoring.py --rank for any client file, and the API's answers carry the same reasons.

    call_list(frame, scorer, previous, extracts)  (the call list, the clients lost since the last list)
    list_basis(model_folder)              what riskranking.csv on disk was computed from
    previous_list(model_folder, stamp, prod_folder)
                                          the list the team saw before this one (for this
                                          production, wherever it lives: given_folder)
    read_extracts(path, frame)            each row's extracts, when they belong to frame
    reasons(scorer, matrix)               each row's top reason, in words, and its log-odds

The rules, stated once:
- A client's state is its row in its newest extract: the last one in finaldata.csv, which holds
  the extracts in order and keeps the last copy of a row repeated exactly (extracts A, B, A: A's).
  Clients whose newest row has exited=1 are not on the call list.
- The lost list (LOST_MEANS): clients gone now (newest row exited=1) who were on the previous
  list, or still clients at the previous extract (their newest row in the extracts before the
  latest had not exited). A client who left before that is not "lost since the last list".
  The extracts come from ingestion.py's finaldataextracts.csv (each row's first and last
  extract); without it, the row before a client's latest stands for the previous extract.
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

import json

import numpy as np
import pandas as pd

from attrition.core.errors import PipelineError
from attrition.core.names import FEATURES, ID_COLUMN, LOST_CLIENTS, RISK_RANKING, RISK_RANKING_BASIS, TARGET
from attrition.core.records import sha256_file
from attrition.data.arrowcsv import write_frame
from attrition.data.clientdata import feature_frame, read_csv_strictly, spreadsheet_safe
from attrition.model.riskmodel import LinearScorer
from attrition.reports import riskdb

FEATURE_WORDS = {
    "lastmonth_activity": "last month's activity",
    "lastyear_activity": "last year's activity",
    "number_of_employees": "number of employees",
}
LOST_MEANS = "on the last list or still clients at the previous extract, gone in the latest"
UNCHANGED = 0.0005  # a change in probability smaller than this is "unchanged"
CALL_COLUMNS = [
    "rank",
    ID_COLUMN,
    "exit_probability",
    "reason",
    "reason_log_odds",
    "change",
    "previous_probability",
    *FEATURES,
]


def contributions(scorer: LinearScorer, matrix: np.ndarray) -> np.ndarray:
    """Each feature's share of each row's log-odds against the reference client (a missing value
    is the reference's, so it contributes 0)."""
    filled = np.where(np.isnan(matrix), scorer.fill, matrix)
    return (filled - scorer.fill) * scorer.coef


DEGREES = ("far ", "", "slightly ")  # by the size of the log-odds a reason adds: >= FAR, between, < SLIGHT
FAR, SLIGHT = 1.0, 0.25
NO_FACTOR = "no factor above the median client's risk"


def degree(log_odds):
    """The index in DEGREES of a reason that adds log_odds (a number or an array of them)."""
    size = np.abs(log_odds)
    return np.where(size >= FAR, 0, np.where(size < SLIGHT, 2, 1))


def describe(feature: str, value: float, median: float, log_odds: float) -> str:
    """'last month's activity far below typical (12 vs. median 78)'."""
    return _phrase(feature, DEGREES[int(degree(log_odds))], value, median)


def _phrase(feature: str, degree_word: str, value: float, median: float) -> str:
    side = "below" if value < median else "above"
    words = FEATURE_WORDS.get(feature, feature)
    return f"{words} {degree_word}{side} typical ({value:,.0f} vs. median {median:,.0f})"


def reasons(scorer: LinearScorer, matrix: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(each row's top reason in words, the log-odds that reason adds).

    Each distinct (feature, degree, value) is put in words once (describe's words): a million
    clients have a few thousand distinct ones."""
    shares = contributions(scorer, matrix)
    if len(matrix) == 0:
        return [], np.zeros(0)
    top = np.argmax(shares, axis=1)
    added = shares[np.arange(len(matrix)), top]
    value = np.where(np.isnan(matrix), scorer.fill, matrix)[np.arange(len(matrix)), top]
    degrees = degree(added)
    values, value_index = np.unique(value, return_inverse=True)
    keys, inverse = np.unique((value_index.reshape(-1) * 3 + top) * 3 + degrees, return_inverse=True)
    phrases = np.array(
        [
            _phrase(FEATURES[column], DEGREES[key % 3], values[key // 9], scorer.fill[column])
            for key, column in zip(keys.tolist(), (keys // 3 % 3).tolist(), strict=True)
        ],
        dtype=object,
    )
    words = phrases[inverse.reshape(-1)]
    words[added <= 0] = NO_FACTOR
    return words.tolist(), np.where(added > 0, added, 0.0)


def latest_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Each client's latest row (the last one: extracts are ingested in order)."""
    return frame.drop_duplicates(subset=[ID_COLUMN], keep="last")


def still_clients_at_previous_extract(frame: pd.DataFrame, extracts: pd.DataFrame | None) -> np.ndarray:
    """The IDs of the clients whose newest row in the extracts before the latest had not exited.

    A row stands for an extract up to the previous one by the last extract it appears in there:
    its last extract when that is not the latest, else its first (a row repeated into the latest
    extract stood in an earlier one too). Without extracts: each client's row before its latest.
    """
    if TARGET not in frame.columns:
        return np.array([], dtype=object)
    ids = frame[ID_COLUMN].astype(str)
    exited = frame[TARGET].to_numpy()
    if extracts is None:
        earlier = ids.duplicated(keep="last").to_numpy()
        if not earlier.any():
            return np.array([], dtype=object)
        before_latest = ~ids[earlier].duplicated(keep="last").to_numpy()
        return ids[earlier][before_latest & (exited[earlier] != 1)].to_numpy()
    first, last = extracts["first_extract"].to_numpy(), extracts["last_extract"].to_numpy()
    previous = int(last.max(initial=0)) - 1
    stood = np.where(last <= previous, last, np.where(first <= previous, first, 0))
    rows = np.flatnonzero(stood > 0)
    if not len(rows):  # one extract (or none before the latest): nobody stood in an earlier one
        return np.array([], dtype=object)
    codes = pd.factorize(ids)[0]
    rows = rows[np.lexsort((rows, stood[rows], codes[rows]))]  # by client, then extract, then file order
    sorted_codes = codes[rows]
    newest = rows[np.append(sorted_codes[1:] != sorted_codes[:-1], True)]  # each client's last
    return ids.to_numpy()[newest[exited[newest] != 1]]


def read_extracts(path, frame: pd.DataFrame) -> pd.DataFrame | None:
    """ingestion.py's finaldataextracts.csv when it describes frame row by row, else None."""
    try:
        extracts = read_csv_strictly(path, dtype={ID_COLUMN: str})
    except (OSError, ValueError):
        return None
    if len(extracts) != len(frame) or not {"first_extract", "last_extract"} <= set(extracts.columns):
        return None
    if not (extracts[ID_COLUMN].fillna("").to_numpy() == frame[ID_COLUMN].astype(str).to_numpy()).all():
        return None
    return extracts


def list_basis(model_folder) -> dict:
    """What riskranking.csv, as it is on disk, was computed from (riskranking.json).

    reporting.py writes riskranking.json first, marked pending, with the new list's sha256 and the
    basis it replaces; then the two lists; then riskranking.json again. A kill at any instant
    leaves a pending basis: the list on disk is the new one (its sha256) or the one before, whose
    basis the pending record holds, so the next list is compared with the one the team last saw.
    """
    try:
        basis = json.loads((model_folder / RISK_RANKING_BASIS).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(basis, dict):
        return {}
    if basis.get("pending"):
        try:
            written = sha256_file(model_folder / RISK_RANKING) == basis.get("list_sha256")
        except OSError:
            written = False
        basis = (
            {key: value for key, value in basis.items() if key not in ("pending", "before")}
            if written
            else basis.get("before") or {}
        )
    return basis


def given_lists(model_folder) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(the call list, the lost list) as reporting.py last gave them to the team: the CSV files when
    they are the bytes it wrote (riskranking.json's sha256), else the query store's copy (a person
    edited or deleted the file, or saved it from a spreadsheet); None when neither is whole."""
    basis = list_basis(model_folder)
    try:
        whole = sha256_file(model_folder / RISK_RANKING) == basis.get("list_sha256", "unrecorded")
    except OSError:
        whole = False
    if whole or "list_sha256" not in basis:
        try:
            frame = read_csv_strictly(model_folder / RISK_RANKING, dtype={ID_COLUMN: str})
        except (OSError, ValueError):  # pandas' parser errors are ValueErrors
            return None
        try:
            lost = read_csv_strictly(model_folder / LOST_CLIENTS, dtype={ID_COLUMN: str})
        except (OSError, ValueError):
            lost = pd.DataFrame(columns=[ID_COLUMN, "previous_probability"])
        return frame, lost
    try:
        store = riskdb.store(model_folder)
    except PipelineError:
        return None
    if store is None or store.basis.get("list_sha256") != basis.get("list_sha256"):
        return None
    columns = f"{ID_COLUMN}, exit_probability, previous_probability"
    frame = pd.DataFrame(
        [dict(row) for row in store.rows(f"SELECT {columns} FROM calls ORDER BY position")],
        columns=[ID_COLUMN, "exit_probability", "previous_probability"],
    )
    lost = pd.DataFrame(
        [
            dict(row)
            for row in store.rows(f"SELECT {ID_COLUMN}, previous_probability FROM lost ORDER BY position")
        ],
        columns=[ID_COLUMN, "previous_probability"],
    )
    return frame.astype({ID_COLUMN: str}), lost.astype({ID_COLUMN: str})


LAST_LIST = "lastlist.json"  # prod_deployment_path: the model folder of the list last given


def given_folder(model_folder, prod_folder=None):
    """The model folder holding the list the team was last given for this production: this one,
    or, when it has none yet (the README's practice -> production switch), the one production's
    lastlist.json names (reporting.py writes it with every list)."""
    if prod_folder is None or (model_folder / RISK_RANKING_BASIS).exists():
        return model_folder
    try:
        pointer = json.loads((prod_folder / LAST_LIST).read_text(encoding="utf-8"))
        elsewhere = (prod_folder / pointer["model_folder"]).resolve()  # relative to production
    except (OSError, ValueError, KeyError, TypeError):
        return model_folder
    return elsewhere if (elsewhere / RISK_RANKING_BASIS).is_file() else model_folder


def previous_list(model_folder, stamp: dict, prod_folder=None) -> pd.DataFrame | None:
    """The list the team saw before this one (its corporation and exit_probability): the list last
    given for this production (given_folder; given_lists: never a person's edit of it); or, when
    that one was made for the same model and data (a report run again), the list it was itself
    compared with."""
    model_folder = given_folder(model_folder, prod_folder)
    given = given_lists(model_folder)
    if given is None:
        return None
    frame, lost = given
    if ID_COLUMN not in frame.columns or "exit_probability" not in frame.columns:
        return None
    old = list_basis(model_folder)
    if (old.get("model_sha256"), old.get("data_sha256")) != (stamp["model_sha256"], stamp["data_sha256"]):
        return frame[[ID_COLUMN, "exit_probability"]]
    if not old.get("previous_list") or "previous_probability" not in frame.columns:
        return None
    if ID_COLUMN not in lost.columns or "previous_probability" not in lost.columns:
        lost = pd.DataFrame(columns=[ID_COLUMN, "previous_probability"])
    earlier = pd.concat(
        [frame[[ID_COLUMN, "previous_probability"]], lost[[ID_COLUMN, "previous_probability"]]]
    )
    earlier = earlier[earlier["previous_probability"].notna()]
    return pd.DataFrame({ID_COLUMN: earlier[ID_COLUMN], "exit_probability": earlier["previous_probability"]})


def call_list(
    frame: pd.DataFrame,
    scorer: LinearScorer,
    previous: pd.DataFrame | None = None,
    source: str = "data",
    extracts: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the call list, the lost list) of a client table (exited may be absent: then nobody is lost).

    previous: an earlier call list (its corporation and exit_probability columns), or None.
    extracts: each row's first and last extract (read_extracts), or None.
    """
    latest = latest_rows(frame).reset_index(drop=True)
    gone = (latest[TARGET] == 1).to_numpy() if TARGET in latest.columns else np.zeros(len(latest), dtype=bool)
    staying, lost = latest[~gone], latest[gone]
    matrix = feature_frame(staying, source).to_numpy()
    probability = scorer.predict_proba(matrix)[:, 1] if len(matrix) else np.zeros(0)
    words, log_odds = reasons(scorer, matrix)
    ids = staying[ID_COLUMN].astype(str).to_numpy()
    previous_probability = probability_before(previous, ids)
    calls = pd.DataFrame(
        {
            ID_COLUMN: ids,
            "exit_probability": probability,
            "reason": words,
            "reason_log_odds": log_odds,
            "change": change_words(probability, previous_probability),
            "previous_probability": previous_probability,
        }
    )
    for feature in FEATURES:
        calls[feature] = staying[feature].to_numpy()
    calls = calls.sort_values(["exit_probability", ID_COLUMN], ascending=[False, True], kind="stable")
    calls.insert(0, "rank", np.arange(1, len(calls) + 1))
    lost_ids = pd.Series(lost[ID_COLUMN].astype(str).to_numpy(), dtype=object)
    lost_before = probability_before(previous, lost_ids.to_numpy())
    keep = np.zeros(len(lost_ids), dtype=bool)
    if previous is not None:
        keep |= lost_ids.isin(previous[ID_COLUMN].astype(str)).to_numpy()  # on the last list
    if len(lost_ids):
        keep |= lost_ids.isin(still_clients_at_previous_extract(frame, extracts)).to_numpy()
    lost = lost[keep]
    lost_list = pd.DataFrame(
        {ID_COLUMN: lost_ids.to_numpy()[keep], "previous_probability": lost_before[keep]}
    )
    for feature in FEATURES:
        lost_list[feature] = lost[feature].to_numpy()
    return calls.reset_index(drop=True)[CALL_COLUMNS], lost_list.sort_values(ID_COLUMN).reset_index(drop=True)


def probability_before(previous: pd.DataFrame | None, ids: np.ndarray) -> np.ndarray:
    """Each client's exit_probability on the previous list (its last row there), NaN when absent."""
    if previous is None or not len(previous):
        return np.full(len(ids), np.nan)
    previous = previous.drop_duplicates(subset=[ID_COLUMN], keep="last")
    where = pd.Index(previous[ID_COLUMN].astype(str)).get_indexer(ids)
    values = previous["exit_probability"].astype(float).to_numpy()
    return np.where(where >= 0, values[where], np.nan)


def change_words(now: np.ndarray, before: np.ndarray) -> list[str]:
    """'new client', 'risk up 0.031', 'risk down 0.005' or 'unchanged', row by row.

    The size is put in words once per distinct (direction, thousandths); a size within a
    millionth of half a thousandth is put in words on its own (its rounding is then the one
    Python's format gives the exact value)."""
    now, before = np.asarray(now, dtype=float), np.asarray(before, dtype=float)
    change = now - before
    with np.errstate(invalid="ignore"):
        size = np.abs(change)
        scaled = size * 1000
        near_half = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6
        keys = np.where(np.isnan(before), 0, np.round(scaled).astype(np.int64) * 2 + (change > 0))
    distinct, inverse = np.unique(keys, return_inverse=True)
    phrases = np.array(
        [f"risk {'up' if key % 2 else 'down'} {key // 2 / 1000:.3f}" for key in distinct.tolist()],
        dtype=object,
    )
    words = phrases[inverse.reshape(-1)]
    for row in np.flatnonzero(near_half & ~np.isnan(before)).tolist():
        words[row] = f"risk {'up' if change[row] > 0 else 'down'} {size[row]:.3f}"
    words[size < UNCHANGED] = "unchanged"
    words[np.isnan(before)] = "new client"
    return words.tolist()


def write_csv(frame: pd.DataFrame, path) -> None:
    """A call list or lost list (to a temporary path: reporting.py replaces), counts as integers,
    client IDs safe to open in a spreadsheet (clientdata.spreadsheet_safe: ingestion refuses
    formula-like IDs, so only scoring.py --rank on another file can meet one)."""
    frame = frame.astype({feature: "Int64" for feature in FEATURES})
    if ID_COLUMN in frame.columns:
        frame[ID_COLUMN] = spreadsheet_safe(frame[ID_COLUMN])
    write_frame(frame, path)
