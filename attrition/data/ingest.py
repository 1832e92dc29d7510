"""Ingestion: the input folder's extracts combined into one de-duplicated data set, with a
record of what was ingested (ingestion.py is the script).

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
    kept/FOLDER/NAME.csv   the bytes of each extract ingested: an extract archived (moved or
                           deleted) out of the input folder stays in finaldata.csv from its kept
                           copy, named once in the log; `--forget NAME` drops it deliberately
    ingestionrecord.json   this run: per file name, identity (size, mtime, ctime, inode) and
                           sha256 of the bytes ingested, rows read and kept, reasons if
                           rejected (a rejected entry's identity too: it is re-examined only
                           when it changes); totals, duplicates, missing values, duration
    ingestionhistory.jsonl one line per run (the same record)
"""

from __future__ import annotations

import errno
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from attrition.core.errors import InputError
from attrition.core.files import atomic_path, atomic_write_json, atomic_write_text, fsync_folder
from attrition.core.names import COLUMNS, EXTRACTS, FINALDATA, ID_COLUMN, INGESTEDFILES, INGESTION_RECORD
from attrition.core.records import (
    ambiguous_order,
    append_jsonl,
    csv_entries,
    identity,
    in_extract_order,
    sha256_bytes,
    sha256_file,
    utc_now,
)
from attrition.data.arrowcsv import write_table
from attrition.data.duplicates import duplicate_groups, from_numpy
from attrition.data.kept import archived_extracts, keep_copy, kept_folder, newly_archived
from attrition.data.parsing import parse_csv, shorten

if TYPE_CHECKING:
    pass

NAME = "ingestion"
INGESTION_HISTORY = "ingestionhistory.jsonl"  # one line per run (output_folder_path)

log = logging.getLogger(NAME)


class IngestionError(InputError):
    """Nothing could be ingested; record is the failed run's record, for the history."""

    def __init__(self, message: str, record: dict | None = None):
        super().__init__(message)
        self.record = record


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


def read_file(path: Path, input_folder: Path, keep: Path | None = None) -> tuple[pa.Table | None, dict]:
    """Read and validate one input file; returns its table (None if rejected) and its record.
    keep: the folder where a valid file's bytes are kept (kept/), or None."""
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
    table, problems, notes = parse_csv(data)
    record["rows_read"] = 0 if table is None else len(table)
    if notes:
        record["notes"] = notes
    if problems:
        record.update(status="rejected", reasons=[shorten(problem) for problem in problems])
    else:
        record["status"] = "ingested"
        if keep is not None:
            record["kept_now"] = keep_copy(data, keep / path.name)
    return table, record


def ingest(input_folder: Path, kept: Path | None = None) -> tuple[pa.Table, pa.Table, dict]:
    """Combine the valid files of a folder, and the kept copies of extracts archived out of it:
    (the de-duplicated table, its rows' extracts, the record). kept: the kept/ folder, or None."""
    started = time.perf_counter()
    tables, records = read_extracts(input_folder, kept)
    sizes = [len(table) for table in tables]
    combined = pa.concat_tables(tables)
    tables.clear()  # peak memory: the per-file tables go before de-duplication allocates
    source = np.repeat(np.arange(len(sizes)), sizes)
    rows, first = duplicate_groups(combined, source)
    final = combined.take(from_numpy(rows))
    del combined
    # each kept row's extracts (1 = the first file of ingestedfiles.txt): calllist.py's lost list
    extracts = pa.Table.from_arrays(
        [final[ID_COLUMN], from_numpy(first + 1), from_numpy(source[rows] + 1)],
        names=[ID_COLUMN, "first_extract", "last_extract"],
    )
    kept_per_file = np.bincount(source[rows], minlength=len(sizes))
    ingested = [record for record in records if record["status"] == "ingested"]
    for record, count in zip(ingested, kept_per_file, strict=True):
        record["rows_kept"] = int(count)
    summary = {
        "timestamp": utc_now(),
        "input_folder": str(input_folder),
        "status": "partial" if len(ingested) < len(records) else "ok",
        "files": records,
        "files_ingested": len(ingested),
        "files_rejected": len(records) - len(ingested),
        "rows_read": len(source),
        "rows_written": len(final),
        "duplicates_dropped": len(source) - len(final),
        "missing_values": {column: final[column].null_count for column in COLUMNS},
        "duration_seconds": round(time.perf_counter() - started, 4),
    }
    return final, extracts, summary


