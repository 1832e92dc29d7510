"""Which embedded engine should the API and the dashboard query (issue 21)? SQLite against DuckDB.

A call list of N clients (the columns reporting.py writes to riskranking.csv) is written into
  sqlite     one file: a table keyed by rank, indexes on the client ID, the risk and the change,
             and an FTS5 trigram index for the dashboard's substring search;
  duckdb     one Parquet file sorted by rank, queried with DuckDB (no index; zone maps);
then each question a page or an API route asks is timed (median of repeats, in a fresh process
per engine, whose peak RSS is the reader's memory):
  page 1 (rank order), a page deep in the list (OFFSET, and keyset: rank > last), a substring
  search (50 matches and their count), the riskiest 50, 50 by change, one client by ID, the count.
The floor is the same questions answered by pandas on the list held in memory (what a worker
does today), beside the memory that costs.

DuckDB and pyarrow are not project dependencies: `pip install duckdb pyarrow` (or
--site /path/with/them) to include DuckDB; SQLite is the standard library's.
Run
    python benchmarks/bench_engine.py --clients 1000000 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = (
    "rank",
    "corporation",
    "exit_probability",
    "reason",
    "change",
    "lastmonth_activity",
    "lastyear_activity",
    "number_of_employees",
)
REPEATS = 15
SEARCH = "qx7"  # a substring: about 1 client in 10,000 matches it


def call_list(clients: int, seed: int = 0):
    """A call list of `clients` rows as pandas builds it (IDs of 8 random letters and digits)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype="S1")
    ids = letters[rng.integers(0, len(letters), size=(clients, 8))].view("S8").ravel().astype(str)
    risk = np.sort(rng.random(clients))[::-1]
    reasons = np.array(
        [f"last month's activity far below typical ({value} vs. median 98)" for value in range(50)]
    )
    changes = np.array(["new client", "unchanged", *(f"risk up 0.{i:03d}" for i in range(1, 40))])
    return pd.DataFrame(
        {
            "rank": np.arange(1, clients + 1),
            "corporation": ids,
            "exit_probability": risk,
            "reason": reasons[rng.integers(0, len(reasons), clients)],
            "change": changes[rng.integers(0, len(changes), clients)],
            "lastmonth_activity": rng.integers(0, 500, clients),
            "lastyear_activity": rng.integers(0, 5000, clients),
            "number_of_employees": rng.integers(1, 1000, clients),
        }
    )


