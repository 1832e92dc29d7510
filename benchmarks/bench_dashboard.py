"""Dashboard and API benchmark: page views and the API's list routes, beside the JSON "/" route.

Two workspaces: the bundled data after the walkthrough (bootstrap on practicedata, then the
production run on sourcedata, reports and diagnostics), viewed in-process (Flask's test client);
and the same with --clients synthetic clients (1,000,000 by default) in finaldata.csv, reported
on by reporting.py and diagnostics.py as a run would (their seconds are printed), and a year of
10-minute run records (52,560), served by a real gunicorn worker (`make serve`'s settings, one
worker) and asked over HTTP. Each figure is the median of repeated requests after a first one
(the worker's first view, reported on its own). Then a dozen /prediction requests naming
different 100,000-row files, and the same views again: the request files must evict nothing.
The worker's resident memory (VmRSS, and its peak VmHWM) is read from /proc after each part.
Run
    python benchmarks/bench_dashboard.py [--repeat 20] [--clients 1000000] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import harness  # noqa: E402

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


def million(config: Path, rows: int) -> tuple[str, dict]:
    """rows synthetic clients in finaldata.csv (a tenth of them gone: the lost list), then
    reporting.py and diagnostics.py on them as a run would; a year of run records. Returns (one
    client's ID, each script's seconds)."""
    import numpy as np
    import pandas as pd

    root = config.parent
    rng = np.random.default_rng(0)
    ids = np.char.add("c", np.char.zfill(np.arange(rows).astype(str), 8))
    features = rng.integers(0, 5000, size=(rows, 3))
    final = pd.DataFrame(
        {
            "corporation": ids,
            "lastmonth_activity": features[:, 0],
            "lastyear_activity": features[:, 1],
            "number_of_employees": features[:, 2],
            "exited": (rng.random(rows) < 0.1).astype(int),
        }
    )
    final_path = root / "ingesteddata" / "finaldata.csv"
    final.to_csv(final_path, index=False)
    (root / "ingesteddata" / "finaldataextracts.csv").unlink(missing_ok=True)
    record_path = root / "ingesteddata" / "ingestionrecord.json"
    record = json.loads(record_path.read_text())
    record["finaldata_sha256"] = hashlib.sha256(final_path.read_bytes()).hexdigest()
    record_path.write_text(json.dumps(record))
    seconds = {}
    for script, *args in (("reporting.py",), ("diagnostics.py", "--measured", "1", "1")):
        started = time.perf_counter()
        harness.run_script(config, script, *args)
        seconds[script] = time.perf_counter() - started
    year_of_runs(root)
    return str(ids[rows // 2]), seconds


def year_of_runs(root: Path) -> None:
    """The run history made a year of 10-minute runs long (52,560 records, the last one's copies)."""
    history = root / "production_deployment" / "runhistory.jsonl"
    last = history.read_text().splitlines()[-1]
    history.write_text((last + "\n") * 52_560)


def big_paths(client_id: str, prefixes: tuple[str, str]) -> list[tuple[str, str, dict]]:
    """The views measured over HTTP on a large workspace: client_id is a listed client; prefixes
    a search matching a few thousand clients and one matching most."""
    few, most = prefixes
    return [
        ('floor: GET / as JSON ("hello world")', "/", {}),
        ("GET / (the dashboard)", "/", BROWSER),
        ("GET /clients (page 1)", "/clients", BROWSER),
        ("GET /clients?page=10000", "/clients?page=10000", BROWSER),
        (f"GET /clients?q={few} (search)", f"/clients?q={few}", BROWSER),
        (f"GET /clients?q={most} (search, most match)", f"/clients?q={most}", BROWSER),
        ("GET /clients?sort=risk&order=asc", "/clients?sort=risk&order=asc", BROWSER),
        ("GET /clients?sort=change&page=5000", "/clients?sort=change&order=desc&page=5000", BROWSER),
        (f"GET /clients/{client_id}", f"/clients/{client_id}", BROWSER),
        ("GET /calllist?offset=400000", "/calllist?offset=400000", {}),
        ("GET /runs?limit=1 (52,560 runs)", "/runs?limit=1", {}),
        ("GET /runs?limit=1000", "/runs?limit=1000", {}),
        ("GET /summarystats", "/summarystats", {}),
        ("GET /metrics (a Prometheus scrape)", "/metrics", {}),
    ]


def worker_memory(master: int) -> dict:
    """The gunicorn worker's VmRSS and VmHWM (peak) in MiB, from /proc."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM")}


def served(config: Path, paths: list[tuple[str, str, dict]], repeat: int) -> dict:
    """The views over HTTP from one real gunicorn worker: before and after a dozen request files."""
    import numpy as np
    import pandas as pd
    import requests

    from attrition.api.server import start_api_server, stop_process

    port = harness.free_port()
    env = {**harness.env_for(config)}
    server = start_api_server("127.0.0.1", port, config.parent / "bench-gunicorn.log", workers=1, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        session = requests.Session()

        def one(path, headers):
            started = time.perf_counter()
            answer = session.get(base + path, headers=headers, timeout=300)
            elapsed = (time.perf_counter() - started) * 1000
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            return elapsed, len(answer.content)

        def measure_all():
            results = []
            for name, path, headers in paths:
                first_ms, size = one(path, headers)
                times = [one(path, headers)[0] for _ in range(repeat)]
                results.append(
                    {
                        "figure": name,
                        "first_ms": first_ms,
                        "median_ms": statistics.median(times),
                        "max_ms": max(times),
                        "bytes": size,
                    }
                )
            return results

        before = measure_all()
        memory_before = worker_memory(server.pid)
        folder = config.parent / "testdata"
        rng = np.random.default_rng(1)
        for index in range(12):
            frame = pd.DataFrame(
                rng.integers(0, 5000, size=(100_000, 3)),
                columns=["lastmonth_activity", "lastyear_activity", "number_of_employees"],
            )
            frame.to_csv(folder / f"request{index}.csv", index=False)
            one(f"/prediction?filepath=testdata/request{index}.csv", {})
        after = measure_all()
        return {
            "before": before,
            "memory_before": memory_before,
            "after": after,
            "memory_after": worker_memory(server.pid),
        }
    finally:
        stop_process(server)


def views(config: Path, paths: list[tuple[str, str, dict]], repeat: int) -> list[dict]:
    from attrition.api import serving
    from attrition.api.app import create_app

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


def run(repeat: int, clients: int, temp: Path) -> dict:
    import pandas as pd

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
    big_id, seconds = million(config, clients)
    big = served(config, big_paths(big_id, ("c0099", "c")), max(3, repeat // 2))
    return {
        "machine": harness.machine(),
        "bundled": bundled,
        "clients": clients,
        "pipeline_seconds": seconds,
        "million": big,
    }


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}\n{'figure':<44} {'first ms':>9} {'median ms':>10} {'max ms':>8} {'KiB':>6}")
    for row in rows:
        print(
            f"{row['figure']:<44} {row['first_ms']:>9.1f} {row['median_ms']:>10.1f} "
            f"{row['max_ms']:>8.1f} {row['bytes'] / 1024:>6.0f}"
        )


def print_tables(result: dict) -> None:
    print(f"\nDashboard page views, on {result['machine']}")
    print_table("bundled data after the walkthrough (in-process)", result["bundled"])
    big, clients = result["million"], result["clients"]
    steps = ", ".join(f"{name} {value:.1f} s" for name, value in result["pipeline_seconds"].items())
    print(f"\n{clients:,} clients: {steps}")
    for part in ("before", "after"):
        memory = big[f"memory_{part}"]
        when = "" if part == "before" else " after a dozen 100,000-row request files"
        print_table(
            f"{clients:,} clients, one gunicorn worker{when} "
            f"(worker RSS {memory['VmRSS']:.0f} MiB, peak {memory['VmHWM']:.0f} MiB)",
            big[part],
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="risk-bench-dash-") as temp:
        result = run(args.repeat, args.clients, Path(temp))
    print_tables(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