def read_extracts(input_folder: Path, kept: Path | None) -> tuple[list[pa.Table], list[dict]]:
    """Every extract in extract order, the input folder's and the kept copies of archived ones:
    (the valid ones' tables, a record per file). IngestionError when nothing in the input folder
    is valid: the previous finaldata.csv then stands."""
    if not input_folder.is_dir():
        raise IngestionError(f"{input_folder}: input folder does not exist")
    present = csv_entries(input_folder)
    if not present:
        raise IngestionError(f"{input_folder}: no *.csv files to ingest")
    paths = in_extract_order([*present, *archived_extracts(kept, present)])
    for first, second in ambiguous_order([path.name for path in paths]):
        log.warning(
            "%s: %r and %r: their numbers do not decide which extract is newer; taken in name order (%r "
            "first): rename them (dataset1.csv ... dataset12.csv, or dates as YYYY-MM)",
            input_folder,
            display_name(first),
            display_name(second),
            display_name(first),
        )
    tables, records = [], []
    for path in paths:
        if path.parent == input_folder:
            table, record = read_file(path, input_folder, kept)
        else:
            table, record = read_file(path, kept)
            record["archived"] = True  # no longer in the input folder: read from its kept copy
        records.append(record)
        shown = input_folder / display_name(path.name)
        for note in record.get("notes", []):
            log.warning("%s: %s", shown, note)
        for reason in record.get("reasons", []):
            log.error("%s: rejected: %s", shown, reason)
        if table is not None:
            tables.append(table)
    if kept is not None and any(record.pop("kept_now", False) for record in records):
        fsync_folder(kept)
    for record in records:
        record.pop("kept_now", None)
    if not any(record["status"] == "ingested" and not record.get("archived") for record in records):
        tables.clear()  # nothing valid in the input folder: the previous finaldata.csv stands
    if not tables:
        record = {
            "timestamp": utc_now(),
            "input_folder": str(input_folder),
            "status": "failed",
            "files": records,
        }
        rejected = sum(record["status"] == "rejected" for record in records)
        raise IngestionError(f"{input_folder}: no valid CSV file ({rejected} rejected)", record)
    return tables, records


def write_outputs(final: pa.Table, extracts: pa.Table, record: dict, output_folder: Path) -> None:
    """finaldata.csv, its rows' extracts, ingestedfiles.txt and the record, each atomically."""
    output_folder.mkdir(parents=True, exist_ok=True)

    def write(table: pa.Table, name: str) -> None:
        with atomic_path(output_folder / name) as temp:
            write_table(table, temp)

    # two files on two cores (Arrow's writer and fsync let go of the GIL), in either order: a reader
    # uses the extracts only when they match finaldata.csv row by row (calllist.read_extracts)
    with ThreadPoolExecutor(max_workers=2) as pool:
        for written in [pool.submit(write, extracts, EXTRACTS), pool.submit(write, final, FINALDATA)]:
            written.result()
    record["finaldata_sha256"] = sha256_file(output_folder / FINALDATA)
    names = [entry["name"] for entry in record["files"] if entry["status"] == "ingested"]
    atomic_write_text(output_folder / INGESTEDFILES, "".join(f"{name}\n" for name in names))
    atomic_write_json(output_folder / INGESTION_RECORD, record)
    append_jsonl(output_folder / INGESTION_HISTORY, record)


def ingest_input_folder(config) -> tuple[pa.Table, pa.Table, dict]:
    """ingest() on the configured folders: a failed attempt is remembered in the history
    (fullprocess.py reads it) while finaldata.csv stays; an extract newly archived out of the input
    folder is named once, with the command that drops it."""
    try:
        final, extracts, record = ingest(config.input_folder, kept_folder(config))
    except IngestionError as error:
        record = error.record or {"timestamp": utc_now(), "input_folder": str(config.input_folder)}
        record.update(status="failed", error=str(error))
        config.output_folder.mkdir(parents=True, exist_ok=True)
        append_jsonl(config.output_folder / INGESTION_HISTORY, record)
        raise
    record["input_folder_relative"] = config.relative(config.input_folder)
    record["archived_now"] = newly_archived(config.output_folder, record)
    for name in record["archived_now"]:
        log.warning(
            "%s: no longer in %s: its rows stay in %s from its kept copy (%s); "
            "`python ingestion.py --forget %s` drops them",
            display_name(name),
            config.input_folder,
            FINALDATA,
            config.relative(kept_folder(config) / name),
            display_name(name),
        )
    return final, extracts, record
