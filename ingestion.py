"""Ingest every client CSV of the input folder into one de-duplicated data set.

Reads
    input_folder_path/*.csv (any case; hidden and non-CSV files are ignored), in extract order:
    by name, digits compared as numbers (dataset2.csv before dataset10.csv; names the numbers do
    not order, such as dataset1.csv and dataset01.csv, are warned about). Each file is read as a
    consistent snapshot (the open file's fstat before and after agree, else it is read again, or
    left for the next run when a copier keeps writing) and validated; every problem of a file is
    reported at once, and a rejected file does not stop the valid ones.
Writes (output_folder_path, each file atomically)
    finaldata.csv          the valid files combined in extract order, exact duplicate
                           rows dropped keeping the last copy: a client's last row is its newest
    finaldataextracts.csv  for each row of finaldata.csv: its client, the first and the last
                           extract (position in ingestedfiles.txt) it appears in
    ingestedfiles.txt      the names of the files read into finaldata.csv, one per line
    ingestionrecord.json   this run: per file name, identity (size, mtime, ctime, inode) and
                           sha256 of the bytes ingested, rows read and kept, reasons if
                           rejected (a rejected entry's identity too: it is re-examined only
                           when it changes); totals, duplicates, missing values, duration
    ingestionhistory.jsonl one line per run (the same record)
Exit status
    0 all files ingested; 3 ingested, but some files were rejected; 65 nothing
    ingested (missing or empty folder, no valid file): the previous
    finaldata.csv is left as it was; 78 bad config.json.
Run
    python ingestion.py            # RISK_CONFIG=other.json python ingestion.py
"""

from __future__ import annotations

import errno
import io
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clientdata import (
    count_problems,
    example,
    first_line,
    formula_like,
    parser_message,
    read_csv_strictly,
    to_numbers,
)
from common import (
    COLUMNS,
    EXIT_PARTIAL,
    EXTRACTS,
    FEATURES,
    FINALDATA,
    ID_COLUMN,
    INGESTEDFILES,
    INGESTION_RECORD,
    TARGET,
    InputError,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    command_line,
    load_config,
    run_main,
    setup_logging,
)
from records import ambiguous_order, append_jsonl, csv_entries, identity, sha256_bytes, sha256_file, utc_now

NAME = "ingestion"
INGESTION_HISTORY = "ingestionhistory.jsonl"  # one line per run (output_folder_path)
NUMERIC_COLUMNS = (*FEATURES, TARGET)
MAX_EXAMPLES = 3
MAX_HEADER_BYTES = 64 * 1024  # five column names need a few dozen
COLUMN_TYPES = {**{column: "Int64" for column in FEATURES}, TARGET: "int64"}
MAX_MESSAGE = 300  # characters of one reason or note, in the log and the record

log = logging.getLogger(NAME)


class IngestionError(InputError):
    """Nothing could be ingested; record is the failed run's record, for the history."""

    def __init__(self, message: str, record: dict | None = None):
        super().__init__(message)
        self.record = record


def _lines(mask: pd.Series | np.ndarray) -> str:
    """The CSV line numbers (header is line 1) of the first rows where mask holds."""
    mask = np.asarray(mask, dtype=bool)
    lines = (np.flatnonzero(mask) + 2)[:MAX_EXAMPLES]
    more = ", ..." if int(mask.sum()) > MAX_EXAMPLES else ""
    return "line " + ", ".join(str(line) for line in lines) + more


