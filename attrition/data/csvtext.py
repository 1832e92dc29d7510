"""A client CSV file as text: where its lines end, its header's names, the words for a missing value.

The standard library only: ingestion.py's Arrow path and the API's request checks use it without
loading pandas. clientdata.py holds the pandas side (reading a file into a frame, its numbers).
"""

from __future__ import annotations

import csv
import io
import re

MAX_COUNT = 2**53  # the largest count a float64 (what the model computes with) holds exactly
# pandas' words for a missing value (read_csv's documented defaults): they stay missing values
# in every column but the client ID, where only a blank is missing ("NA" and "null" are IDs).
MISSING_WORDS = (
    *("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN"),
    *("<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"),
)
# A cell starting with one of these is a formula to a spreadsheet (OWASP's CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
HEADER_PEEK = 64 * 1024  # bytes read ahead for the header's names
LINE_END = re.compile(rb"\r\n|\r|\n")


def first_line(data: bytes) -> bytes:
    """The first line of CSV bytes, ended as pandas ends a row: CR LF, a lone CR or LF."""
    return LINE_END.split(data, maxsplit=1)[0]


def count_lines(data: bytes) -> int:
    """Lines of CSV bytes as pandas counts rows: CR LF, a lone CR and LF each end one, and a last
    line without an end counts too."""
    ends = data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")
    return ends + (bool(data) and not data.endswith((b"\n", b"\r")))


def header_names(source) -> list[str] | None:
    """The column names of a CSV file or buffer's header (the buffer is rewound), or None when
    they cannot be read ahead (pandas then says what is wrong)."""
    try:
        if isinstance(source, io.BytesIO):
            head = source.getbuffer()[:HEADER_PEEK].tobytes()
        else:
            with open(source, "rb") as handle:
                head = handle.read(HEADER_PEEK)
        line = first_line(head).decode("utf-8-sig")
    except (OSError, TypeError, UnicodeDecodeError):
        return None
    names = next(csv.reader([line]), [])
    if len(line.encode()) == len(head) and len(head) == HEADER_PEEK:
        names = names[:-1]  # a header longer than the peek: its last name is cut
    return names
