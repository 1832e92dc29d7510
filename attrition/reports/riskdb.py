"""The query store: the lists and the clients' rows, as the dashboard and the API ask for them.

Not a script. reporting.py writes it (write) right after the call list and the lost list, into
the model folder as riskdata.sqlite: a new SQLite file built beside the old one and swapped in
whole, so that a reader has the old file or the new one, never half of either (a reader that
opened the old one keeps it until its next question). The dashboard and the API open it
read-only (store) and ask questions whose cost is that of their answer: a page is an index
range, a client is a key, the totals are stored; nothing is read whole, and a worker holds
nothing of it but SQLite's page cache. The course's CSV files stay as they are: they are the
record, this is an index of them (why SQLite: docs/benchmarks.md, the engine comparison).

Tables
    meta     name -> JSON: "basis" (riskranking.json's stamp of the lists), "counts"
    calls    the call list (riskranking.csv's columns), one row per client, by rank, with each
             sort's position: any page of any sort is an index range however deep
    lost     the lost list (lostclients.csv's columns)
    history  finaldata.csv's rows in file order: the clients' rows across extracts

Sorts (the dashboard's): rank; risk (exit probability, ties in rank order, so that the riskiest
first is the call list's own order); client (ID in any case, then exactly: "ab" < "AC" < "ac");
change (its words, ties in rank order). Descending is the exact reverse of ascending. Search
finds the IDs that start with the text in any case: a range of the client order, found with two
lookups of an index (a substring would be a scan of every ID), so its count costs nothing and
its pages in client order are ranges too; in another order, the sort's index is walked for the
matches when they are many, and the matches sorted when they are few.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from attrition.core.errors import DataUnavailable
from attrition.core.files import atomic_path, file_stamp
from attrition.core.names import ID_COLUMN, QUERY_STORE, RISK_RANKING_BASIS
from attrition.core.records import sha256_file

if TYPE_CHECKING:  # the writer's; a reader (fullprocess.py, the API) needs neither
    import numpy as np
    import pandas as pd

SCHEMA = 1
SORTS = {"rank": "rank", "risk": "risk_order", "client": "client_order", "change": "change_order"}
ORDERS = ("asc", "desc")
SORTED_MATCHES = 200_000  # a search matching up to this many clients sorts them (about 40 ms at most)
_BUILD = (
    "PRAGMA journal_mode = OFF",  # a new file no reader sees before it is whole: nothing to roll back
    "PRAGMA synchronous = OFF",  # atomic_path fsyncs it once, before the swap
    "PRAGMA page_size = 8192",
    "PRAGMA cache_size = -65536",  # 64 MiB while the indexes are built
)


def _sql_type(series: pd.Series) -> str:
    import pandas as pd

    if pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series):
        return "INTEGER"
    if pd.api.types.is_float_dtype(series):
        return "REAL"
    return "TEXT"


def _columns(frame: pd.DataFrame) -> list:
    """Each column as Python values, NaN and None as NULL (sqlite3 binds NaN as NULL)."""
    values = []
    for name in frame.columns:
        column = frame[name]
        if _sql_type(column) == "TEXT":
            column = column.astype(object).where(column.notna(), None)
        values.append(column.tolist())
    return values


def _create(connection: sqlite3.Connection, table: str, frame: pd.DataFrame, key: str, extra=()) -> None:
    """CREATE TABLE from the frame's columns (and extra (name, values)), rows inserted in order."""
    names = [f'"{name}" {_sql_type(frame[name])}' for name in frame.columns]
    names += [f'"{name}" INTEGER' for name, _ in extra]
    connection.execute(f'CREATE TABLE {table} ("{key}" INTEGER PRIMARY KEY, {", ".join(names)})')
    columns = [list(range(len(frame))), *_columns(frame), *[list(values) for _, values in extra]]
    marks = ", ".join("?" * len(columns))
    connection.executemany(f"INSERT INTO {table} VALUES ({marks})", zip(*columns, strict=True))


def positions(order: np.ndarray) -> list[int]:
    """Each row's position in a sort, from the rows in that sort's order (an argsort)."""
    import numpy as np

    where = np.empty(len(order), dtype=np.int64)
    where[order] = np.arange(len(order))
    return where.tolist()


