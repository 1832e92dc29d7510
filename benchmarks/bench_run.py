"""The whole run at a million and at ten million client rows, each step beside its floor (issue 21).

Data (bench_ingestion.extracts, generated in a child process, never committed): monthly extracts
of the same clients, "1m" = 500,000 clients x 2 extracts, "10m" = 1,000,000 clients x 10; one
more extract (the new month) and a labelled test sample of 10,000 of its rows. Then, in a
temporary workspace, each measured once as a whole process (wall time; peak RSS from wait4,
which for fullprocess.py is its largest step's):
    fullprocess.py, bootstrap        the first run: ingest, train, score, deploy, diagnose, report
    each step alone, beside its floor measured just after it:
        ingestion.py                 the Arrow floor (bench_ingestion: read, de-duplicate, write)
        training.py                  imports + a bare read and fit (bench.py's)
        scoring.py                   imports + a bare load and predict (bench.py's)
        diagnostics.py --measured    importing its libraries (its timing figures are the run's)
        reporting.py                 importing its libraries
        deployment.py                python -c pass
    fullprocess.py, one new extract  ingest, drift check, and what it decides
    the API after that run           bench_dashboard's views over HTTP from one gunicorn worker, a
                                     year of run records (52,560), before and after a dozen
                                     100,000-row request files; the worker's VmRSS and VmHWM
Run
    python benchmarks/bench_run.py                       # both scales (the 10m one takes about 15 minutes)
    python benchmarks/bench_run.py --scale 1m [--json benchmarks/results/run-1m.json] [--keep /tmp/ws]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import bench  # noqa: E402
import bench_dashboard  # noqa: E402
import bench_ingestion  # noqa: E402
import harness  # noqa: E402

PY = harness.PYTHON
PROJECT = harness.PROJECT_DIR
TEST_ROWS = 10_000


def log(message: str) -> None:
    print(f"[bench_run {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def figure(command: list[str], env: dict) -> dict:
    wall, peak = harness.measure(command, env)
    return {"seconds": wall, "peak_rss_mib": peak}


def last_run(root: Path) -> dict:
    lines = (root / "production_deployment" / "runhistory.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    return {
        "exit_status": record.get("exit_status"),
        "decision": record.get("decision"),
        "steps": {step["step"]: step["seconds"] for step in record.get("steps", [])},
    }


def listed_client(root: Path) -> tuple[str, tuple[str, str]]:
    """A client in the middle of the call list, and two search prefixes: its ID's first two
    characters (one in 1,296 clients) and its first character (one in 36)."""
    from attrition.reports import riskdb

    store = riskdb.store(root / "models")
    rows = store.call_list(store.counts["calls"] // 2, 1)
    client = str(rows[0]["corporation"])
    return client, (client[:2], client[:1])


def run_scale(scale: str, temp: Path) -> dict:
    clients, files = bench_ingestion.SCALES[scale]
    config = harness.make_workspace(temp / "ws", api_port=harness.free_port())
    root = config.parent
    env = harness.env_for(config)
    data = temp / "data"
    data.mkdir()
    log(f"{scale}: generating {files + 1} extracts of {clients:,} clients")
    started = time.perf_counter()
    command = [
        PY,
        bench_ingestion.__file__,
        "--generate",
        str(data),
        str(clients),
        str(files + 1),
        str(TEST_ROWS),
    ]
    rows = int(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    generated = time.perf_counter() - started
    for month in range(1, files + 1):
        os.link(data / f"extract{month}.csv", root / "input" / f"extract{month}.csv")
    os.link(data / "testdata.csv", root / "testdata" / "testdata.csv")
    fullprocess = [PY, str(PROJECT / "fullprocess.py")]
    script = {name: [PY, str(PROJECT / f"{name}.py")] for name in ("ingestion", "training", "scoring")}

    log(f"{scale}: fullprocess.py, bootstrap")
    bootstrap = {**figure(fullprocess, env), **last_run(root)}

    steps = {}
    floors = {"python -c pass": figure([PY, "-c", "pass"], env)}
    log(f"{scale}: steps alone")
    steps["ingestion.py"] = figure(script["ingestion"], env)
    floors["Arrow floor"] = figure(
        [PY, "-c", bench_ingestion.ARROW_FLOOR, str(root / "input"), str(temp / "floor.csv")], env
    )
    finaldata = root / "ingesteddata" / "finaldata.csv"
    steps["training.py"] = figure(script["training"], env)
    floors["imports + bare read and fit"] = figure([PY, "-c", bench.TRAIN_FLOOR, str(finaldata)], env)
    steps["scoring.py"] = figure(script["scoring"], env)
    model = root / "models" / "trainedmodel.pkl"
    floors["imports + bare load and predict"] = figure(
        [PY, "-c", bench.SCORE_FLOOR, str(model), str(root / "testdata" / "testdata.csv")], env
    )
    measured = [str(bootstrap["steps"].get(name, 0.0)) for name in ("ingestion.py", "training.py")]
    steps["diagnostics.py"] = figure([PY, str(PROJECT / "diagnostics.py"), "--measured", *measured], env)
    floors["import diagnostics' libraries"] = figure([PY, "-c", bench.IMPORTS["diagnostics"]], env)
    steps["reporting.py"] = figure([PY, str(PROJECT / "reporting.py")], env)
    floors["import reporting's libraries"] = figure([PY, "-c", bench.IMPORTS["reporting"]], env)

    log(f"{scale}: fullprocess.py, one new extract")
    os.link(data / f"extract{files + 1}.csv", root / "input" / f"extract{files + 1}.csv")
    new_extract = {**figure(fullprocess, env), **last_run(root)}

    log(f"{scale}: the API after the run")
    client, prefixes = listed_client(root)
    bench_dashboard.year_of_runs(root)
    api = bench_dashboard.served(config, bench_dashboard.big_paths(client, prefixes), 10)
    record = json.loads((root / "ingesteddata" / "ingestionrecord.json").read_text())
    return {
        "scale": scale,
        "machine": harness.machine(),
        "clients": clients,
        "extracts": files,
        "rows": rows,
        "generated_seconds": generated,
        "finaldata_rows": record["rows_written"],
        "finaldata_mib": finaldata.stat().st_size / 2**20,
        "bootstrap": bootstrap,
        "steps": steps,
        "floors": floors,
        "new_extract": new_extract,
        "api": api,
    }


FLOOR_OF = {
    "ingestion.py": "Arrow floor",
    "training.py": "imports + bare read and fit",
    "scoring.py": "imports + bare load and predict",
    "diagnostics.py": "import diagnostics' libraries",
    "reporting.py": "import reporting's libraries",
}


def print_result(result: dict) -> None:
    print(
        f"\n## {result['scale']}: {result['clients']:,} clients x {result['extracts']} extracts "
        f"({result['rows']:,} rows with the new one), finaldata {result['finaldata_rows']:,} rows "
        f"({result['finaldata_mib']:.0f} MiB); {result['machine']}\n"
    )
    for name in ("bootstrap", "new_extract"):
        run = result[name]
        steps = ", ".join(f"{step} {seconds:.1f}" for step, seconds in run["steps"].items())
        print(
            f"fullprocess.py, {name.replace('_', ' ')}: {run['seconds']:.1f} s, "
            f"peak {run['peak_rss_mib']:.0f} MiB, exit {run['exit_status']}, {run['decision']!r}; "
            f"steps (s): {steps}"
        )
    floor = result["floors"]["python -c pass"]
    print(f"\npython -c pass: {floor['seconds'] * 1000:.0f} ms, {floor['peak_rss_mib']:.0f} MiB\n")
    print("| step alone | s | peak MiB | floor | floor s | floor MiB | time ratio |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for name, step in result["steps"].items():
        floor_name = FLOOR_OF[name]
        floor = result["floors"][floor_name]
        ratio = step["seconds"] / floor["seconds"]
        print(
            f"| {name} | {step['seconds']:.1f} | {step['peak_rss_mib']:.0f} | {floor_name} | "
            f"{floor['seconds']:.1f} | {floor['peak_rss_mib']:.0f} | {ratio:.2f} |"
        )
    api = result["api"]
    for part in ("before", "after"):
        memory = api[f"memory_{part}"]
        when = "" if part == "before" else ", after a dozen 100,000-row request files"
        bench_dashboard.print_table(
            f"the API, one gunicorn worker{when} (worker RSS {memory['VmRSS']:.0f} MiB, "
            f"peak {memory['VmHWM']:.0f} MiB)",
            api[part],
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=[*bench_ingestion.SCALES, "both"], default="both")
    parser.add_argument("--json", type=Path, help="also write the figures here (a list, one per scale)")
    parser.add_argument("--keep", type=Path, help="work in this new folder, kept for a look (one scale)")
    args = parser.parse_args()
    scales = list(bench_ingestion.SCALES) if args.scale == "both" else [args.scale]
    if len(scales) > 1:  # each scale in a process of its own: a child's peak RSS (wait4) counts the
        results = []  # pages of the process that started it, which the API part makes larger
        with tempfile.TemporaryDirectory(prefix="risk-bench-run-") as temp:
            for scale in scales:
                out = Path(temp) / f"{scale}.json"
                subprocess.run([PY, __file__, "--scale", scale, "--json", str(out)], check=True)
                results += json.loads(out.read_text())
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return 0
    if args.keep:
        args.keep.mkdir(parents=True)
        result = run_scale(scales[0], args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="risk-bench-run-") as temp:
            result = run_scale(scales[0], Path(temp))
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps([result], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
