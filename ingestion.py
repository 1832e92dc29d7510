"""Ingest every client CSV of the input folder into one de-duplicated data set.

Reads
    input_folder_path/*.csv (any case; hidden and non-CSV files are ignored), in extract order:
    by name, digits compared as numbers (dataset2.csv before dataset10.csv). Each file is read as
    a consistent snapshot and validated; every problem of a file is reported at once, and a
    rejected file does not stop the valid ones (the rules: attrition/data/parsing.py).
Writes (output_folder_path, each file atomically)
    finaldata.csv          the valid files combined in extract order, exact duplicate rows
                           dropped keeping the last copy: a client's last row is its newest
    finaldataextracts.csv  each row's client, first and last extract
    ingestedfiles.txt      the names of the files read into finaldata.csv, one per line
    kept/FOLDER/NAME.csv   the bytes of each extract ingested: an extract archived out of the
                           input folder stays in finaldata.csv from its kept copy
    ingestionrecord.json   this run: per file, identity, sha256, rows read and kept, reasons if
                           rejected; totals, duplicates, missing values, duration
    ingestionhistory.jsonl one line per run (the same record)
Exit status
    0 all files ingested; 3 ingested, but some files were rejected; 65 nothing ingested (missing
    or empty folder, no valid file): finaldata.csv is left as it was; 78 bad config.json.
Run
    python ingestion.py            # RISK_CONFIG=other.json python ingestion.py
    python ingestion.py --forget dataset3.csv
                                   # drop an archived extract's rows: its kept copy is removed
                                   # and finaldata.csv rebuilt without it
"""

from __future__ import annotations

from attrition.core.config import load_config
from attrition.core.errors import EXIT_PARTIAL
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import FINALDATA, INGESTION_RECORD
from attrition.data.ingest import NAME, ingest_input_folder, log, write_outputs
from attrition.data.kept import forget


def main(argv: list[str] | None = None) -> int:
    parser = command_line(__doc__)
    parser.add_argument(
        "--forget",
        metavar="NAME",
        action="append",
        default=[],
        help="drop an extract archived out of the input folder (its kept copy), then ingest",
    )
    args = parser.parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    for name in args.forget:
        forget(config, name)
    final, extracts, record = ingest_input_folder(config)
    write_outputs(final, extracts, record, config.output_folder)
    log.info(
        "ingested %d of %d files from %s: %d rows read, %d duplicates dropped, %d rows in %s",
        record["files_ingested"],
        len(record["files"]),
        config.input_folder,
        record["rows_read"],
        record["duplicates_dropped"],
        record["rows_written"],
        config.output_folder / FINALDATA,
    )
    if record["files_rejected"]:
        log.error(
            "%d file(s) rejected: see %s", record["files_rejected"], config.output_folder / INGESTION_RECORD
        )
        return EXIT_PARTIAL
    return 0


if __name__ == "__main__":
    run_main(main, NAME)
