"""Client data tables: reading a client CSV file, checking its columns, turning it into numbers.

The pandas helpers every data script and the API share. Not a script: it reads what its
callers name and writes nothing. Every problem is an InputError naming the source and what
is wrong, so that a script exits with one line and the API answers 400.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from attrition.core.errors import DataUnavailable, InputError
from attrition.core.names import FEATURES, ID_COLUMN, TARGET
from attrition.data.csvtext import FORMULA_STARTS, MAX_COUNT, MISSING_WORDS, header_names


def formula_like(values: pd.Series) -> pd.Series:
    """A mask of the text values a spreadsheet would run as a formula (FORMULA_STARTS)."""
    return values.astype("string").str.startswith(FORMULA_STARTS).fillna(False).astype(bool)


def spreadsheet_safe(values: pd.Series) -> pd.Series:
    """Text values as a spreadsheet shows them, never runs them: a formula-like one gets a leading
    apostrophe (OWASP's rule); the others are unchanged."""
    risky = formula_like(values)
    if not risky.any():
        return values
    text = values.astype("string")
    return text.mask(risky, "'" + text)


def read_csv_strictly(source, **options) -> pd.DataFrame:
    """pandas.read_csv where a row with more fields than the header, or a column named twice in
    the header (spaces around names ignored), is a ParserError, never a silent shift of values
    into an index or a renamed "x.1"; and where only a blank client ID is a missing one."""
    names = header_names(source)
    if names:
        seen = set()
        for name in (name.strip() for name in names):
            if name in seen:
                raise pd.errors.ParserError(f"column {name[:40]!r} appears twice in the header")
            seen.add(name)
        dtype = options.get("dtype")
        if isinstance(dtype, dict):  # keyed by the names as written: " corporation " is corporation too
            options["dtype"] = {name: dtype[name.strip()] for name in names if name.strip() in dtype}
        options.setdefault("keep_default_na", False)
        options.setdefault(
            "na_values", {name: [""] if name.strip() == ID_COLUMN else MISSING_WORDS for name in names}
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(source, index_col=False, **options)
        except pd.errors.ParserWarning:
            raise pd.errors.ParserError("a row has more fields than the header") from None


def read_data_file(
    source: Path | bytes, columns: tuple[str, ...] | None = None, name: str = ""
) -> pd.DataFrame:
    """A CSV data file, or a request body's bytes (named name in messages): all its columns,
    or only those of columns that it has.

    corporation is read as text (pandas' Arrow-backed strings: smaller than a category of
    distinct IDs, and ten times faster to read at a million rows).
    """
    usecols = None if columns is None else (lambda column: column in columns)
    path = name or source
    try:
        return read_csv_strictly(
            io.BytesIO(source) if isinstance(source, bytes) else source,
            encoding="utf-8-sig",
            dtype={ID_COLUMN: str},
            usecols=usecols,
        )
    except FileNotFoundError:
        raise InputError(f"{path}: data file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not a data file") from None
    except OSError as error:  # a name too long, permissions, an I/O error
        raise InputError(f"{path}: cannot be read ({error.strerror or error})") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: not a readable CSV ({parser_message(error)})") from None


def count_problems(values: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(reason, mask of rows) for each kind of value a count cannot be, in a numeric column as
    read (integers are compared before any float conversion could round them): too large to
    hold exactly in a float64 (inf included), negative, not a whole number. NaN is a missing
    value, not a problem. Ingestion and the API's rows share this rule."""
    too_large = (values > MAX_COUNT) | (values < -MAX_COUNT)
    if too_large.any():
        return [(f"value too large to hold exactly (above {MAX_COUNT:,})", too_large)]
    problems = []
    if (values < 0).any():
        problems.append(("negative value", values < 0))
    if values.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            fractional = ~np.isnan(values) & (np.mod(values, 1) != 0)
        if fractional.any():
            problems.append(("non-integer value", fractional))
    return problems


def parser_message(error: Exception) -> str:
    """The last line of a pandas parser error: the part that names the problem."""
    lines = str(error).strip().splitlines()
    return lines[-1] if lines else type(error).__name__


def to_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(the values as numbers, a mask of values present but not numbers).

    Text such as " 12 " is a number; "lots", true/false and blank-free garbage are not.
    A missing value stays missing and is not flagged.
    """
    if pd.api.types.is_bool_dtype(values):
        return pd.Series(float("nan"), index=values.index), values.notna()
    if pd.api.types.is_numeric_dtype(values):
        return values, pd.Series(False, index=values.index)
    booleans = values.map(lambda value: isinstance(value, bool)).astype(bool)
    numbers = pd.to_numeric(values.astype("string").str.strip(), errors="coerce")
    return numbers, values.notna() & (numbers.isna() | booleans)


def example(values: pd.Series, mask: pd.Series) -> str:
    """The first value where mask holds, short enough for a log line."""
    return repr(str(values[mask].iloc[0])[:30])


def feature_frame(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The model's feature columns, in order, as float64; any other column is ignored.

    Every value is a count (count_problems) or missing: the rule ingestion applies.
    """
    missing = [column for column in FEATURES if column not in frame.columns]
    if missing:
        raise InputError(f"{source}: missing feature column {missing[0]}")
    features = {}
    for column in FEATURES:
        numbers, bad = to_numbers(frame[column])
        if bad.any():
            raise InputError(
                f"{source}: column {column} has a non-numeric value {example(frame[column], bad)}"
            )
        values = numbers.to_numpy(dtype=None if numbers.dtype.kind in "iuf" else "float64", na_value=np.nan)
        for reason, mask in count_problems(values):
            raise InputError(
                f"{source}: column {column} has a {reason} (data row {int(np.argmax(mask)) + 1})"
            )
        features[column] = values.astype("float64")
    return pd.DataFrame(features, index=frame.index)


def check_labelled(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The rows with a 0/1 label (a new frame: the argument is not changed)."""
    if TARGET not in frame.columns:
        raise InputError(f"{source}: missing column {TARGET}")
    frame = frame.dropna(subset=[TARGET])
    if frame.empty:
        raise InputError(f"{source}: no labelled rows")
    if not frame[TARGET].isin([0, 1]).all():
        raise InputError(f"{source}: column {TARGET} must be 0 or 1")
    return frame


def read_labelled_data(path: Path) -> pd.DataFrame:
    """A labelled data file (testdata.csv, finaldata.csv): its rows with a 0/1 exited."""
    return check_labelled(read_data_file(path), str(path))


def read_own_file(path: Path, labelled: bool = False, read=None) -> pd.DataFrame:
    """A data file the pipeline itself relies on (finaldata.csv, testdata.csv): unusable, it is
    DataUnavailable (exit 69, HTTP 503), not the caller's fault. read: the reader (read_data_file,
    or the API's cached one)."""
    try:
        frame = (read or read_data_file)(path)
        return check_labelled(frame, str(path)) if labelled else frame
    except InputError as error:
        raise DataUnavailable(str(error)) from None
