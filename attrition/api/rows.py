"""A request's rows as a feature matrix: JSON rows (records, MLflow's dataframe_records and
dataframe_split) and CSV bodies or uploads, each counted and checked against the api_max_* limits
before anything is parsed that could cost more than the body's size."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from attrition.core.config import Config
from attrition.core.errors import InputError
from attrition.core.names import FEATURES, ID_COLUMN
from attrition.data.clientdata import feature_frame, read_data_file
from attrition.data.csvtext import count_lines, first_line


def check_rows(count: int, config: Config, source: str) -> None:
    if count > config["api_max_rows"]:
        raise InputError(
            f"{source}: {count:,} rows; at most {config['api_max_rows']:,} per request (api_max_rows)",
            reason="api_max_rows",
        )


def plain_count(value) -> bool:
    """A value that needs no parsing: a JSON number in a count's range, or null (missing)."""
    if value is None:
        return True
    if type(value) is int:
        return 0 <= value <= 2**53
    return type(value) is float and math.isfinite(value) and 0 <= value <= 2**53 and value.is_integer()


def id_list(values) -> list[str | None]:
    """Client IDs as given (text; null where a row has none)."""
    return [None if value is None or value != value else str(value) for value in values]


def matrix_from_json(body: dict, config: Config) -> tuple[np.ndarray, list | None]:
    """(the feature matrix, the client IDs if the rows have any) of the JSON row forms: records,
    dataframe_records, dataframe_split."""
    if "records" in body or "dataframe_records" in body:
        rows, ids = rows_of_records(body.get("records", body.get("dataframe_records")), config)
    else:
        rows, ids = rows_of_split(body["dataframe_split"], config)
    if all(plain_count(value) for row in rows for value in row):
        # plain numbers (the usual case): straight to NumPy, as a DataFrame costs more than the prediction
        return np.array(rows, dtype=float).reshape(len(rows), len(FEATURES)), ids
    for row in rows:  # text such as "12" is parsed as in a CSV; anything else names itself
        for value in row:
            if isinstance(value, (dict, list, bool)):
                raise InputError(f"JSON rows: {json.dumps(value)[:30]} is not a count")
            if type(value) is int and abs(value) > 2**53:
                raise InputError(f"JSON rows: value too large to hold exactly (above {2**53:,})")
    frame = pd.DataFrame(rows, columns=list(FEATURES), dtype=object)
    return feature_frame(frame, "JSON rows").to_numpy(), ids


def rows_of_records(records, config: Config) -> tuple[list[list], list | None]:
    """records / dataframe_records: a list of objects, one per row."""
    if not isinstance(records, list) or not all(isinstance(row, dict) for row in records):
        raise InputError("records must be a list of objects, one per row")
    check_rows(len(records), config, "records")
    for number, row in enumerate(records, 1):
        if len(row) > config["api_max_columns"]:
            raise InputError(
                f"records: row {number} has {len(row)} fields; at most {config['api_max_columns']}",
                reason="api_max_columns",
            )
        missing = [column for column in FEATURES if column not in row]
        if missing:
            raise InputError(f"records: row {number} has no {missing[0]} (null marks a missing value)")
    rows = [[row[column] for column in FEATURES] for row in records]
    has_ids = any(ID_COLUMN in row for row in records)
    return rows, id_list(row.get(ID_COLUMN) for row in records) if has_ids else None


def rows_of_split(split, config: Config) -> tuple[list[list], list | None]:
    """dataframe_split: {"columns": [...], "data": [[...], ...]}."""
    if not (
        isinstance(split, dict)
        and isinstance(split.get("columns"), list)
        and isinstance(split.get("data"), list)
    ):
        raise InputError("dataframe_split needs 'columns' and 'data' lists")
    columns = split["columns"]
    if not all(isinstance(column, str) for column in columns):
        raise InputError("dataframe_split: 'columns' must be a list of column names")
    if len(columns) > config["api_max_columns"]:
        raise InputError(
            f"dataframe_split: {len(columns)} columns; at most {config['api_max_columns']}",
            reason="api_max_columns",
        )
    if len(set(columns)) != len(columns):
        raise InputError("dataframe_split: a column name appears twice")
    missing = [column for column in FEATURES if column not in columns]
    if missing:
        raise InputError(f"dataframe_split: missing feature column {missing[0]}")
    check_rows(len(split["data"]), config, "dataframe_split")
    if not all(isinstance(row, list) and len(row) == len(columns) for row in split["data"]):
        raise InputError("dataframe_split: every row of 'data' needs one value per column")
    positions = [columns.index(column) for column in FEATURES]
    rows = [[row[position] for position in positions] for row in split["data"]]
    at = columns.index(ID_COLUMN) if ID_COLUMN in columns else None
    return rows, None if at is None else id_list(row[at] for row in split["data"])


def matrix_from_csv(body: bytes, config: Config) -> tuple[np.ndarray, list | None]:
    """(the feature matrix, the client IDs if it has a corporation column) of a CSV body, its size
    checked before pandas reads it."""
    if first_line(body).count(b",") + 1 > config["api_max_columns"]:
        raise InputError(
            f"CSV body: more than {config['api_max_columns']} columns in the header (api_max_columns)",
            reason="api_max_columns",
        )
    check_rows(count_lines(body) - 1, config, "CSV body")
    frame = read_data_file(body, name="CSV body")
    ids = id_list(frame[ID_COLUMN].astype(object)) if ID_COLUMN in frame.columns else None
    return feature_frame(frame, "CSV body").to_numpy(), ids
