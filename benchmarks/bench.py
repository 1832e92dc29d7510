"""The project's benchmark: every step as a whole process, the API, and their floors.

For each scale it generates data with generate_data.py in a temporary workspace, then
measures (median of --runs runs after a warm-up; wall time and peak RSS from wait4):
ingestion, training, scoring, deployment, reporting, diagnostics, fullprocess with nothing
new, and fullprocess with new data through a retrain and redeploy (--force; the workspace is
reset before each run). Beside each figure it measures, in the same run, the floor it is
judged against:
    python -c pass                       fullprocess (nothing new), deployment
    a plain pandas read + drop_duplicates + write of the same files     ingestion
    importing the step's libraries + the bare read/fit/predict          training, scoring
    importing the step's libraries       reporting, diagnostics
    the sum of its steps run alone       fullprocess with new data
    the "/" route of the same gunicorn   the API (wrk, 4 connections, 10 s)
It prints one table and writes benchmarks/results/bench-<scale>.json. No assertions:
the ratios are for people to read (README: Benchmarks).

Run
    make bench                                  # both scales
    python benchmarks/bench.py --scale mission  # 10,000 clients x 12 files, 2,000 test rows
    python benchmarks/bench.py --scale large    # 10,000 clients x 100 files, 10,000 test rows
    python benchmarks/bench.py --growth         # ingestion, training, nothing-new at 10k..3M rows
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import bench_api  # noqa: E402
import harness  # noqa: E402

PY = harness.PYTHON
PROJECT = harness.PROJECT_DIR
RESULTS = Path(__file__).resolve().parent / "results"
SCALES = {
    "mission": {"clients": 10_000, "files": 12, "test_rows": 2_000},
    "large": {"clients": 10_000, "files": 100, "test_rows": 10_000},
}
GROWTH_FILES = (1, 10, 100, 300)  # x 10,000 clients: 10k, 100k, 1M, 3M rows

IMPORTS = {
    "ingestion": "import numpy, pandas",
    "training": "import pickle, pandas, sklearn.impute, sklearn.linear_model, sklearn.pipeline",
    "scoring": "import pickle, numpy, pandas, sklearn.metrics",
    "reporting": "import pandas, scipy.stats, matplotlib.figure",
    "diagnostics": "import pandas, scipy.stats",
}
DEDUPE_FLOOR = """
import sys, pandas as pd
from pathlib import Path
files = sorted(Path(sys.argv[1]).glob('*.csv'))
frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
frame.drop_duplicates().to_csv(sys.argv[2], index=False)
"""
TRAIN_FLOOR = """
import sys, pickle, pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
features = ['lastmonth_activity', 'lastyear_activity', 'number_of_employees']
frame = pd.read_csv(sys.argv[1], usecols=features + ['exited'])
regression = LogisticRegression(C=1.0, solver='liblinear', random_state=0)
model = make_pipeline(SimpleImputer(strategy='median'), regression)
pickle.dumps(model.fit(frame[features], frame['exited']))
"""
SCORE_FLOOR = """
import sys, pickle, pandas as pd
from sklearn.metrics import f1_score
features = ['lastmonth_activity', 'lastyear_activity', 'number_of_employees']
model = pickle.loads(open(sys.argv[1], 'rb').read())
frame = pd.read_csv(sys.argv[2])
f1_score(frame['exited'], model.predict(frame[features]))
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def generate(root: Path, clients: int, files: int, test_rows: int) -> Path:
    subprocess.run(
        [
            PY,
            str(PROJECT / "generate_data.py"),
            "--out",
            str(root),
            "--clients",
            str(clients),
            "--files",
            str(files),
            "--test-rows",
            str(test_rows),
        ],
        check=True,
    )
    return root


def workspace(root: Path, data: Path, input_files: list[Path] | None = None) -> Path:
    """A workspace reading data's files (all, or input_files), with its own API port."""
    config = harness.make_workspace(root, api_port=harness.free_port())
    for path in input_files if input_files is not None else sorted((data / "input").glob("*.csv")):
        os.link(path, root / "input" / path.name)  # a hard link: ingestion refuses links leading out
    shutil.copy(data / "testdata" / "testdata.csv", root / "testdata" / "testdata.csv")
    return config


def figure(name: str, measured: dict, floor_name: str, floor: dict) -> dict:
    return {
        "figure": name,
        **{key: measured[key] for key in ("median", "min", "max", "rss_mib")},
        "floor": floor_name,
        "floor_median": floor["median"],
        "floor_rss_mib": floor["rss_mib"],
        "ratio": measured["median"] / floor["median"],
        "rss_ratio": measured["rss_mib"] / floor["rss_mib"],
    }


