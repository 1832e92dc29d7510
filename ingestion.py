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
    kept/FOLDER/NAME.csv   the bytes of each extract ingested: an extract archived (moved or
                           deleted) out of the input folder stays in finaldata.csv from its kept
                           copy, named once in the log; `--forget NAME` drops it deliberately
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
    python ingestion.py --forget dataset3.csv
                                   # drop an archived extract's rows: its kept copy is removed
                                   # and finaldata.csv rebuilt without it
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from attrition.core.config import load_config
from attrition.core.errors import EXIT_PARTIAL, InputError
from attrition.core.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    fsync_folder,
)
from attrition.core.logs import command_line, run_main, setup_logging
from attrition.core.names import (
    COLUMNS,
    EXTRACTS,
    FEATURES,
    FINALDATA,
    ID_COLUMN,
    INGESTEDFILES,
    INGESTION_RECORD,
    KEPT_EXTRACTS,
    TARGET,
)
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
from attrition.data.csvtext import FORMULA_STARTS, MAX_COUNT, MISSING_WORDS, first_line, header_names

if TYPE_CHECKING:
    import pandas as pd

NAME = "ingestion"
INGESTION_HISTORY = "ingestionhistory.jsonl"  # one line per run (output_folder_path)
NUMERIC_COLUMNS = (*FEATURES, TARGET)
MAX_EXAMPLES = 3
MAX_HEADER_BYTES = 64 * 1024  # five column names need a few dozen
ARROW_TYPES = {ID_COLUMN: pa.string(), **{column: pa.int64() for column in NUMERIC_COLUMNS}}
SCHEMA = pa.schema([(column, ARROW_TYPES[column]) for column in COLUMNS])
# an ID a spreadsheet would run (csvtext.FORMULA_STARTS), or one holding a line break
BAD_ID = "^[" + "".join(f"\\x{ord(char):02x}" for char in FORMULA_STARTS) + "]|[\\r\\n]"
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


def parse_csv(data: bytes) -> tuple[pa.Table | None, list[str], list[str]]:
    """Parse and validate one file's bytes: (the five columns as an Arrow table, or None; problems;
    notes). Arrow's multithreaded reader parses the file and its values are checked on Arrow arrays
    (parse_arrow); a file it cannot read, or one with any problem, is read by pandas (parse_frame),
    which is the rule and names every problem with its line. Either way, the same values."""
    table = parse_arrow(data)
    if table is not None:
        return table, [], extra_columns_note(header_names(io.BytesIO(data)) or [])
    frame, problems, notes = parse_frame(data)
    if frame is None:
        return None, problems, notes
    return pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), problems, notes


def extra_columns_note(names: list) -> list[str]:
    extra = [name for name in (str(name).strip() for name in names) if name not in COLUMNS]
    if not extra:
        return []
    return [shorten("dropped extra column" + ("s " if len(extra) > 1 else " ") + ", ".join(extra))]


