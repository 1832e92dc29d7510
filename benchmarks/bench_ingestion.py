"""Ingestion against the Arrow floor, at a million rows and at ten million (issue 21).

Monthly extracts of the same clients (IDs of 8 letters and digits): each month about 70% of the
rows repeat the previous month's exactly (the duplicates ingestion drops), the others change,
and about 1% of the clients leave. Generated with numpy and written by Arrow; never committed.
Measured, each as a whole process (wall time, and peak RSS from wait4), alternating, the median
of --runs after a warm-up:
    python -c pass                the interpreter
    import pandas, pyarrow        the libraries
    the Arrow floor               pyarrow.csv.read_csv of every file, concat, to_pandas,
                                  drop_duplicates, pyarrow.csv.write_csv: the same work, with no
                                  validation, no record, no extracts file, no fsync
    ingestion.py                  the real script on the same files
Run
    python benchmarks/bench_ingestion.py                     # 1M rows (2 x 500,000) and 10M (10 x 1M)
    python benchmarks/bench_ingestion.py --scale 1m --runs 5 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import harness  # noqa: E402

PY = harness.PYTHON
SCALES = {"1m": (500_000, 2), "10m": (1_000_000, 10)}  # (clients, monthly extracts)
ARROW_FLOOR = """
import sys
from pathlib import Path
import pyarrow as pa, pyarrow.csv as csv
files = sorted(Path(sys.argv[1]).glob('*.csv'), key=lambda path: int(path.stem.removeprefix('extract')))
frame = pa.concat_tables([csv.read_csv(path) for path in files]).to_pandas()
csv.write_csv(pa.Table.from_pandas(frame.drop_duplicates(), preserve_index=False), sys.argv[2])
"""


def extracts(folder: Path, clients: int, files: int, seed: int = 0, test_rows: int = 0) -> int:
    """Write files monthly extracts of clients clients into folder (extract1.csv ...), and with
    test_rows a labelled sample of the last month (testdata.csv); returns the extracts' rows.

    A client leaves in a month with probability 0.9 when its last month's activity is below 500,
    0.003 otherwise (a model can learn it); a client who left is reported unchanged after."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as csv

    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype="S1")
    ids = np.unique(letters[rng.integers(0, 36, size=(clients, 8))].view("S8").ravel())
    ids = pa.array(ids[rng.permutation(len(ids))].astype(str))
    features = rng.integers(0, 5000, size=(len(ids), 3))
    exited = np.zeros(len(ids), dtype=np.int64)
    rows = 0
    for month in range(1, files + 1):
        changed = (rng.random(len(ids)) < 0.3) & (exited == 0)
        features[changed] = rng.integers(0, 5000, size=(int(changed.sum()), 3))
        leaving = rng.random(len(ids)) < np.where(features[:, 0] < 500, 0.9, 0.003)
        exited |= leaving
        table = pa.table(
            {
                "corporation": ids,
                "lastmonth_activity": features[:, 0],
                "lastyear_activity": features[:, 1],
                "number_of_employees": features[:, 2],
                "exited": exited,
            }
        )
        csv.write_csv(table, folder / f"extract{month}.csv", csv.WriteOptions(quoting_style="none"))
        rows += len(table)
    if test_rows:
        sample = np.sort(rng.choice(len(ids), size=min(test_rows, len(ids)), replace=False))
        csv.write_csv(table.take(sample), folder / "testdata.csv", csv.WriteOptions(quoting_style="none"))
    return rows


def bench(scale: str, runs: int, temp: Path) -> dict:
    clients, files = SCALES[scale]
    config = harness.make_workspace(temp / scale)
    started = time.perf_counter()
    # in a child process: the figures' peak RSS (wait4) must not count this process's copy of the data
    generated = subprocess.run(
        [PY, __file__, "--generate", str(config.parent / "input"), str(clients), str(files), "0"],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = int(generated.stdout)
    seconds = time.perf_counter() - started
    print(f"{scale}: {rows:,} rows in {files} extracts, generated in {seconds:.0f} s", file=sys.stderr)
    env = harness.env_for(config)
    commands = {
        "python -c pass": [PY, "-c", "pass"],
        "import pandas, pyarrow": [PY, "-c", "import pandas, pyarrow"],
        "Arrow floor": [PY, "-c", ARROW_FLOOR, str(config.parent / "input"), str(temp / "floor.csv")],
        "ingestion.py": [PY, str(harness.PROJECT_DIR / "ingestion.py")],
    }
    for command in commands.values():
        harness.measure(command, env)  # warm-up: the files in the page cache, the imports compiled
    walls = {name: [] for name in commands}
    peaks = {name: [] for name in commands}
    for _ in range(runs):  # alternating: a busy moment of the machine falls on every figure alike
        for name, command in commands.items():
            wall, peak = harness.measure(command, env)
            walls[name].append(wall)
            peaks[name].append(peak)
    record = json.loads((config.parent / "ingesteddata" / "ingestionrecord.json").read_text())
    figures = {
        name: {
            "median_s": sorted(walls[name])[len(walls[name]) // 2],
            "min_s": min(walls[name]),
            "max_s": max(walls[name]),
            "peak_rss_mib": max(peaks[name]),
        }
        for name in commands
    }
    return {
        "scale": scale,
        "rows": rows,
        "files": files,
        "rows_written": record["rows_written"],
        "duplicates_dropped": record["duplicates_dropped"],
        "figures": figures,
        "ratio_to_arrow_floor": figures["ingestion.py"]["median_s"] / figures["Arrow floor"]["median_s"],
        "ratios_per_run": [
            mine / floor for mine, floor in zip(walls["ingestion.py"], walls["Arrow floor"], strict=True)
        ],
    }


def print_result(result: dict, machine: str) -> None:
    print(
        f"\n{result['rows']:,} rows in {result['files']} extracts ({result['duplicates_dropped']:,} "
        f"duplicates dropped, {result['rows_written']:,} written), {machine}"
    )
    print(f"{'figure':<26} {'median s':>9} {'min-max s':>13} {'peak RSS MiB':>13}")
    for name, figure in result["figures"].items():
        span = f"{figure['min_s']:.2f}-{figure['max_s']:.2f}"
        print(f"{name:<26} {figure['median_s']:>9.2f} {span:>13} {figure['peak_rss_mib']:>13.0f}")
    per_run = ", ".join(f"{ratio:.2f}" for ratio in result["ratios_per_run"])
    print(f"ingestion.py / Arrow floor: {result['ratio_to_arrow_floor']:.2f} (per run: {per_run})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=[*SCALES, "both"], default="both")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--generate", nargs=4, metavar=("FOLDER", "CLIENTS", "FILES", "TEST_ROWS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.generate:
        folder, clients, files, test_rows = args.generate
        print(extracts(Path(folder), int(clients), int(files), test_rows=int(test_rows)))
        return 0
    machine = harness.machine()
    results = []
    for scale in SCALES if args.scale == "both" else [args.scale]:
        with tempfile.TemporaryDirectory(prefix="risk-bench-ingest-") as temp:
            results.append(bench(scale, args.runs, Path(temp)))
        print_result(results[-1], machine)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