def finaldata_size_mib(path: Path) -> float:
    """pandas' deep memory size of finaldata.csv, measured in a child: this process stays small,
    because a child's peak RSS (wait4) counts the pages it shares with this process before exec."""
    code = "import sys, pandas as pd; print(pd.read_csv(sys.argv[1]).memory_usage(deep=True).sum() / 2**20)"
    return float(
        subprocess.run([PY, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    )


def bench_scale(scale: str, runs: int, temp: Path, seconds: int) -> dict:
    sizes = SCALES[scale]
    log(f"{scale}: generating {sizes['clients']} clients x {sizes['files']} files")
    data = generate(temp / f"data-{scale}", **sizes)
    config = workspace(temp / f"ws-{scale}", data)
    env = harness.env_for(config)
    ws = config.parent
    rows = sum(1 for path in (data / "input").glob("*.csv") for _ in open(path)) - sizes["files"]
    script = {
        name: [PY, str(PROJECT / f"{name}.py")]
        for name in (
            "ingestion",
            "training",
            "scoring",
            "deployment",
            "reporting",
            "diagnostics",
            "fullprocess",
        )
    }
    results, measured = [], {}

    def step(name: str, command: list[str] | None = None, **options) -> dict:
        log(f"{scale}: {name}")
        measured[name] = harness.repeat(command or script[name], runs, env=env, **options)
        return measured[name]

    pass_floor = harness.repeat([PY, "-c", "pass"], runs)
    step("ingestion")
    dedupe = harness.repeat([PY, "-c", DEDUPE_FLOOR, str(ws / "input"), str(temp / "floor.csv")], runs)
    results.append(figure("ingestion.py", measured["ingestion"], "pandas read+dedupe+write", dedupe))
    finaldata = ws / "ingesteddata" / "finaldata.csv"
    step("training")
    train_floor = harness.repeat([PY, "-c", TRAIN_FLOOR, str(finaldata)], runs)
    results.append(figure("training.py", measured["training"], "imports + bare read+fit", train_floor))
    step("scoring")
    model = ws / "models" / "trainedmodel.pkl"
    score_floor = harness.repeat(
        [PY, "-c", SCORE_FLOOR, str(model), str(ws / "testdata" / "testdata.csv")], runs
    )
    results.append(figure("scoring.py", measured["scoring"], "imports + bare load+predict", score_floor))
    step("deployment")
    results.append(figure("deployment.py", measured["deployment"], "python -c pass", pass_floor))
    for name in ("reporting", "diagnostics"):
        step(name)
        floor = harness.repeat([PY, "-c", IMPORTS[name]], runs)
        results.append(figure(f"{name}.py", measured[name], "import its libraries", floor))
    step("fullprocess nothing new", script["fullprocess"])
    results.append(
        figure(
            "fullprocess.py, nothing new", measured["fullprocess nothing new"], "python -c pass", pass_floor
        )
    )

    # With new data: production trained on the first half of the months, the rest arriving.
    inputs = sorted((data / "input").glob("*.csv"))
    fresh = workspace(temp / f"ws-{scale}-new", data, inputs[: len(inputs) // 2])
    for name in ("ingestion", "training", "scoring", "deployment"):
        harness.run_script(fresh, f"{name}.py")
    snapshot = temp / f"ws-{scale}-snapshot"
    shutil.copytree(fresh.parent, snapshot, symlinks=True)

    def reset() -> None:
        shutil.rmtree(fresh.parent)
        shutil.copytree(snapshot, fresh.parent, symlinks=True)
        for path in inputs[len(inputs) // 2 :]:
            os.link(path, fresh.parent / "input" / path.name)

    log(f"{scale}: fullprocess with new data")
    new_data = harness.repeat(
        script["fullprocess"] + ["--force"], runs, env=harness.env_for(fresh), before=reset
    )
    steps_alone = sum(
        measured[name]["median"]
        for name in ("ingestion", "scoring", "training", "scoring", "deployment", "diagnostics", "reporting")
    )
    results.append(
        figure(
            "fullprocess.py, new data (retrain, redeploy, report)",
            new_data,
            "its steps run alone",
            {
                "median": steps_alone,
                "rss_mib": max(
                    measured[name]["rss_mib"] for name in ("ingestion", "training", "diagnostics")
                ),
            },
        )
    )

    log(f"{scale}: API")
    harness.run_script(config, "deployment.py")
    lines = (ws / "testdata" / "testdata.csv").read_text().splitlines(keepends=True)
    (ws / "testdata" / "rows100.csv").write_text("".join(lines[:101]))
    api = bench_api.run(config, seconds, 4, temp)
    memory = finaldata_size_mib(finaldata)
    return {
        "scale": scale,
        "machine": harness.machine(),
        "rows": rows,
        "finaldata_rows": sum(1 for _ in open(finaldata)) - 1,
        "finaldata_in_memory_mib": memory,
        "python_pass": pass_floor,
        "steps": results,
        "rss_over_finaldata": {
            name: step_figures["rss_mib"] / memory for name, step_figures in measured.items()
        },
        "api": api,
    }


def bench_growth(runs: int, temp: Path) -> list[dict]:
    results = []
    for files in GROWTH_FILES:
        data = generate(temp / f"growth-{files}", 10_000, files, 2_000)
        config = workspace(temp / f"growth-ws-{files}", data)
        env = harness.env_for(config)
        rows = files * 10_000
        row = {"rows": rows}
        for name in ("ingestion", "training"):
            log(f"growth {rows}: {name}")
            row[name] = harness.repeat([PY, str(PROJECT / f"{name}.py")], runs, env=env)
        harness.run_script(config, "scoring.py")
        harness.run_script(config, "deployment.py")
        row["fullprocess nothing new"] = harness.repeat([PY, str(PROJECT / "fullprocess.py")], runs, env=env)
        results.append(row)
        shutil.rmtree(data)
        shutil.rmtree(config.parent)
    return results


def print_scale(result: dict) -> None:
    print(
        f"\n## {result['scale']}: {result['rows']:,} input rows, finaldata {result['finaldata_rows']:,} rows "
        f"({result['finaldata_in_memory_mib']:.0f} MiB in memory); {result['machine']}"
    )
    print(f"\npython -c pass: {result['python_pass']['median'] * 1000:.1f} ms\n")
    print(
        "| figure | median s | min-max s | peak RSS MiB | floor | floor s | floor RSS MiB "
        "| time ratio | RSS ratio |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
    for row in result["steps"]:
        print(
            f"| {row['figure']} | {row['median']:.3f} | {row['min']:.3f}-{row['max']:.3f} "
            f"| {row['rss_mib']:.0f} | "
            f"{row['floor']} | {row['floor_median']:.3f} | {row['floor_rss_mib']:.0f} | {row['ratio']:.2f} | "
            f"{row['rss_ratio']:.2f} |"
        )
    print(
        "\nPeak RSS / finaldata in memory: "
        + ", ".join(f"{name} {ratio:.2f}" for name, ratio in result["rss_over_finaldata"].items())
    )
    print("\n| API figure (wrk 4 connections) | req/s | p50 ms | p99 ms | share of floor |")
    print("|---|---:|---:|---:|---:|")
    for row in result["api"]:
        print(
            f"| {row['figure']} | {row['rps']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
            f"{row['share_of_floor']:.0%} |"
        )


def print_growth(rows: list[dict]) -> None:
    print("\n## growth: cost per row (10,000 clients x N monthly files)\n")
    print("| rows | ingestion s | µs/row | MiB | training s | µs/row | MiB | nothing-new s | MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ingest, train, idle = row["ingestion"], row["training"], row["fullprocess nothing new"]
        print(
            f"| {row['rows']:,} | {ingest['median']:.2f} | {ingest['median'] / row['rows'] * 1e6:.2f} | "
            f"{ingest['rss_mib']:.0f} | {train['median']:.2f} | {train['median'] / row['rows'] * 1e6:.2f} | "
            f"{train['rss_mib']:.0f} | {idle['median']:.3f} | {idle['rss_mib']:.0f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=[*SCALES, "both"], default="both")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per figure, after a warm-up")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of wrk load per API figure")
    parser.add_argument(
        "--growth", action="store_true", help="measure cost per row at 10k, 100k, 1M, 3M rows"
    )
    args = parser.parse_args()
    harness.ensure_wrk()
    # Compiled bytecode, as a deployed checkout has it (PYTHONDONTWRITEBYTECODE would hide it).
    subprocess.run([PY, "-m", "compileall", "-q", *map(str, PROJECT.glob("*.py"))], check=True)
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="risk-bench-") as temp:
        if args.growth:
            growth = bench_growth(max(1, min(args.runs, 3)), Path(temp))
            (RESULTS / "growth.json").write_text(json.dumps(growth, indent=2))
            print_growth(growth)
            return 0
        for scale in SCALES if args.scale == "both" else [args.scale]:
            result = bench_scale(scale, args.runs, Path(temp), args.seconds)
            (RESULTS / f"bench-{scale}.json").write_text(json.dumps(result, indent=2))
            print_scale(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
