"""The query store (riskdb.py) against pandas on the same lists, and the run history read from its end."""

import json
import os
import string

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from attrition.core.errors import DataUnavailable
from attrition.core.names import FEATURES, QUERY_STORE
from attrition.core.records import last_records, read_jsonl
from attrition.reports import riskdb

IDS = ["Ab", "ab", "abc", "aB9", "Zed", "zed-2", "é1", "éclair", "x", "ß", "0", "00", "a b", "NA", "日本"]


def call_list_frame(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """A call list as calllist.call_list makes it: by rank, riskiest first, ties in risk by ID; with
    ties in risk and in change, upper- and lower-case and non-ASCII IDs, and missing values."""
    rng = np.random.default_rng(seed)
    # half the IDs start with k: a search matching many can walk the sort's index, one matching few sorts
    ids = [*IDS, *(f"k{i:04d}" if i % 2 else f"{chr(97 + i % 26)}{i:04d}" for i in range(rows - len(IDS)))]
    frame = pd.DataFrame(
        {
            "corporation": ids,
            "exit_probability": rng.choice([0.1, 0.25, 0.5, *rng.random(50)], size=rows),
            "reason": rng.choice(["last month's activity far below typical (1 vs. median 9)", "x"], rows),
            "reason_log_odds": rng.normal(size=rows),
            "change": rng.choice(["new client", "unchanged", "risk up 0.100", "risk down 0.020"], rows),
            "previous_probability": np.where(rng.random(rows) < 0.3, np.nan, rng.random(rows)),
            **{feature: rng.integers(0, 500, rows).astype(float) for feature in FEATURES},
        }
    )
    frame.loc[rng.random(rows) < 0.1, FEATURES[0]] = np.nan
    frame = frame.sort_values(["exit_probability", "corporation"], ascending=[False, True], ignore_index=True)
    return frame.assign(rank=np.arange(1, rows + 1))[["rank", *frame.columns]]


def history_frame(calls: pd.DataFrame) -> pd.DataFrame:
    """Two extracts' rows per client, the second in the order of the first; one client only in history."""
    rows = calls[["corporation", *FEATURES]].assign(exited=0)
    gone = pd.DataFrame([{"corporation": "left", **{f: 1.0 for f in FEATURES}, "exited": 1}])
    return pd.concat([rows, rows.assign(exited=1).head(5), gone], ignore_index=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("store")
    calls = call_list_frame()
    lost = calls.head(3).drop(columns=["rank"])
    history = history_frame(calls)
    riskdb.write(folder, calls, lost, history, {"model_version": 4, "list_sha256": "abc"})
    return folder, calls, history


def oracle_order(calls: pd.DataFrame, sort: str, order: str) -> list[str]:
    """The IDs in a sort, as the docstring of riskdb.py states it, with pandas."""
    keys = {
        "rank": (["rank"], [True]),
        "risk": (["exit_probability", "rank"], [True, False]),
        "client": (["id_lower", "corporation"], [True, True]),
        "change": (["change", "rank"], [True, True]),
    }[sort]
    calls = calls.assign(id_lower=calls["corporation"].str.lower())
    ids = calls.sort_values(keys[0], ascending=keys[1])["corporation"].tolist()
    return ids if order == "asc" else ids[::-1]


def records(rows) -> list[dict]:
    """Rows as dicts comparable with the store's (NaN as None)."""
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()} for row in rows]


