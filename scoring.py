"""Score a trained model: F1 (and more) on labelled data.

Reads
    output_model_path/trainedmodel.pkl and test_data_path/testdata.csv (default),
    or the model and data named on the command line.
Writes (default mode only; output_model_path, atomically)
    latestscore.txt     the F1, a single number
    latestscore.json    f1, precision, recall, accuracy, roc_auc, confusion counts, rows
    scorehistory.jsonl  one line per scoring: timestamp, model sha256, data file, metrics
Run
    python scoring.py                                 # score the trained model, write files
    python scoring.py --deployed --data ingesteddata/finaldata.csv
                                                      # print the deployed model's F1, write nothing
    python scoring.py --model M.pkl --data D.csv --json
Exit status
    0 scored; 1 missing or invalid model or data.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score

from common import (
    FEATURES,
    ID_COLUMN,
    LATESTSCORE,
    MODEL,
    SCORE_HISTORY,
    SCORE_METRICS,
    TARGET,
    PipelineError,
    append_jsonl,
    atomic_write_json,
    atomic_write_text,
    load_config,
    read_deployed_model_bytes,
    run_main,
    setup_logging,
    sha256_bytes,
    utc_now,
)

NAME = "scoring"

log = logging.getLogger(NAME)


def unpickle_model(blob: bytes, source: Path):
    try:
        model = pickle.loads(blob)
    except Exception as error:  # any unpickling failure means the file is not a usable model
        raise PipelineError(f"{source}: not a valid model pickle ({type(error).__name__})") from None
    if not hasattr(model, "predict") or not hasattr(model, "predict_proba"):
        raise PipelineError(f"{source}: the pickle holds a {type(model).__name__}, not a classifier")
    return model


def load_model(path: Path):
    """(model, sha256) of a trained-model pickle."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError:
        raise PipelineError(f"{path}: model not found; run training.py first") from None
    return unpickle_model(blob, path), sha256_bytes(blob)


def feature_frame(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The model's feature columns, in order, as numbers; any other column is ignored."""
    missing = [column for column in FEATURES if column not in frame.columns]
    if missing:
        raise PipelineError(f"{source}: missing feature column {missing[0]}")
    features = frame[list(FEATURES)]
    for column in FEATURES:
        if not pd.api.types.is_numeric_dtype(features[column]):
            numbers = pd.to_numeric(features[column], errors="coerce")
            bad = features[column].notna() & numbers.isna()
            if bad.any():
                value = str(features[column][bad].iloc[0])[:30]
                raise PipelineError(f"{source}: column {column} has a non-numeric value {value!r}")
            features = features.assign(**{column: numbers})
    return features.astype("float64")


def read_data_file(path: Path) -> pd.DataFrame:
    """A CSV data file; anything unreadable is a PipelineError naming the file.

    corporation is read as a category: the codes repeat, and 10,000 strings plus small
    integer codes take a fraction of the memory of one string object per row.
    """
    try:
        return pd.read_csv(path, encoding="utf-8-sig", dtype={ID_COLUMN: "category"})
    except FileNotFoundError:
        raise PipelineError(f"{path}: data file not found") from None
    except pd.errors.EmptyDataError:
        raise PipelineError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise PipelineError(f"{path}: not a readable CSV ({str(error).strip().splitlines()[-1]})") from None


def read_labelled_data(path: Path) -> pd.DataFrame:
    return check_labelled(read_data_file(path), str(path))


def check_labelled(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The rows with a 0/1 label (a new frame: the argument is not changed)."""
    if TARGET not in frame.columns:
        raise PipelineError(f"{source}: missing column {TARGET}")
    frame = frame.dropna(subset=[TARGET])
    if frame.empty:
        raise PipelineError(f"{source}: no labelled rows")
    if not frame[TARGET].isin([0, 1]).all():
        raise PipelineError(f"{source}: column {TARGET} must be 0 or 1")
    return frame


def evaluate(model, frame: pd.DataFrame, source: str = "data") -> dict:
    """Metrics of model on a labelled frame; f1 is sklearn's f1_score."""
    truth = frame[TARGET].astype(int).to_numpy()
    features = feature_frame(frame, source)
    probability = model.predict_proba(features)[:, 1]
    predicted = model.predict(features).astype(int)
    precision, recall, _, _ = precision_recall_fscore_support(
        truth, predicted, average="binary", zero_division=0
    )
    tn, fp, fn, tp = confusion_matrix(truth, predicted, labels=[0, 1]).ravel()
    both_classes = len(np.unique(truth)) == 2
    return {
        "f1": float(f1_score(truth, predicted, zero_division=0)),
        "precision": float(precision),
        "recall": float(recall),
        "accuracy": float((predicted == truth).mean()),
        "roc_auc": float(roc_auc_score(truth, probability)) if both_classes else None,
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "rows": int(len(truth)),
        "positive_rate": float(truth.mean()),
    }


def score_model(model_path: Path, data_path: Path) -> dict:
    """Metrics of the model file on the data file. Writes nothing."""
    model, model_sha = load_model(model_path)
    metrics = evaluate(model, read_labelled_data(data_path), str(data_path))
    return {**metrics, "model": str(model_path), "model_sha256": model_sha, "data": str(data_path)}


def score_deployed(prod_folder: Path, data_path: Path) -> dict:
    """Metrics of the deployed, integrity-checked model on a data file. Writes nothing."""
    blob, manifest = read_deployed_model_bytes(prod_folder)
    model = unpickle_model(blob, prod_folder / MODEL)
    metrics = evaluate(model, read_labelled_data(data_path), str(data_path))
    return {
        **metrics,
        "model": str(prod_folder / MODEL),
        "model_sha256": manifest["files"][MODEL]["sha256"],
        "deployed_version": manifest["version"],
        "data": str(data_path),
    }


def write_scores(metrics: dict, model_folder: Path) -> None:
    atomic_write_text(model_folder / LATESTSCORE, f"{metrics['f1']}\n")
    record = {"timestamp": utc_now(), **metrics}
    atomic_write_json(model_folder / SCORE_METRICS, record)
    append_jsonl(model_folder / SCORE_HISTORY, record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Score a trained model (F1 on labelled data).")
    parser.add_argument("--model", type=Path, help="model pickle (default: the trained model)")
    parser.add_argument("--deployed", action="store_true", help="score the deployed, verified model")
    parser.add_argument("--data", type=Path, help="labelled CSV (default: testdata.csv)")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; implied by --model/--data/--deployed"
    )
    parser.add_argument("--json", action="store_true", help="print all metrics as JSON")
    args = parser.parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    if args.model and args.deployed:
        raise PipelineError("use --model or --deployed, not both")
    data_path = args.data or config.testdata_file
    if args.deployed:
        metrics = score_deployed(config.prod_folder, data_path)
    else:
        metrics = score_model(args.model or config.model_folder / MODEL, data_path)
    write = not (args.no_write or args.model or args.data or args.deployed)
    if write:
        write_scores(metrics, config.model_folder)
        log.info("F1 %.4f of %s on %s; wrote %s", metrics["f1"], metrics["model"], data_path,
                 config.model_folder / LATESTSCORE)  # fmt: skip
    print(json.dumps(metrics, indent=2) if args.json else metrics["f1"])
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
