"""calllist's words and CSV files, against a row-by-row oracle (the rules in calllist's docstring)."""

import numpy as np
import pandas as pd
import pytest

from attrition.core.names import FEATURES
from attrition.model.riskmodel import LinearScorer
from attrition.reports import calllist


def scorer() -> LinearScorer:
    return LinearScorer(fill=[78.0, 900.0, 40.0], coef=[-0.03, -0.002, 0.05], intercept=0.0, classes=[0, 1])


def reasons_oracle(model, matrix):
    """Each row on its own: the feature adding most to the log-odds, in describe's words."""
    words, added = [], []
    for row in matrix:
        filled = np.where(np.isnan(row), model.fill, row)
        shares = (filled - model.fill) * model.coef
        top = int(np.argmax(shares))
        if shares[top] > 0:
            words.append(calllist.describe(FEATURES[top], filled[top], model.fill[top], shares[top]))
        else:
            words.append("no factor above the median client's risk")
        added.append(max(shares[top], 0.0))
    return words, np.array(added)


@pytest.mark.parametrize("rows", [0, 1, 5, 3000])
def test_reasons_are_each_rows_own_words(rows):
    rng = np.random.default_rng(rows)
    matrix = rng.integers(0, 5000, size=(rows, 3)).astype(float)
    if rows > 10:
        matrix[rng.random((rows, 3)) < 0.05] = np.nan
        matrix[:3] = scorer().fill  # the median client: no factor
        matrix[3] = [1e12, 0.0, 0.0]  # far below, thousands separators
        matrix[4] = [0.4, 2.5, 3.5]  # fractions rounded as Python rounds them
        matrix[5:40] = matrix[5]  # many rows, one phrase
        matrix[40:60, 2] = scorer().fill[2] + np.arange(20) * 0.5  # degrees' edges: 0.25 and 1.0
    words, log_odds = calllist.reasons(scorer(), matrix)
    expected_words, expected_log_odds = reasons_oracle(scorer(), matrix)
    assert words == expected_words
    assert np.array_equal(log_odds, expected_log_odds)


def change_oracle(now, before):
    words = []
    for current, earlier in zip(now, before, strict=True):
        if np.isnan(earlier):
            words.append("new client")
        elif abs(current - earlier) < calllist.UNCHANGED:
            words.append("unchanged")
        else:
            words.append(f"risk {'up' if current > earlier else 'down'} {abs(current - earlier):.3f}")
    return words


def test_change_words_are_each_rows_own_words_even_at_half_a_thousandth():
    rng = np.random.default_rng(0)
    now = rng.random(5000)
    before = np.where(rng.random(5000) < 0.1, np.nan, now + rng.normal(0, 0.01, 5000))
    # exactly and almost half a thousandth apart, either way: the rounding Python's format gives
    steps = np.array([0.0005, -0.0005, 0.0015, 0.00049999, 0.0025, -0.0025, 0.1235, 0.0, 0.9995])
    before[: len(steps)] = now[: len(steps)] + steps
    before[100:1100] = now[100:1100] + (np.arange(1000) + 0.5) / 1000
    assert calllist.change_words(now, before) == change_oracle(now, before)
    assert calllist.change_words(np.zeros(0), np.zeros(0)) == []


def test_a_list_file_reads_back_to_the_values_written(tmp_path):
    """Arrow writes the lists: pandas reads back every value pandas' own to_csv would give."""
    rng = np.random.default_rng(1)
    probability = np.concatenate([rng.random(1000), [np.nan, 1e-5, 1e-9, 1.0, 0.1 + 0.2, 0.0]])
    frame = pd.DataFrame(
        {
            "rank": np.arange(1, len(probability) + 1),
            "corporation": [f"c{index}" for index in range(len(probability))],
            "exit_probability": probability,
            "reason": "last month's activity far below typical (1,234 vs. median 78)",  # a comma: quoted
            **{feature: pd.array([None, *range(1, len(probability))], dtype="Int64") for feature in FEATURES},
        }
    )
    calllist.write_csv(frame, tmp_path / "arrow.csv")
    frame.to_csv(tmp_path / "pandas.csv", index=False)
    ours, theirs = (pd.read_csv(tmp_path / name) for name in ("arrow.csv", "pandas.csv"))
    pd.testing.assert_frame_equal(ours, theirs)
    assert (tmp_path / "arrow.csv").read_text().startswith("rank,corporation,exit_probability,reason,")


def extracts_of(frame, first, last):
    return pd.DataFrame({"corporation": frame["corporation"], "first_extract": first, "last_extract": last})


@pytest.mark.parametrize("exited", [[0, 1, 0], [1, 1, 1], [0, 0, 0]])
def test_one_extract_is_an_ordinary_call_list(exited):
    """One extract (a company's first, or the only one left after a rejection): nobody stood in an
    earlier extract, so the lost list is empty and the call list is everyone who is still with us
    (issue 31: this was an IndexError on every run)."""
    frame = pd.DataFrame(
        {
            "corporation": ["abcd", "efgh", "ijkl"],
            "lastmonth_activity": [1.0, 2.0, 3.0],
            "lastyear_activity": [10.0, 20.0, 30.0],
            "number_of_employees": [5.0, 6.0, 7.0],
            "exited": exited,
        }
    )
    for extracts in (None, extracts_of(frame, 1, 1)):
        assert list(calllist.still_clients_at_previous_extract(frame, extracts)) == []
        calls, lost = calllist.call_list(frame, scorer(), extracts=extracts)
        staying = sorted(frame.loc[frame["exited"] == 0, "corporation"])
        assert sorted(calls["corporation"]) == staying
        assert lost.empty


def test_the_previous_extract_is_the_one_before_the_latest():
    """Oracle by hand: each client's newest row in the extracts before the latest, still a client."""
    frame = pd.DataFrame(
        {
            "corporation": ["a", "b", "a", "c", "b"],
            "lastmonth_activity": [1.0] * 5,
            "lastyear_activity": [1.0] * 5,
            "number_of_employees": [1.0] * 5,
            "exited": [0, 0, 1, 0, 1],
        }
    )
    extracts = extracts_of(frame, [1, 1, 2, 3, 3], [1, 1, 2, 3, 3])
    # extract 2 is the previous: a's newest row there (exited 1); b's newest up to 2 is extract 1 (0)
    assert sorted(calllist.still_clients_at_previous_extract(frame, extracts)) == ["b"]
