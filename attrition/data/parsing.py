"""One extract's bytes to a checked table: Arrow's fast reader first, pandas' reader (the rule)
for anything Arrow declines. A change to a validation rule goes into both (parse_arrow may only
decline; tests/test_ingestion.py's property test compares them). Stay inside Arrow and numpy
here: pyarrow's own conversions load pandas (tests/test_startup.py).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from attrition.core.names import COLUMNS, FEATURES, ID_COLUMN, TARGET
from attrition.data.csvtext import FORMULA_STARTS, MAX_COUNT, MISSING_WORDS, first_line, header_names

if TYPE_CHECKING:
    import pandas as pd


NUMERIC_COLUMNS = (*FEATURES, TARGET)


MAX_EXAMPLES = 3


MAX_HEADER_BYTES = 64 * 1024  # five column names need a few dozen


ARROW_TYPES = {ID_COLUMN: pa.string(), **{column: pa.int64() for column in NUMERIC_COLUMNS}}


SCHEMA = pa.schema([(column, ARROW_TYPES[column]) for column in COLUMNS])


# an ID a spreadsheet would run (csvtext.FORMULA_STARTS), or one holding a line break
BAD_ID = "^[" + "".join(f"\\x{ord(char):02x}" for char in FORMULA_STARTS) + "]|[\\r\\n]"


MAX_MESSAGE = 300  # characters of one reason or note, in the log and the record


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
    frame, problems = read_text_frame(data)
    if frame is None:
        return None, problems, []
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
    problems += id_problems(frame[ID_COLUMN]) + number_problems(frame)
    if problems:
        return None, problems, notes
    # float64 until the valid files are combined: one conversion to integer columns, not one per file
    return frame, problems, notes


def read_text_frame(data: bytes) -> tuple[pd.DataFrame | None, list[str]]:
    """The bytes as a frame of text and numbers, or None and why not (empty, binary, not UTF-8,
    a header too long to be this data set's, malformed CSV)."""
    import pandas as pd

    from attrition.data.clientdata import parser_message, read_csv_strictly

    if not data.strip():
        return None, ["empty file"]
    if b"\x00" in data:
        return None, ["binary file (contains NUL bytes), not CSV text"]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return None, [f"not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"]
    header = first_line(data)
    if len(header) > MAX_HEADER_BYTES:
        return None, [f"header line of {len(header):,} bytes: not this data set's five columns"]
    try:
        return read_csv_strictly(io.BytesIO(data), encoding="utf-8-sig", dtype={ID_COLUMN: str}), []
    except pd.errors.EmptyDataError:
        return None, ["empty file"]
    except (pd.errors.ParserError, ValueError) as error:
        return None, [f"malformed CSV: {parser_message(error)}"]


def id_problems(ids: pd.Series) -> list[str]:
    """Missing IDs, a line break inside one, one a spreadsheet would run as a formula."""
    from attrition.data.clientdata import formula_like

    problems = []
    if ids.isna().any():
        problems.append(f"{ID_COLUMN}: missing values ({_lines(ids.isna())})")
    breaks = ids.str.contains("[\r\n]", regex=True, na=False)
    if breaks.any():
        problems.append(f"{ID_COLUMN}: a line break inside an ID ({_lines(breaks)})")
    formulas = formula_like(ids)
    if formulas.any():
        problems.append(
            f"{ID_COLUMN}: an ID starting with =, +, -, @, tab or CR, which a spreadsheet would run "
            f"as a formula ({_lines(formulas)})"
        )
    return problems


def number_problems(frame: pd.DataFrame) -> list[str]:
    """The numeric columns' problems; each valid one is converted in place to float64 (what the
    model computes with). Checked on NumPy arrays: a pandas operation costs about 100 µs whatever
    the size, and a folder of 10,000 small monthly files would spend most of its time in them."""
    from attrition.data.clientdata import count_problems, example, to_numbers

    problems, converted = [], set()
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
        frame[column] = values.astype("float64")
        converted.add(column)
    if TARGET in converted:
        target = frame[TARGET].to_numpy()
        if np.isnan(target).any():
            problems.append(f"{TARGET}: missing value ({_lines(np.isnan(target))})")
        elif not np.isin(target, (0, 1)).all():
            problems.append(f"{TARGET}: value not 0 or 1 ({_lines(~np.isin(target, (0, 1)))})")
    return problems


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """A message cut to limit characters: a 50 MB header must not become a 50 MB log line."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"