def parse_csv(data: bytes) -> tuple[pd.DataFrame | None, list[str], list[str]]:
    """Parse and validate one file's bytes: (clean frame or None, problems, notes)."""
    if not data.strip():
        return None, ["empty file"], []
    if b"\x00" in data:
        return None, ["binary file (contains NUL bytes), not CSV text"], []
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, [f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"], []
    header = first_line(data)
    if len(header) > MAX_HEADER_BYTES:
        return None, [f"header line of {len(header):,} bytes: not this data set's five columns"], []
    try:
        frame = read_csv_strictly(io.BytesIO(data), encoding="utf-8-sig", dtype={ID_COLUMN: str})
    except pd.errors.EmptyDataError:
        return None, ["empty file"], []
    except (pd.errors.ParserError, ValueError) as error:
        return None, [f"malformed CSV: {parser_message(error)}"], []

    frame.columns = [str(column).strip() for column in frame.columns]
    problems, notes = [], []
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        problems.append("missing required column" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
    extra = [column for column in frame.columns if column not in COLUMNS]
    if extra:
        notes.append(shorten("dropped extra column" + ("s " if len(extra) > 1 else " ") + ", ".join(extra)))
    if len(frame) == 0:
        problems.append("no data rows (header only)")
    if missing or len(frame) == 0:
        return None, problems, notes
    frame = frame.loc[:, list(COLUMNS)]

    if frame[ID_COLUMN].isna().any():
        problems.append(f"{ID_COLUMN}: missing values ({_lines(frame[ID_COLUMN].isna())})")
    breaks = frame[ID_COLUMN].str.contains("[\r\n]", regex=True, na=False)
    if breaks.any():
        problems.append(f"{ID_COLUMN}: a line break inside an ID ({_lines(breaks)})")
    formulas = formula_like(frame[ID_COLUMN])
    if formulas.any():
        problems.append(
            f"{ID_COLUMN}: an ID starting with =, +, -, @, tab or CR, which a spreadsheet would run "
            f"as a formula ({_lines(formulas)})"
        )
    # Checked on NumPy arrays: a pandas operation costs about 100 µs whatever the size, and a
    # folder of 10,000 small monthly files would spend most of its time in them.
    converted = set()
    for column in NUMERIC_COLUMNS:
        raw = frame[column]
        if raw.dtype.kind in "iuf":  # integers stay integers until checked: 2**53 + 1 must not round
            values = raw.to_numpy()
        else:
            numbers, bad = to_numbers(raw)
            if bad.any():
                problems.append(f"{column}: non-numeric value {example(raw, bad)} ({_lines(bad)})")
                continue
            values = numbers.to_numpy(
                dtype=None if numbers.dtype.kind in "iuf" else "float64", na_value=np.nan
            )
        found = count_problems(values)
        if found:
            problems.extend(f"{column}: {reason} ({_lines(mask)})" for reason, mask in found)
            continue
        values = values.astype("float64")  # what the model computes with
        frame[column] = values
        converted.add(column)
    if TARGET in converted:
        target = frame[TARGET].to_numpy()
        if np.isnan(target).any():
            problems.append(f"{TARGET}: missing value ({_lines(np.isnan(target))})")
        elif not np.isin(target, (0, 1)).all():
            problems.append(f"{TARGET}: value not 0 or 1 ({_lines(~np.isin(target, (0, 1)))})")
    if problems:
        return None, problems, notes
    # float64 until the valid files are combined: one conversion to integer columns, not one per file
    return frame, problems, notes


def name_problem(path: Path, input_folder: Path) -> str | None:
    """Why an entry of the input folder cannot be ingested before it is even opened, or None."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return "file name is not valid UTF-8"
    if any(ord(character) < 32 or ord(character) == 127 for character in path.name):
        return "file name contains a line break or another control character"
    if path.is_symlink() and not path.resolve().is_relative_to(input_folder.resolve()):
        return "a link leading outside the input folder"
    if not path.is_file():
        if not path.is_symlink() and not os.path.lexists(path):
            return "deleted before it could be read"
        kind = "a folder" if path.is_dir() else "a link to nothing" if not path.exists() else "a special file"
        return f"not a regular file ({kind})"
    return None


def entry_identity(path: Path) -> dict:
    """The identity (records.identity) of what an entry leads to, or of the entry itself (a dangling
    link): a rejected entry is re-examined only when it changes."""
    for follow in (True, False):
        try:
            return identity(os.stat(path, follow_symlinks=follow))
        except OSError:
            continue
    return {}


def read_snapshot(path: Path, attempts: int = 3) -> tuple[bytes, dict]:
    """(the bytes of a file, the identity they are the content of): the open file's fstat taken
    before and after reading must agree, or the file is read again; OSError (EAGAIN) when it kept
    changing (a copier still writing)."""
    for _ in range(attempts):
        with open(path, "rb") as handle:
            before = identity(os.fstat(handle.fileno()))
            data = handle.read()
            after = identity(os.fstat(handle.fileno()))
        if (
            before == after
            and len(data) == after["size"]
            and entry_identity(path).get("inode") == after["inode"]
        ):
            return data, after
        time.sleep(0.2)
    raise OSError(errno.EAGAIN, f"changed while being read ({attempts} attempts): left for the next run")


def display_name(name: str) -> str:
    """A file name as a log line can hold it: undecodable bytes as \\xNN, control characters escaped."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message cut to limit characters: a 50 MB header must not become a 50 MB log line."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def read_file(path: Path, input_folder: Path) -> tuple[pd.DataFrame | None, dict]:
    """Read and validate one input file; returns the frame (None if rejected) and its record."""
    record = {"name": path.name}
    problem = name_problem(path, input_folder)
    if problem:
        record.update(status="rejected", reasons=[problem], **entry_identity(path))
        return None, record
    try:
        data, seen = read_snapshot(path)
    except OSError as error:  # no identity recorded: the next run examines it again
        reason = error.strerror if error.errno == errno.EAGAIN else f"unreadable: {error.strerror}"
        record.update(status="rejected", reasons=[reason])
        return None, record
    record.update(**seen, sha256=sha256_bytes(data))
    frame, problems, notes = parse_csv(data)
    record["rows_read"] = 0 if frame is None else len(frame)
    if notes:
        record["notes"] = notes
    if problems:
        record.update(status="rejected", reasons=[shorten(problem) for problem in problems])
    else:
        record["status"] = "ingested"
    return frame, record


def duplicated_rows(frame: pd.DataFrame, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(DataFrame.duplicated(keep="last"), each row's first extract among its exact copies).

    Keeping the last copy keeps a client's newest extract's row last, also when it repeats an
    older row exactly (extracts A, B, A: the client is A's again, not B's). Rows are grouped by
    a 64-bit hash of their values; only rows whose hash occurs more than once (every exact
    duplicate, and any hash collision) are compared exactly: less memory and time on large frames.
    """
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    members = np.flatnonzero(pd.Series(hashes).duplicated(keep=False).to_numpy())
    duplicated = np.zeros(len(frame), dtype=bool)
    first = np.asarray(source).copy()
    if len(members):
        copies = frame.iloc[members]
        duplicated[members] = copies.duplicated(keep="last").to_numpy()
        group = copies.groupby(list(copies.columns), dropna=False, sort=False).ngroup().to_numpy()
        first[members] = pd.Series(first[members]).groupby(group).transform("min").to_numpy()
    return duplicated, first


def share_strings(values: pd.Series, table: dict) -> pd.Series:
    """The same values, each distinct code one string object shared across files.

    Monthly extracts repeat the same clients: 1,000,000 rows of 10,000 codes then hold
    10,000 strings instead of 1,000,000 (about 50 bytes each).
    """
    codes, uniques = pd.factorize(values)
    if len(uniques) == 0:
        return values
    shared = np.array([table.setdefault(value, value) for value in uniques], dtype=object)
    objects = shared[np.where(codes < 0, 0, codes)]
    objects[codes < 0] = None
    return pd.Series(pd.array(objects, dtype=values.dtype), index=values.index, name=values.name)


def ingest(input_folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Combine the valid files of a folder: (de-duplicated frame, its rows' extracts, ingestion record)."""
    started = time.perf_counter()
    if not input_folder.is_dir():
        raise IngestionError(f"{input_folder}: input folder does not exist")
    paths = csv_entries(input_folder)
    if not paths:
        raise IngestionError(f"{input_folder}: no *.csv files to ingest")
    for first, second in ambiguous_order([path.name for path in paths]):
        log.warning(
            "%s: %r and %r: their numbers do not decide which extract is newer; taken in name order (%r "
            "first): rename them (dataset1.csv ... dataset12.csv, or dates as YYYY-MM)",
            input_folder,
            display_name(first),
            display_name(second),
            display_name(first),
        )
    frames, records, strings = [], [], {}
    for path in paths:
        frame, record = read_file(path, input_folder)
        records.append(record)
        shown = input_folder / display_name(path.name)
        for note in record.get("notes", []):
            log.warning("%s: %s", shown, note)
        for reason in record.get("reasons", []):
            log.error("%s: rejected: %s", shown, reason)
        if frame is not None:
            frame[ID_COLUMN] = share_strings(frame[ID_COLUMN], strings)
            frames.append(frame)
    if not frames:
        record = {
            "timestamp": utc_now(),
            "input_folder": str(input_folder),
            "status": "failed",
            "files": records,
        }
        raise IngestionError(f"{input_folder}: no valid CSV file ({len(paths)} rejected)", record)

    sizes = [len(frame) for frame in frames]
    combined = pd.concat(frames, ignore_index=True)
    frames.clear()  # peak memory: the per-file frames go before de-duplication allocates
    source = np.repeat(np.arange(len(sizes)), sizes)
    duplicated, first = duplicated_rows(combined, source)
    kept_per_file = np.bincount(source[~duplicated], minlength=len(sizes))
    rows_read = len(combined)
    final = combined.loc[~duplicated].reset_index(drop=True)
    del combined
    final = final.astype(COLUMN_TYPES)  # counts as integers, blanks kept (Int64)
    # each kept row's extracts (1 = the first file of ingestedfiles.txt): calllist.py's lost list
    extracts = pd.DataFrame(
        {
            ID_COLUMN: final[ID_COLUMN],
            "first_extract": first[~duplicated] + 1,
            "last_extract": source[~duplicated] + 1,
        }
    )
    ingested = [record for record in records if record["status"] == "ingested"]
    for record, kept in zip(ingested, kept_per_file, strict=True):
        record["rows_kept"] = int(kept)
    summary = {
        "timestamp": utc_now(),
        "input_folder": str(input_folder),
        "status": "partial" if len(ingested) < len(records) else "ok",
        "files": records,
        "files_ingested": len(ingested),
        "files_rejected": len(records) - len(ingested),
        "rows_read": int(rows_read),
        "rows_written": int(len(final)),
        "duplicates_dropped": int(duplicated.sum()),
        "missing_values": {column: int(count) for column, count in final.isna().sum().items()},
        "duration_seconds": round(time.perf_counter() - started, 4),
    }
    return final, extracts, summary


def write_outputs(final: pd.DataFrame, extracts: pd.DataFrame, record: dict, output_folder: Path) -> None:
    """finaldata.csv, its rows' extracts, ingestedfiles.txt and the record, each atomically."""
    output_folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(output_folder / EXTRACTS) as temp:
        extracts.to_csv(temp, index=False)
    with atomic_path(output_folder / FINALDATA) as temp:
        final.to_csv(temp, index=False)
    record["finaldata_sha256"] = sha256_file(output_folder / FINALDATA)
    names = [entry["name"] for entry in record["files"] if entry["status"] == "ingested"]
    atomic_write_text(output_folder / INGESTEDFILES, "".join(f"{name}\n" for name in names))
    atomic_write_json(output_folder / INGESTION_RECORD, record)
    append_jsonl(output_folder / INGESTION_HISTORY, record)


def main(argv: list[str] | None = None) -> int:
    command_line(__doc__).parse_args(argv)
    setup_logging(NAME)
    config = load_config()
    try:
        final, extracts, record = ingest(config.input_folder)
    except IngestionError as error:
        # Remember the failed attempt (fullprocess.py reads it), but keep finaldata.csv.
        record = error.record or {"timestamp": utc_now(), "input_folder": str(config.input_folder)}
        record.update(status="failed", error=str(error))
        config.output_folder.mkdir(parents=True, exist_ok=True)
        append_jsonl(config.output_folder / INGESTION_HISTORY, record)
        raise
    record["input_folder_relative"] = config.relative(config.input_folder)
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