def build_sqlite(frame, path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute(
        "CREATE TABLE calls (rank INTEGER PRIMARY KEY, corporation TEXT, exit_probability REAL, "
        "reason TEXT, change TEXT, lastmonth_activity INTEGER, lastyear_activity INTEGER, "
        "number_of_employees INTEGER)"
    )
    rows = frame.itertuples(index=False, name=None)
    steps = {}
    with connection:
        started = time.perf_counter()
        connection.executemany(f"INSERT INTO calls VALUES ({','.join('?' * len(COLUMNS))})", rows)
        steps["rows"] = time.perf_counter() - started
        connection.execute("CREATE INDEX calls_client ON calls (corporation)")
        connection.execute("CREATE INDEX calls_risk ON calls (exit_probability)")
        connection.execute("CREATE INDEX calls_change ON calls (change, rank)")
        steps["indexes"] = time.perf_counter() - started - steps["rows"]
        connection.execute(
            "CREATE VIRTUAL TABLE calls_search USING fts5(corporation, content='calls', "
            "content_rowid='rank', tokenize='trigram')"
        )
        connection.execute(
            "INSERT INTO calls_search (rowid, corporation) SELECT rank, corporation FROM calls"
        )
        steps["search index"] = time.perf_counter() - started - steps["rows"] - steps["indexes"]
    connection.close()
    print("sqlite build:", {step: round(seconds, 2) for step, seconds in steps.items()}, file=sys.stderr)


def build_parquet(frame, path: Path) -> None:
    frame.to_parquet(path, index=False, row_group_size=100_000)


QUESTIONS = {
    "sqlite": {
        "page 1": "SELECT * FROM calls ORDER BY rank LIMIT 50",
        "deep page (OFFSET)": "SELECT * FROM calls ORDER BY rank LIMIT 50 OFFSET {deep}",
        "deep page (keyset)": "SELECT * FROM calls WHERE rank > {deep} ORDER BY rank LIMIT 50",
        "search: 50 matches": (
            "SELECT calls.* FROM calls_search JOIN calls ON calls.rank = calls_search.rowid "
            "WHERE calls_search MATCH '\"{search}\"' ORDER BY calls.rank LIMIT 50"
        ),
        "search: count": "SELECT count(*) FROM calls_search WHERE calls_search MATCH '\"{search}\"'",
        "riskiest 50": "SELECT * FROM calls ORDER BY exit_probability DESC LIMIT 50",
        "50 by change": "SELECT * FROM calls ORDER BY change, rank LIMIT 50",
        "one client": "SELECT * FROM calls WHERE corporation = '{client}'",
        "count": "SELECT count(*) FROM calls",
    },
    "duckdb": {
        "page 1": "SELECT * FROM '{path}' ORDER BY rank LIMIT 50",
        "deep page (OFFSET)": "SELECT * FROM '{path}' ORDER BY rank LIMIT 50 OFFSET {deep}",
        "deep page (keyset)": "SELECT * FROM '{path}' WHERE rank > {deep} ORDER BY rank LIMIT 50",
        "search: 50 matches": (
            "SELECT * FROM '{path}' WHERE contains(corporation, '{search}') ORDER BY rank LIMIT 50"
        ),
        "search: count": "SELECT count(*) FROM '{path}' WHERE contains(corporation, '{search}')",
        "riskiest 50": "SELECT * FROM '{path}' ORDER BY exit_probability DESC LIMIT 50",
        "50 by change": "SELECT * FROM '{path}' ORDER BY change, rank LIMIT 50",
        "one client": "SELECT * FROM '{path}' WHERE corporation = '{client}'",
        "count": "SELECT count(*) FROM '{path}'",
    },
}


def pandas_answers(frame, deep: int, client: str) -> dict:
    """The floor: the questions answered on the list held in memory, as a worker does today."""
    lower = frame["corporation"].str.lower()
    return {
        "page 1": lambda: frame.iloc[:50],
        "deep page (OFFSET)": lambda: frame.iloc[deep : deep + 50],
        "deep page (keyset)": lambda: frame.iloc[deep : deep + 50],
        "search: 50 matches": lambda: frame[lower.str.contains(SEARCH, regex=False).to_numpy()].iloc[:50],
        "search: count": lambda: int(lower.str.contains(SEARCH, regex=False).sum()),
        "riskiest 50": lambda: frame.nlargest(50, "exit_probability"),
        "50 by change": lambda: frame.sort_values(["change", "rank"], kind="stable").iloc[:50],
        "one client": lambda: frame[frame["corporation"].to_numpy() == client],
        "count": lambda: len(frame),
    }


def median_ms(ask) -> float:
    ask()  # the first answer warms the page cache and the engine
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        ask()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def reader(engine: str, path: str, deep: int, client: str) -> dict:
    """In its own process (main --reader): each question's median ms, and the peak RSS."""
    if engine == "pandas":
        import pandas as pd

        questions = pandas_answers(pd.read_parquet(path), deep, client)
    else:
        if engine == "sqlite":
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        else:
            import duckdb

            connection = duckdb.connect()
        values = {"path": path, "deep": deep, "search": SEARCH, "client": client}
        formatted = {name: sql.format(**values) for name, sql in QUESTIONS[engine].items()}
        questions = {
            name: (lambda sql=sql: connection.execute(sql).fetchall()) for name, sql in formatted.items()
        }
    figures = {name: round(median_ms(ask), 3) for name, ask in questions.items()}
    figures["peak RSS MiB"] = peak_rss_mib()
    return figures


def peak_rss_mib() -> float:
    """This process's peak resident memory since exec (VmHWM: getrusage's maxrss would include the
    parent's, inherited across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--site", help="a folder holding duckdb and pyarrow, if not installed")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--reader", nargs=4, metavar=("ENGINE", "PATH", "DEEP", "CLIENT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.site:
        sys.path.insert(0, args.site)
    if args.reader:
        engine, path, deep, client = args.reader
        print(json.dumps(reader(engine, path, int(deep), client)))
        return 0
    results = {"clients": args.clients}
    with tempfile.TemporaryDirectory(prefix="risk-bench-engine-") as temp:
        folder = Path(temp)
        frame = call_list(args.clients)
        deep, client = args.clients // 2, frame["corporation"].iloc[args.clients // 3]
        files = {"sqlite": folder / "calls.sqlite", "duckdb": folder / "calls.parquet"}
        for engine, build in (("sqlite", build_sqlite), ("duckdb", build_parquet)):
            started = time.perf_counter()
            try:
                build(frame, files[engine])
            except ImportError as error:
                print(f"{engine}: skipped ({error}; pip install duckdb pyarrow)")
                files.pop(engine)
                continue
            results[f"{engine} build s"] = round(time.perf_counter() - started, 2)
            results[f"{engine} file MiB"] = round(files[engine].stat().st_size / 2**20, 1)
        del frame
        for engine in ("pandas", "sqlite", "duckdb"):
            path = files.get("duckdb" if engine == "pandas" else engine)
            if path is None:
                continue
            command = [sys.executable, __file__, "--reader", engine, str(path), str(deep), client]
            if args.site:
                command[2:2] = ["--site", args.site]
            answer = subprocess.run(command, capture_output=True, text=True, check=True)
            results[engine] = json.loads(answer.stdout)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
