"""Write the project's fabricated client data (deterministic: seeded).

The story of the bundled data
    10,000 corporate clients. practicedata/ (dataset1, dataset2) is last year's
    extract: clients with little recent activity were the ones who left.
    sourcedata/ (dataset3, dataset4) is this year's: a competitor now courts large
    companies, so big employers leave too, whatever their activity. testdata/ is
    this year's hand-checked audit sample. A model trained on the practice data
    therefore scores worse on the new data (drift), and a model retrained on
    sourcedata scores better on testdata (an audit of small and mid-sized
    clients, up to 60 employees, whose outcome was checked by hand).

Reads
    nothing.
Writes
    practicedata/dataset1.csv, dataset2.csv, sourcedata/dataset3.csv,
    dataset4.csv, testdata/testdata.csv (the bundled data, with --bundled), or
    for benchmarks --files monthly snapshots of --clients clients plus a test
    file into --out (input/ and testdata/ below it).
Run
    python generate_data.py --bundled                 # rewrite the committed data
    python generate_data.py --out /tmp/big --clients 10000 --files 100 --test-rows 10000
"""

from __future__ import annotations

import argparse
import string
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from attrition.core.names import COLUMNS, FEATURES, PROJECT_DIR, TARGET

SEED = 2026
CLIENTS = 10_000
TEST_ROWS = 1_000

# True exit logit = intercept + coefficients . (lastmonth, lastyear, employees).
# Linear in the raw features, so the logistic regression can learn it.
REGIMES = {
    "last_year": (3.5, (-0.036, -0.0024, 0.002)),
    "this_year": (2.5, (-0.036, -0.0024, 0.05)),  # big employers now leave
}
EMPLOYEE_SCALE = {"last_year": 45.0, "this_year": 80.0}  # and clients grew
AUDIT_MAX_EMPLOYEES = 60  # the audit sample covers small and mid-sized clients


def corporation_codes(rng: np.random.Generator, count: int) -> np.ndarray:
    """count distinct four-letter codes."""
    letters = np.array(list(string.ascii_lowercase))
    picked = rng.choice(26**4, size=count, replace=False)
    digits = np.stack([(picked // 26**power) % 26 for power in (3, 2, 1, 0)], axis=1)
    return np.array(["".join(row) for row in letters[digits]])


def client_features(
    rng: np.random.Generator, count: int, employee_scale: float, max_employees: int | None = None
) -> dict:
    """Non-negative integer activity and size of count clients."""
    employees = 1 + rng.gamma(shape=1.1, scale=employee_scale, size=count)
    if max_employees is not None:
        employees = np.minimum(employees, max_employees)
    lastyear = rng.gamma(shape=2.0, scale=700.0, size=count) * (0.6 + employees / 150.0)
    lastmonth = lastyear / 12.0 * rng.lognormal(mean=0.0, sigma=0.6, size=count)
    lastmonth[rng.random(count) < 0.05] = 0.0  # dormant accounts
    return {
        "lastmonth_activity": np.round(lastmonth).astype(np.int64),
        "lastyear_activity": np.round(lastyear).astype(np.int64),
        "number_of_employees": np.round(employees).astype(np.int64),
    }


def label(rng: np.random.Generator, features: dict, regime: str) -> np.ndarray:
    intercept, coefficients = REGIMES[regime]
    logit = intercept + sum(c * features[name] for c, name in zip(coefficients, FEATURES, strict=True))
    return (rng.random(len(logit)) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)


def snapshot(
    rng: np.random.Generator, codes: np.ndarray, regime: str, max_employees: int | None = None
) -> pd.DataFrame:
    features = client_features(rng, len(codes), EMPLOYEE_SCALE[regime], max_employees)
    frame = pd.DataFrame({"corporation": codes, **features})
    frame[TARGET] = label(rng, features, regime)
    return frame[list(COLUMNS)]


def add_duplicates(rng: np.random.Generator, frame: pd.DataFrame, share: float) -> pd.DataFrame:
    """Repeat a share of rows exactly (the same client reported twice in an extract)."""
    repeats = frame.sample(n=max(1, int(len(frame) * share)), random_state=rng.integers(2**31))
    combined = pd.concat([frame, repeats])
    return combined.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True)


def add_missing(rng: np.random.Generator, frame: pd.DataFrame, count: int) -> pd.DataFrame:
    """Blank a handful of feature cells (values the source system did not report)."""
    frame = frame.astype({name: "Int64" for name in FEATURES})
    for _ in range(count):
        frame.loc[int(rng.integers(len(frame))), str(rng.choice(FEATURES))] = pd.NA
    return frame


def bundled_data(seed: int = SEED) -> dict[str, pd.DataFrame]:
    """The committed data sets, by path relative to the project folder."""
    rng = np.random.default_rng(seed)
    codes = corporation_codes(rng, CLIENTS)
    quarter = CLIENTS // 4
    data = {}
    for index, (folder, regime) in enumerate(
        [("practicedata", "last_year")] * 2 + [("sourcedata", "this_year")] * 2
    ):
        frame = snapshot(rng, codes[index * quarter : (index + 1) * quarter], regime)
        frame = add_missing(rng, add_duplicates(rng, frame, 0.01), 3)
        data[f"{folder}/dataset{index + 1}.csv"] = frame
    # The second file of each pair repeats some rows of the first (overlapping extracts).
    for first, second in [
        ("practicedata/dataset1.csv", "practicedata/dataset2.csv"),
        ("sourcedata/dataset3.csv", "sourcedata/dataset4.csv"),
    ]:
        overlap = data[first].sample(n=40, random_state=rng.integers(2**31))
        data[second] = pd.concat([data[second], overlap], ignore_index=True)
    # The audit sample: this year's behaviour, small and mid-sized clients.
    test_codes = rng.choice(codes, size=TEST_ROWS, replace=False)
    data["testdata/testdata.csv"] = snapshot(rng, test_codes, "this_year", max_employees=AUDIT_MAX_EMPLOYEES)
    return data


def monthly_data(clients: int, files: int, test_rows: int, seed: int = SEED) -> dict[str, pd.DataFrame]:
    """Benchmark data: files monthly snapshots of every client, and a test file."""
    rng = np.random.default_rng(seed)
    codes = corporation_codes(rng, clients)
    data = {}
    for month in range(files):
        frame = add_missing(rng, add_duplicates(rng, snapshot(rng, codes, "this_year"), 0.01), 3)
        data[f"input/month{month + 1:04d}.csv"] = frame
    test_codes = rng.choice(codes, size=test_rows, replace=test_rows > clients)
    data["testdata/testdata.csv"] = snapshot(rng, test_codes, "this_year")
    return data


def write_data(data: dict[str, pd.DataFrame], root: Path) -> list[Path]:
    written = []
    for relative, frame in data.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--bundled", action="store_true", help="rewrite the committed data sets")
    target.add_argument("--out", type=Path, help="folder for benchmark data (input/, testdata/)")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--files", type=int, default=12)
    parser.add_argument("--test-rows", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if args.bundled:
        written = write_data(bundled_data(args.seed), PROJECT_DIR)
    else:
        written = write_data(monthly_data(args.clients, args.files, args.test_rows, args.seed), args.out)
    rows = sum(len(pd.read_csv(path)) for path in written) if len(written) < 20 else None
    print(f"wrote {len(written)} files" + (f", {rows} rows" if rows else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