def sort_positions(calls: pd.DataFrame) -> list[tuple[str, list[int]]]:
    """(column, each row's position) for the sorts other than rank; calls are in rank order.
    Text is sorted by Arrow in UTF-8 byte order: code-point order, as SQLite's BINARY and
    Python's sorted()."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = calls[ID_COLUMN].astype(str)
    table = pa.table(
        {
            "row": np.arange(len(calls)),
            "probability": calls["exit_probability"].to_numpy(dtype=float),
            "lower": pa.array(ids.str.lower(), type=pa.large_string()),
            "exact": pa.array(ids, type=pa.large_string()),
            "change": pa.array(calls["change"].astype(str), type=pa.large_string()),
        }
    )

    def order(*keys):
        return positions(pc.sort_indices(table, sort_keys=list(keys)).to_numpy())

    return [
        ("risk_order", order(("probability", "ascending"), ("row", "descending"))),  # descending: rank order
        ("client_order", order(("lower", "ascending"), ("exact", "ascending"))),  # id_lower's index order
        ("change_order", order(("change", "ascending"), ("row", "ascending"))),
    ]


def build(path: Path, calls: pd.DataFrame, lost: pd.DataFrame, history: pd.DataFrame, basis: dict) -> None:
    """Write the store into path (a new, empty file)."""
    calls = calls.reset_index(drop=True)
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in _BUILD:
            connection.execute(pragma)
        connection.execute("BEGIN")
        connection.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        ids_lower = calls[ID_COLUMN].astype(str).str.lower()
        calls_table = calls.drop(columns=["rank"]).assign(id_lower=ids_lower)
        _create(connection, "calls", calls_table, "position", sort_positions(calls))
        _create(connection, "lost", lost.reset_index(drop=True), "position")
        _create(connection, "history", history.reset_index(drop=True), "row")
        for statement in (
            "CREATE INDEX calls_id ON calls (id_lower, corporation)",
            "CREATE INDEX calls_risk ON calls (risk_order)",
            "CREATE INDEX calls_client ON calls (client_order, risk_order, change_order)",  # covers searches
            "CREATE INDEX calls_change ON calls (change_order)",
            "CREATE INDEX history_id ON history (corporation)",
        ):
            connection.execute(statement)
        meta = {
            "schema": SCHEMA,
            "basis": basis,
            "counts": {"calls": len(calls), "lost": len(lost), "history": len(history)},
        }
        connection.executemany(
            "INSERT INTO meta VALUES (?, ?)", [(name, json.dumps(value)) for name, value in meta.items()]
        )
        connection.execute("COMMIT")
    finally:
        connection.close()


def write(folder: Path, calls: pd.DataFrame, lost: pd.DataFrame, history: pd.DataFrame, basis: dict) -> Path:
    """riskdata.sqlite in folder, replaced whole (atomic_path)."""
    target = folder / QUERY_STORE
    with atomic_path(target) as temp:
        build(temp, calls, lost, history, basis)
    return target


class Store:
    """A read-only connection to one riskdata.sqlite file (one inode: a replaced file is another)."""

    def __init__(self, path: Path):
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"  # never written in place: replaced whole
        self.connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self.connection.row_factory = sqlite3.Row
        self.lock = threading.Lock()
        meta = dict(self.rows("SELECT name, value FROM meta"))
        if json.loads(meta.get("schema", "null")) != SCHEMA:
            raise sqlite3.DatabaseError(f"{path.name}: not schema {SCHEMA}; run reporting.py")
        self.basis = json.loads(meta["basis"])
        self.counts = json.loads(meta["counts"])
        self.call_columns = [
            row["name"]
            for row in self.rows("PRAGMA table_info(calls)")
            if row["name"] not in ("position", "id_lower", *SORTS.values())
        ]

    def rows(self, sql: str, parameters=()) -> list[sqlite3.Row]:
        with self.lock:
            return self.connection.execute(sql, parameters).fetchall()

    def _call_rows(self, where: str, parameters, order: str = "position", limit=-1, offset=0, index=""):
        listed = ", ".join(f'"{name}"' for name in self.call_columns)
        sql = f"SELECT position + 1 AS rank, {listed} FROM calls {index} WHERE {where} ORDER BY {order}"
        sql += " LIMIT ? OFFSET ?"
        return [dict(row) for row in self.rows(sql, (*parameters, limit, offset))]

    def call_list(self, offset: int, limit: int) -> list[dict]:
        """limit rows of the call list from offset (0: the riskiest), in rank order."""
        return self._call_rows("position >= ? AND position < ?", (offset, offset + limit))

    def client_range(self, query: str) -> tuple[int, int]:
        """[low, high): the client-order positions of the IDs that start with query, in any case."""
        ends = []
        for bound in prefix_bounds(query.lower()):
            sql = "SELECT client_order FROM calls WHERE id_lower >= ? ORDER BY id_lower, corporation LIMIT 1"
            found = self.rows(sql, (bound,))
            ends.append(found[0][0] if found else self.counts["calls"])
        return ends[0], ends[1]

    def clients(self, query: str, sort: str, order: str, page: int, size: int) -> tuple[list[dict], int, int]:
        """(the rows of page `page` (from 1; past the last: the last) of `size` rows of the call list
        whose IDs start with query (all: ""), in that sort and order; how many match; the page)."""
        everyone = self.counts["calls"]
        low, high = self.client_range(query) if query else (0, everyone)
        total = high - low
        page = min(page, max(1, math.ceil(total / size)))
        first = (page - 1) * size
        column = "position" if sort == "rank" else SORTS[sort]
        direction = "DESC" if order == "desc" else "ASC"
        if sort == "client" or total == everyone:  # the page is a range of the sort's own positions
            start, stop = (low, high) if sort == "client" else (0, everyone)
            if order == "asc":
                start, stop = start + first, min(stop, start + first + size)
            else:
                start, stop = max(start, stop - first - size), stop - first
            where = f"{column} >= ? AND {column} < ?"
            return self._call_rows(where, (start, stop), f"{column} {direction}"), total, page
        # Walk the sort's index keeping the matches (about (first + size) * everyone / total rows
        # when IDs and the sort are unrelated, but all of them when IDs follow the sort), or sort
        # the matches, up to SORTED_MATCHES of them: calls_client holds every sort's position
        # (a covering index, about 0.2 us a match), so the page's positions are found without
        # reading a row, then its rows are read.
        if total > SORTED_MATCHES and total * total > (first + size) * everyone:
            index = "NOT INDEXED" if sort == "rank" else f"INDEXED BY calls_{sort}"  # rank: the table's order
            where = "client_order >= ? AND client_order < ?"
            return (
                self._call_rows(where, (low, high), f"{column} {direction}", size, first, index),
                total,
                page,
            )
        sql = (
            "SELECT position FROM calls INDEXED BY calls_client WHERE client_order >= ? AND client_order < ? "
            f"ORDER BY {column} {direction} LIMIT ? OFFSET ?"
        )
        found = [row[0] for row in self.rows(sql, (low, high, size, first))]
        where = f"position IN ({', '.join('?' * len(found))})"
        return self._call_rows(where, found, f"{column} {direction}"), total, page

    def client(self, client: str) -> dict | None:
        """The client's row of the call list, or None."""
        rows = self._call_rows("id_lower = ? AND corporation = ?", (client.lower(), client))
        return rows[0] if rows else None

    def history(self, client: str) -> list[dict]:
        """The client's rows across extracts, in finaldata.csv's order."""
        return [
            dict(row)
            for row in self.rows("SELECT * FROM history WHERE corporation = ? ORDER BY row", (client,))
        ]