@pytest.mark.parametrize("sort", list(riskdb.SORTS))
@pytest.mark.parametrize("order", riskdb.ORDERS)
@pytest.mark.parametrize("query", ["", "a", "A", "é", "zed", "日", "k", "K01", "nobody"])
@pytest.mark.parametrize("sorted_matches", [riskdb.SORTED_MATCHES, 0])  # 0: many matches walk the index
def test_every_page_of_every_sort_and_search_is_pandas_answer(
    built, sort, order, query, sorted_matches, monkeypatch
):
    monkeypatch.setattr(riskdb, "SORTED_MATCHES", sorted_matches)
    folder, calls, _ = built
    store = riskdb.store(folder)
    matching = calls[calls["corporation"].str.lower().str.startswith(query.lower())]
    expected = oracle_order(matching, sort, order)
    pages = max(1, -(-len(expected) // 7))
    seen = []
    for page in range(1, pages + 1):
        rows, total, shown = store.clients(query, sort, order, page, 7)
        assert (total, shown) == (len(expected), page)
        seen += [row["corporation"] for row in rows]
    assert seen == expected
    rows, _, shown = store.clients(query, sort, order, pages + 50, 7)  # past the end: the last page
    assert shown == pages and [row["corporation"] for row in rows] == expected[(pages - 1) * 7 :]


def test_rows_are_the_call_lists_own_values(built):
    folder, calls, _ = built
    store = riskdb.store(folder)
    assert store.call_list(0, len(calls) + 10) == records(calls.to_dict(orient="records"))
    assert store.call_list(395, 50) == records(calls.iloc[395:].to_dict(orient="records"))
    assert store.call_list(10**9, 50) == []
    assert store.counts == {"calls": 400, "lost": 3, "history": 406}
    assert store.basis == {"model_version": 4, "list_sha256": "abc"}


def test_a_client_is_a_key_and_its_history_in_file_order(built):
    folder, calls, history = built
    store = riskdb.store(folder)
    for client in ("ab", "Ab", "é1", "日本", "a b"):
        row = calls[calls["corporation"] == client]
        assert store.client(client) == records(row.to_dict(orient="records"))[0]
        assert [r["exited"] for r in store.history(client)] == history.loc[
            history["corporation"] == client, "exited"
        ].tolist()
    assert store.client("AB") is None and store.history("AB") == []  # an ID is exact; search is not
    assert store.client("left") is None and store.history("left")[-1]["exited"] == 1


def test_a_replaced_store_is_read_again_and_an_open_one_keeps_its_file(built, tmp_path):
    folder, calls, history = built
    copy = tmp_path / QUERY_STORE
    copy.write_bytes((folder / QUERY_STORE).read_bytes())
    first = riskdb.store(tmp_path)
    empty = calls.head(0).drop(columns=["rank"])
    riskdb.write(tmp_path, calls.head(10), empty, history, {"model_version": 5})
    second = riskdb.store(tmp_path)
    assert second is not first and second.counts["calls"] == 10 and second.basis["model_version"] == 5
    assert len(first.call_list(0, 1000)) == 400  # a reader that opened the old file keeps it whole
    assert riskdb.basis_of(tmp_path) == {"model_version": 5}
    assert not [path.name for path in tmp_path.iterdir() if path.name != QUERY_STORE]  # no temporary left


def test_no_store_is_none_and_a_damaged_one_says_what_to_run(tmp_path):
    assert riskdb.store(tmp_path) is None and riskdb.basis_of(tmp_path) is None
    (tmp_path / QUERY_STORE).write_bytes(b"not a database" * 100)
    with pytest.raises(DataUnavailable, match="riskdata.sqlite: cannot be read .*run reporting.py"):
        riskdb.store(tmp_path)
    assert riskdb.basis_of(tmp_path) is None


@given(st.text(min_size=1, max_size=4), st.text(max_size=6))
def test_prefix_bounds_are_exactly_startswith(prefix, text):
    low, high = riskdb.prefix_bounds(prefix)
    assert (low <= text < high) == text.startswith(prefix)
    assert (low <= prefix + text < high) is True


@pytest.mark.parametrize("prefix", ["z", "\ud7ff", "a\U0010ffff", "\U0010ffff"])
def test_prefix_bounds_at_the_edges_of_unicode(prefix):
    low, high = riskdb.prefix_bounds(prefix)
    assert low <= prefix + "x" < high and not low <= "{" < high
    high.encode("utf-8")  # a string SQLite can be given


def test_the_last_runs_are_read_from_the_end(tmp_path):
    history = tmp_path / "runhistory.jsonl"
    lines = [json.dumps({"run": i, "pad": "x" * (i % 97)}) for i in range(3000)]
    lines[2990] = '{"run": 2990, "cut'  # a damaged record near the end
    history.write_text("\n".join(lines) + '\n{"half a line')  # and a killed writer's half line
    everything = read_jsonl(history)
    for count in (1, 2, 9, 10, 11, 500, 2999, 5000):
        assert last_records(history, count, block=64) == everything[-count:], count
    assert last_records(tmp_path / "none.jsonl", 5) == []
    history.write_text("")
    assert last_records(history, 5) == []


def test_the_store_is_written_whole_or_not_at_all(built, tmp_path, monkeypatch):
    """A failure while building leaves the old store, and no temporary file (atomic_path)."""
    folder, calls, history = built
    (tmp_path / QUERY_STORE).write_bytes((folder / QUERY_STORE).read_bytes())
    before = (tmp_path / QUERY_STORE).read_bytes()

    def broken(*args, **kwargs):
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(riskdb, "sort_positions", broken)
    with pytest.raises(Exception, match="space|full"):
        riskdb.write(tmp_path, calls, calls.head(0), history, {})
    assert (tmp_path / QUERY_STORE).read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == [QUERY_STORE]


def test_sqlites_own_full_is_a_disk_full_naming_the_store(built, tmp_path, monkeypatch):
    """SQLite says "database or disk is full" as an OperationalError, not an OSError: still exit 74
    naming the file, the old store kept (issue 31). max_page_count makes SQLite full for real."""
    from attrition.core.errors import DiskFull

    folder, calls, history = built
    (tmp_path / QUERY_STORE).write_bytes((folder / QUERY_STORE).read_bytes())
    before = (tmp_path / QUERY_STORE).read_bytes()
    monkeypatch.setattr(riskdb, "_BUILD", (*riskdb._BUILD, "PRAGMA max_page_count = 3"))
    with pytest.raises(DiskFull, match=f"disk full writing .*{QUERY_STORE}") as raised:
        riskdb.write(tmp_path, calls, calls.head(0), history, {})
    assert raised.value.exit_code == 74
    assert (tmp_path / QUERY_STORE).read_bytes() == before
    assert [path.name for path in tmp_path.iterdir()] == [QUERY_STORE]


def test_ids_of_every_printable_character_sort_as_python_does(tmp_path):
    """In any case, then exactly: SQLite's BINARY order of UTF-8 is Python's code-point order."""
    rng = np.random.default_rng(5)
    alphabet = list(string.printable.strip()) + ["é", "É", "ß", "日", "\U0001f600"]
    ids = sorted({"".join(rng.choice(alphabet, rng.integers(1, 5))) for _ in range(300)})
    ids = sorted(ids, key=lambda client: (client.lower(), client))
    calls = call_list_frame(len(ids))
    calls["corporation"] = rng.permutation(ids)
    riskdb.write(tmp_path, calls, calls.head(0), history_frame(calls), {})
    rows, _, _ = riskdb.store(tmp_path).clients("", "client", "asc", 1, 1000)
    assert [row["corporation"] for row in rows] == ids


def test_request_files_never_evict_the_servers_own(tmp_path):
    """serving.py's caches: the server's own files apart; request files bounded (MAX_CACHED_FILES)."""
    from attrition.api import serving

    serving.clear()
    rows = "lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3\n"
    own = tmp_path / "testdata.csv"
    own.write_text(rows)
    serving.own_files(own)
    first = serving.read_csv_cached(own)
    requests = []
    for index in range(3 * serving.MAX_CACHED_FILES):
        path = tmp_path / f"request{index}.csv"
        path.write_text(rows)
        requests.append(serving.read_csv_cached(path))
        serving.feature_matrix_cached(path)
    assert serving.read_csv_cached(own) is first  # still the cached frame: not read again
    assert serving.read_csv_cached(tmp_path / "request0.csv") is not requests[0]  # evicted, read again
    assert len(serving._request_files) <= 3 * serving.MAX_CACHED_FILES
    serving.clear()
