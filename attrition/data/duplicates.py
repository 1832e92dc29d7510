"""Exact duplicate rows across extracts, in numpy: the last copy is kept (a client's newest row)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from attrition.core.names import ID_COLUMN
from attrition.data.parsing import NUMERIC_COLUMNS

if TYPE_CHECKING:
    import pandas as pd


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