def parse_arrow(data: bytes) -> pa.Table | None:
    """The five columns of a valid file, parsed by Arrow; None when Arrow cannot parse it, might
    read a value otherwise than pandas would, or any value breaks a rule (parse_frame decides)."""
    if not data or data.isspace() or b"\x00" in data:  # (strip would copy the whole file)
        return None
    if not data.isascii():
        try:
            data.decode("utf-8")  # Arrow checks the ID column; pandas checks every byte
        except UnicodeDecodeError:
            return None
    names = header_names(io.BytesIO(data))
    if not names or len(first_line(data)) > MAX_HEADER_BYTES:
        return None
    stripped = [name.strip() for name in names]
    if len(set(stripped)) < len(stripped) or not set(COLUMNS) <= set(stripped):
        return None
    if hex_numbers(data, stripped):
        return None
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=stripped, skip_rows=1),
            parse_options=pacsv.ParseOptions(newlines_in_values=b'"' in data),
            convert_options=pacsv.ConvertOptions(
                column_types=ARROW_TYPES,
                include_columns=list(COLUMNS),
                null_values=list(MISSING_WORDS),
                strings_can_be_null=False,  # only a blank ID is missing: "NA" is an ID
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if len(table) == 0:
        return None
    ids = table[ID_COLUMN]
    if pc.min(pc.binary_length(ids)).as_py() == 0 or pc.any(pc.match_substring_regex(ids, BAD_ID)).as_py():
        return None
    for column in NUMERIC_COLUMNS:
        low, high = pc.min_max(table[column]).values()
        if (low.as_py() or 0) < 0 or (high.as_py() or 0) > MAX_COUNT:
            return None
    target = table[TARGET]
    if target.null_count or (pc.max(target).as_py() or 0) > 1:
        return None
    return table


def hex_numbers(data: bytes, names: list[str]) -> bool:
    """Whether a cell of a column other than the client ID may read as a hexadecimal number ("0x1F"
    is 31 to Arrow, text to pandas, which is the rule). A cell in a line with quotes before it
    counts: its column cannot be told without parsing."""
    for marker in (b"0x", b"0X"):
        found = data.find(marker)
        while found >= 0:
            start = found
            while start > 0 and data[start - 1] in b' \t"+-':  # the cell's start, past spaces and a sign
                start -= 1
            if start == 0 or data[start - 1] in b",\r\n":  # "0x" begins a cell: which column?
                window = max(0, start - MAX_HEADER_BYTES)  # lines are short: never a scan to the start
                end = max(data.rfind(b"\n", window, start), data.rfind(b"\r", window, start))
                line = data[end + 1 : start]
                column = line.count(b",")
                if (end < 0 < window) or b'"' in line or column >= len(names) or names[column] != ID_COLUMN:
                    return True
            found = data.find(marker, found + 2)
    return False


def parse_frame(data: bytes) -> tuple[pd.DataFrame | None, list[str], list[str]]:
    """Parse and validate one file's bytes with pandas: (clean frame or None, problems, notes).
    pandas is imported here: a run whose files all take Arrow's path never loads it."""
    import pandas as pd

    from attrition.data.clientdata import (
        count_problems,
        example,
        formula_like,
        parser_message,
        read_csv_strictly,
        to_numbers,
    )

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
    notes.extend(extra_columns_note(list(frame.columns)))
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


def keep_copy(data: bytes, kept: Path) -> bool:
    """Write an ingested extract's bytes to kept/ unless the same bytes are there; True if written."""
    try:
        if (
            kept.is_file()
            and not kept.is_symlink()
            and kept.stat().st_size == len(data)
            and kept.read_bytes() == data
        ):
            return False
    except OSError:
        pass
    atomic_write_bytes(kept, data, sync_folder=False)
    return True


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


def duplicated_rows(frame: pd.DataFrame, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(DataFrame.duplicated(keep="last"), each row's first extract among its exact copies).

    Keeping the last copy keeps a client's newest extract's row last, also when it repeats an
    older row exactly (extracts A, B, A: the client is A's again, not B's). Rows are grouped by
    a 64-bit hash of their values; only rows whose hash occurs more than once (every exact
    duplicate, and any hash collision) are compared exactly: less memory and time on large frames.
    """
    import pandas as pd

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


def to_numpy(array: pa.Array, missing: int = 0) -> np.ndarray:
    """An integer Arrow array as numpy (missing values as `missing`), read from its buffers.

    pyarrow's own conversions (to_numpy, pa.array, Python scalars) load pandas, half a second of a
    run that never needs it: the Arrow path of this script stays within Arrow and numpy.
    """
    width = array.type.bit_width // 8
    values = np.frombuffer(
        array.buffers()[1], dtype=f"<i{width}", count=len(array), offset=array.offset * width
    )
    if not array.null_count:
        return values
    bits = np.unpackbits(np.frombuffer(array.buffers()[0], dtype=np.uint8), bitorder="little")
    return np.where(bits[array.offset : array.offset + len(array)].astype(bool), values, missing)


def from_numpy(values: np.ndarray) -> pa.Array:
    """An int64 Arrow array over a numpy array's memory (see to_numpy)."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def duplicate_groups(table: pa.Table, source: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the rows kept, in order: the last copy of each distinct row; each kept row's first extract).

    Exact, and without hashing rows: each row's values become one integer (the ID's dictionary
    code and the counts, 0 for a missing one, in mixed radix), and a stable sort groups equal
    rows with their copies in file order: a group's last row is the copy kept, its first row's
    extract the first one. Counts too large to share one 64-bit integer: pandas' duplicated.
    """
    key = to_numpy(table[ID_COLUMN].combine_chunks().dictionary_encode().indices).astype(np.int64)
    span = int(key.max()) + 1 if len(key) else 1
    for column in NUMERIC_COLUMNS:
        values = to_numpy(table[column].combine_chunks(), missing=-1) + 1
        size = int(values.max()) + 1 if len(values) else 1
        if span * size >= 2**63:
            duplicated, first = duplicated_rows(table.to_pandas(), source)
            kept = np.flatnonzero(~duplicated)
            return kept, first[kept]
        key = key * size + values
        span *= size
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], len(order)) - 1
    kept, first = order[ends], source[order[starts]]
    back = np.argsort(kept)
    return kept[back], first[back]


def archived_extracts(kept: Path | None, present: list[Path]) -> list[Path]:
    """The kept copies of extracts ingested before and no longer in the input folder."""
    if kept is None or not kept.is_dir():
        return []
    names = {path.name for path in present}
    return [path for path in csv_entries(kept) if path.name not in names and path.is_file()]


def ingest(input_folder: Path, kept: Path | None = None) -> tuple[pa.Table, pa.Table, dict]:
    """Combine the valid files of a folder, and the kept copies of extracts archived out of it:
    (the de-duplicated table, its rows' extracts, the record). kept: the kept/ folder, or None."""
    started = time.perf_counter()
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

    sizes = [len(table) for table in tables]
    combined = pa.concat_tables(tables)
    tables.clear()  # peak memory: the per-file tables go before de-duplication allocates
    source = np.repeat(np.arange(len(sizes)), sizes)
    kept, first = duplicate_groups(combined, source)
    final = combined.take(from_numpy(kept))
    del combined
    # each kept row's extracts (1 = the first file of ingestedfiles.txt): calllist.py's lost list
    extracts = pa.Table.from_arrays(
        [final[ID_COLUMN], from_numpy(first + 1), from_numpy(source[kept] + 1)],
        names=[ID_COLUMN, "first_extract", "last_extract"],
    )
    kept_per_file = np.bincount(source[kept], minlength=len(sizes))
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
        "rows_read": len(source),
        "rows_written": len(final),
        "duplicates_dropped": len(source) - len(final),
        "missing_values": {column: final[column].null_count for column in COLUMNS},
        "duration_seconds": round(time.perf_counter() - started, 4),
    }
    return final, extracts, summary


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


def newly_archived(output_folder: Path, record: dict) -> list[str]:
    """The extracts read from their kept copy this time that the previous ingestion read from the
    input folder: each is named once, when it leaves."""
    try:
        before = json.loads((output_folder / INGESTION_RECORD).read_text(encoding="utf-8"))
        archived_before = {entry["name"] for entry in before.get("files", []) if entry.get("archived")}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        archived_before = set()
    return [
        entry["name"]
        for entry in record["files"]
        if entry.get("archived") and entry["name"] not in archived_before
    ]


def kept_folder(config) -> Path:
    """Where this input folder's ingested extracts are kept: kept/<the folder as config.json
    reaches it> ("kept/practicedata", "kept/data__2026"; an absolute folder: its path), so that the
    practice and production folders keep apart and a moved checkout still finds its copies."""
    relative = config.relative(config.input_folder)
    if relative.startswith(".."):  # outside the project: named by its absolute path
        relative = str(config.input_folder).lstrip("/")
    return config.output_folder / KEPT_EXTRACTS / relative.replace("/", "__")


def forget(config, name: str) -> None:
    """Remove an archived extract's kept copy, so that the ingestion that follows drops its rows."""
    kept = kept_folder(config) / name
    if "/" in name or name.startswith("."):
        raise InputError(f"--forget {name!r}: give a file name of {config.input_folder}, not a path")
    if os.path.lexists(config.input_folder / name):
        raise InputError(
            f"{config.input_folder / name}: still in the input folder; move it out first, then --forget it"
        )
    if not kept.is_file():
        raise InputError(f"{kept}: no kept copy of {name!r}: nothing to forget")
    kept.unlink()
    fsync_folder(kept.parent)
    log.warning("%s: forgotten: its rows leave finaldata.csv now", name)


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
    try:
        final, extracts, record = ingest(config.input_folder, kept_folder(config))
    except IngestionError as error:
        # Remember the failed attempt (fullprocess.py reads it), but keep finaldata.csv.
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
