"""Dashboard benchmark: page views in-process (Flask's test client), beside the JSON "/" route.

Two workspaces: the bundled data after the walkthrough (bootstrap on practicedata, then the
production run on sourcedata, reports and diagnostics), and the same with a 1,000,000-row call
list and finaldata.csv. Each figure is the median of repeated views after one warm-up view
(the first view reads the files into the worker's cache; it is reported on its own).
Run
    python benchmarks/bench_dashboard.py [--repeat 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import harness  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def walkthrough(root: Path) -> Path:
    """The README walkthrough on the bundled data, in a temporary workspace."""
    config = harness.make_workspace(root, api_port=harness.free_port())
    for path in (harness.PROJECT_DIR / "practicedata").glob("*.csv"):
        shutil.copy(path, root / "input" / path.name)
    shutil.copy(harness.PROJECT_DIR / "testdata" / "testdata.csv", root / "testdata" / "testdata.csv")
    harness.run_script(config, "fullprocess.py")
    for path in (harness.PROJECT_DIR / "sourcedata").glob("*.csv"):
        shutil.copy(path, root / "input" / path.name)
    harness.run_script(config, "fullprocess.py")
    harness.run_script(config, "diagnostics.py")
    return config


def million(config: Path, rows: int = 1_000_000) -> str:
    """Replace the call list and finaldata.csv with rows synthetic clients; returns one client's ID."""
    root = config.parent
    rng = np.random.default_rng(0)
    ids = np.char.add("c", np.char.zfill(np.arange(rows).astype(str), 7))
    risk = np.sort(rng.random(rows))[::-1]
    features = rng.integers(0, 5000, size=(rows, 3))
    calls = pd.DataFrame(
        {
            "rank": np.arange(1, rows + 1),
            "corporation": ids,
            "exit_probability": risk,
            "reason": "last month's activity far below typical (14 vs. median 98)",
            "reason_log_odds": rng.random(rows),
            "change": "unchanged",
            "previous_probability": risk,
            "lastmonth_activity": features[:, 0],
            "lastyear_activity": features[:, 1],
            "number_of_employees": features[:, 2],
        }
    )
    calls.to_csv(root / "models" / "riskranking.csv", index=False)
    final = calls[["corporation", "lastmonth_activity", "lastyear_activity", "number_of_employees"]].assign(
        exited=0
    )
    final.to_csv(root / "ingesteddata" / "finaldata.csv", index=False)
    return str(ids[rows // 2])


def views(config: Path, paths: list[tuple[str, str, dict]], repeat: int) -> list[dict]:
    import serving
    from app import create_app

    serving.clear()
    client = create_app({"RISK_CONFIG": str(config)}).test_client()
    results = []
    for name, path, headers in paths:
        started = time.perf_counter()
        first = client.get(path, headers=headers)
        first_ms = (time.perf_counter() - started) * 1000
        assert first.status_code == 200, (path, first.status_code)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(path, headers=headers)
            times.append((time.perf_counter() - started) * 1000)
        results.append(
            {
                "figure": name,
                "first_ms": first_ms,
                "median_ms": statistics.median(times),
                "max_ms": max(times),
                "bytes": len(first.data),
            }
        )
    return results


def run(repeat: int, temp: Path) -> dict:
    config = walkthrough(temp / "ws")
    client_id = pd.read_csv(config.parent / "models" / "riskranking.csv", dtype={"corporation": str})[
        "corporation"
    ][7]
    bundled = views(
        config,
        [
            ('floor: GET / as JSON ("hello world")', "/", {}),
            ("GET / (the dashboard)", "/", BROWSER),
            ("GET /clients (page 1)", "/clients", BROWSER),
            ("GET /clients?page=40", "/clients?page=40", BROWSER),
            ("GET /clients?q=ab (search)", "/clients?q=ab", BROWSER),
            ("GET /clients?sort=risk&order=asc", "/clients?sort=risk&order=asc", BROWSER),
            (f"GET /clients/{client_id}", f"/clients/{client_id}", BROWSER),
        ],
        repeat,
    )
    big_id = million(config)
    big = views(
        config,
        [
            ('floor: GET / as JSON ("hello world")', "/", {}),
            ("GET /clients (page 1)", "/clients", BROWSER),
            ("GET /clients?page=10000", "/clients?page=10000", BROWSER),
            ("GET /clients?q=c09999 (search)", "/clients?q=c09999", BROWSER),
            ("GET /clients?sort=risk&order=asc", "/clients?sort=risk&order=asc", BROWSER),
            (f"GET /clients/{big_id}", f"/clients/{big_id}", BROWSER),
        ],
        max(3, repeat // 4),
    )
    return {"machine": harness.machine(), "bundled": bundled, "million": big}


def print_tables(result: dict) -> None:
    print(f"\nDashboard page views in-process, on {result['machine']}")
    for key, title in (
        ("bundled", "bundled data after the walkthrough"),
        ("million", "1,000,000-row call list"),
    ):
        print(f"\n{title}\n{'figure':<44} {'first ms':>9} {'median ms':>10} {'max ms':>8} {'KiB':>6}")
        for row in result[key]:
            print(
                f"{row['figure']:<44} {row['first_ms']:>9.1f} {row['median_ms']:>10.1f} "
                f"{row['max_ms']:>8.1f} "
                f"{row['bytes'] / 1024:>6.0f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="risk-bench-dash-") as temp:
        result = run(args.repeat, Path(temp))
    print_tables(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
