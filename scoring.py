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
    python scoring.py --rank clients.csv [--output calls.csv]
                                  # rank a client file (exited not needed) with the deployed
                                  # model: the call list's format, written to
                                  # output_model_path/clients-calllist.csv unless --output
Exit status
    0 scored; 65 a missing or unusable model or data file; 69 (--deployed) no usable
    deployed model; 78 bad config.json; 2 a usage error.
"""

from __future__ import annotations

import json
from pathlib import Path

from attrition.core.config import load_config
from attrition.core.errors import InputError
from attrition.core.files import atomic_path
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import LATESTSCORE, MODEL
from attrition.data.clientdata import read_data_file
from attrition.model import riskmodel
from attrition.model.scoring import NAME, log, score_deployed, score_model, write_scores
from attrition.reports import calllist


def rank_clients(prod_folder: Path, data_path: Path, output: Path) -> tuple[int, int]:
    """The deployed model's call list for a client file (calllist.py's format); (clients listed, left
    out as exited)."""
    scorer, _ = riskmodel.load_linear(prod_folder)
    frame = read_data_file(data_path)
    calls, lost = calllist.call_list(frame, scorer, None, str(data_path))
    with atomic_path(output) as temp:
        calllist.write_csv(calls, temp)
    return len(calls), len(lost)


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument("--model", type=Path, help="model pickle (default: the trained model)")
    parser.add_argument("--deployed", action="store_true", help="score the deployed, verified model")
    parser.add_argument("--data", type=Path, help="labelled CSV (default: testdata.csv)")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; implied by --model/--data/--deployed"
    )
    parser.add_argument("--json", action="store_true", help="print all metrics as JSON")
    parser.add_argument(
        "--rank", type=Path, metavar="CLIENTS.csv", help="rank a client file with the deployed model"
    )
    parser.add_argument("--output", type=Path, help="with --rank: where the call list goes")
    args = parser.parse_args(argv)
    if args.output and not args.rank:
        parser.error("--output goes with --rank")
    if args.model and args.deployed:
        parser.error("use --model or --deployed, not both")
    setup_logging(NAME)
    config = load_config()
    if args.rank:
        output = args.output or config.model_folder / f"{args.rank.stem}-calllist.csv"
        if output.resolve() == args.rank.resolve():
            raise InputError(f"{output}: the call list would overwrite the client file")
        listed, exited = rank_clients(config.prod_folder, args.rank, output)
        log.info(
            "ranked %d clients of %s with the deployed model (%d left out: exited=1); wrote %s",
            listed,
            args.rank,
            exited,
            output,
        )
        return 0
    data_path = args.data or config.testdata_file
    if args.deployed:
        metrics = score_deployed(config.prod_folder, data_path)
    else:
        metrics = score_model(args.model or config.model_folder / MODEL, data_path)
    write = not (args.no_write or args.model or args.data or args.deployed)
    if write:
        write_scores(metrics, config.model_folder)
        log.info(
            "F1 %.4f of %s on %s; wrote %s",
            metrics["f1"],
            metrics["model"],
            data_path,
            config.model_folder / LATESTSCORE,
        )
    print(json.dumps(metrics, indent=2) if args.json else metrics["f1"])
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