def prefix_bounds(prefix: str) -> tuple[str, str]:
    """(low, high): the strings that start with prefix are those from low up to, not including, high
    (code-point order, which is SQLite's BINARY order of UTF-8)."""
    for cut in range(len(prefix) - 1, -1, -1):
        following = ord(prefix[cut]) + 1
        if following == 0xD800:
            following = 0xE000  # surrogates are not characters of UTF-8 text
        if following <= 0x10FFFF:
            return prefix, prefix[:cut] + chr(following)
    return prefix, "\U0010ffff" * 2  # (no such prefix in practice)


_lock = threading.Lock()
_stores: dict[Path, tuple[tuple, Store]] = {}


_unverified: dict[Path, tuple[tuple, str]] = {}


def store(folder: Path) -> Store | None:
    """The query store of a model folder, opened once per process and again when it is replaced;
    None when there is none (reporting.py has not run); DataUnavailable when it cannot be read."""
    path = folder / QUERY_STORE
    stamp = file_stamp(path)
    with _lock:
        cached = _stores.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if cached is not None:  # replaced: closed when its last holder lets go of it (refcounting)
            del _stores[path]
        if stamp[0] is None:
            return None
        failed = _unverified.get(path)
        problem = failed[1] if failed is not None and failed[0] == stamp else unverified(folder, path)
        if problem:
            _unverified[path] = (stamp, problem)  # hashed once per damaged file, not per request
            raise DataUnavailable(problem)
        _unverified.pop(path, None)
        try:
            opened = Store(path)
        except (sqlite3.Error, KeyError, ValueError) as error:
            raise DataUnavailable(f"{path.name}: cannot be read ({error}); run reporting.py") from None
        _stores[path] = (stamp, opened)
        return opened


def unverified(folder: Path, path: Path) -> str | None:
    """Why the store is not the file reporting.py wrote (riskranking.json's store_sha256), or None.
    Checked once per file (a replaced or rewritten store is another stamp): a flipped byte must
    not make a client who does not exist the riskiest (SQLite's quick_check does not see it)."""
    try:
        basis = json.loads((folder / RISK_RANKING_BASIS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no basis: nothing to compare (the dashboard names the missing stamp)
    expected = basis.get("store_sha256") if isinstance(basis, dict) else None
    if not isinstance(expected, str) or basis.get("pending"):
        return None  # written before the check, or being rewritten right now
    if sha256_file(path) != expected:
        return (
            f"{path.name}: not the file reporting.py wrote (damaged); the next fullprocess.py run rebuilds it"
        )
    return None


def basis_of(folder: Path) -> dict | None:
    """The basis the store in folder holds (None: no store, or not readable): fullprocess.py
    compares it with riskranking.json's."""
    try:
        opened = store(folder)
    except DataUnavailable:
        return None
    return None if opened is None else opened.basis
