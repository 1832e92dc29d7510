"""Reading an API request: bodies counted while read, JSON and CSV rows, uploads, data files, options.

Not a script; app.py's routes call it. Everything here turns a request into plain values or
raises: InputError (400), RequestEntityTooLarge (413), UnsupportedMediaType (415), Forbidden
(403) or NotFound (404); app.py maps each to a JSON error.
    prediction_input(config)    (the feature matrix, the client IDs if given, the body's options)
                                of a /prediction request: a data file (any name of FILE_KEYS),
                                JSON rows (records, MLflow's dataframe_records / dataframe_split),
                                a CSV body, an uploaded CSV (multipart), or naming nothing, the
                                configured test data
    requested_file(config)      the data file a request names (/scoring, /summarystats), or None
    wants(name)                 an on/off option: 1/0, true/false, yes/no, on/off
    whole_number(name, ...)     a whole-number option within bounds (ASCII digits only)
Work stays bounded by the request's size and the api_max_* limits: sizes, rows and columns are
counted on the bytes before anything is parsed, rows ended as pandas ends them (CR LF, LF, CR).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np
from flask import current_app, request
from werkzeug.exceptions import (
    Forbidden,
    HTTPException,
    NotFound,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)
from werkzeug.formparser import MultiPartParser

from attrition.api import serving
from attrition.api.rows import check_rows, matrix_from_csv, matrix_from_json
from attrition.core.config import Config
from attrition.core.errors import InputError

# The names the course's public clients give a data file's location (query, form or JSON field).
FILE_KEYS = (
    "filepath",
    "filename",
    "file_path",
    "data_path",
    "dataset_path",
    "datafile",
    "data_file",
    "path",
)
ROW_KEYS = ("records", "dataframe_records", "dataframe_split")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
MAX_PATH_CHARS = 1024  # a data file's location, as given
MAX_DIGITS = 12  # a numeric option: more digits than any bound needs is refused unread


def data_roots(config: Config) -> list[Path]:
    """The folders /prediction may read: input, ingested, test data, models (not production)."""
    return [
        folder.resolve()
        for folder in (config.input_folder, config.output_folder, config.test_data, config.model_folder)
    ]


MAX_RESOLVED = 256  # locations remembered per app (app.extensions["risk_resolved"])


def resolve_data_file(config: Config, raw, key: str = "filepath") -> Path:
    """A requested data file (given as key): inside the data folders (links followed), a CSV,
    existing, within the limits."""
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise InputError(f"{key} must be a non-empty path string", reason="bad_path")
    if len(raw) > MAX_PATH_CHARS:
        raise InputError(
            f"{key} is {len(raw):,} characters long; at most {MAX_PATH_CHARS:,}", reason="bad_path"
        )
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{key} is not valid text (a lone surrogate)", reason="bad_path") from None
    path = Path(raw.strip())
    joined = path if path.is_absolute() else config.path.parent / path
    # each location once resolved and checked: (the file, its device and inode). Named again, it
    # costs one stat instead of resolving every link of its path; a location that now leads to
    # another file (a link moved) is resolved and checked afresh.
    resolved_before = current_app.extensions.setdefault("risk_resolved", {})
    known = resolved_before.get(joined)
    if known is not None:
        try:
            seen = os.stat(joined)
        except OSError:
            seen = None
        if seen is not None and (seen.st_dev, seen.st_ino) == known[1]:  # the same file: checked before
            check_size(config, raw, seen.st_size)
            return known[0]
    try:
        resolved = joined.resolve()
        if not any(resolved.is_relative_to(root) for root in current_app.extensions["risk_data_roots"]):
            raise Forbidden(f"{raw}: outside the data folders (input, ingested, test, models)")
        if resolved.suffix.lower() != ".csv":
            raise Forbidden(f"{raw}: only CSV data files can be read")
        if not resolved.is_file():
            raise NotFound(f"{raw}: no such data file")
        seen = resolved.stat()
    except OSError as error:  # a component too long, a loop of links
        raise InputError(
            f"{raw[:80]}: not a usable path ({error.strerror or error})", reason="bad_path"
        ) from None
    check_size(config, raw, seen.st_size)
    if len(resolved_before) >= MAX_RESOLVED:
        resolved_before.clear()
    resolved_before[joined] = (resolved, (seen.st_dev, seen.st_ino))
    return resolved


def check_size(config: Config, raw: str, size: int) -> None:
    if size > config["api_max_body_bytes"]:
        raise InputError(
            f"{raw}: {size:,} bytes, more than a request may hold (api_max_body_bytes "
            f"{config['api_max_body_bytes']:,}); score large files with scoring.py",
            reason="api_max_body_bytes",
        )


def read_body(limit: int) -> bytes:
    """The whole request body, counted while it is read: over limit bytes, however it is sent, is 413.

    Never parses a truncated body: a chunked body the client cut short, or with a malformed
    chunk, is 400.
    """
    if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return b""  # no body declared: nothing to wait for
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(
            f"the body is {request.content_length:,} bytes; at most {limit:,} (api_max_body_bytes)"
        )
    chunks, size = [], 0
    try:
        while chunk := request.stream.read(65536):
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLarge(f"the body is over {limit:,} bytes (api_max_body_bytes)")
            chunks.append(chunk)
    except RequestEntityTooLarge as error:
        error.description = f"the body is over {limit:,} bytes (api_max_body_bytes)"
        raise
    except HTTPException:
        raise
    except Exception as error:  # the server's reader: a bad chunk size, a client gone half-way
        raise InputError(f"the request body could not be read ({type(error).__name__})") from None
    if request.content_length is not None and size != request.content_length:
        raise InputError(f"the request body ended after {size:,} of {request.content_length:,} bytes")
    return b"".join(chunks)


def reject_constant(name: str):
    raise InputError(f"malformed JSON body: {name} is not a JSON number", reason="malformed_json")


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object whose keys are all different: a key given twice (which would silently keep
    the last value) is 400."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise InputError(
            f"malformed JSON body: key {twice[:40]!r} appears twice in one object", reason="malformed_json"
        )
    return value


def parse_json(body: bytes, config: Config) -> dict:
    """A JSON object body, strictly: no NaN or Infinity, at most api_max_rows rows' worth of
    objects and arrays (counted before parsing: what bounds the parser's memory)."""
    containers = body.count(b"{") + body.count(b"[")
    if containers > config["api_max_rows"] + 8:
        raise InputError(
            f"JSON body: more objects and arrays than api_max_rows ({config['api_max_rows']:,}) rows need",
            reason="api_max_rows",
        )
    try:
        value = json.loads(body, parse_constant=reject_constant, object_pairs_hook=unique_keys)
    except RecursionError:
        raise InputError("malformed JSON body: nested too deeply", reason="malformed_json") from None
    except UnicodeDecodeError:
        raise InputError("malformed JSON body: not UTF-8 text", reason="malformed_json") from None
    except ValueError as error:
        raise InputError(f"malformed JSON body: {str(error)[:200]}", reason="malformed_json") from None
    if not isinstance(value, dict):
        raise InputError("malformed JSON body: expected an object", reason="malformed_json")
    return value


def multipart_csv(data: bytes, config: Config) -> tuple[bytes | None, dict]:
    """(the one file of a multipart/form-data body, whatever its field name, or None; its other
    fields): an uploaded CSV is scored like a CSV body, under the same limits."""
    boundary = request.mimetype_params.get("boundary", "")
    if not boundary:
        raise InputError("multipart/form-data body without a boundary", reason="malformed_multipart")
    parser = MultiPartParser(max_form_memory_size=config["api_max_body_bytes"], max_form_parts=16)
    try:
        form, files = parser.parse(io.BytesIO(data), boundary.encode("latin-1"), len(data))
    except (ValueError, UnicodeError, HTTPException) as error:
        raise InputError(
            f"malformed multipart/form-data body ({str(error)[:80]})", reason="malformed_multipart"
        ) from None
    uploads = [upload for _, each in files.lists() for upload in each]
    if len(uploads) > 1:
        raise InputError(f"multipart/form-data body: {len(uploads)} files; send one CSV file")
    twice = sorted(key for key, values in form.lists() if len(values) > 1)
    if twice:
        raise InputError(
            f"multipart/form-data body: the field {twice[0][:40]!r} is given twice; give it once"
        )
    return (uploads[0].read() if uploads else None), form.to_dict()


def requested_file(config: Config, body: dict | None = None) -> Path | None:
    """The data file a request names (query string first, then the JSON or form body) under any
    of FILE_KEYS, resolved and checked; None when it names none. Two names for it are 400."""
    given = [(key, request.args[key]) for key in FILE_KEYS if key in request.args]
    given += [(key, body[key]) for key in FILE_KEYS if body and key in body]
    if not given:
        return None
    if len({json.dumps(value) for _, value in given}) > 1:
        names = ", ".join(key for key, _ in given)
        raise InputError(f"the data file is named twice ({names}); give one")
    return resolve_data_file(config, given[0][1], given[0][0])


def prediction_input(config: Config) -> tuple[np.ndarray, list | None, dict, str | None]:
    """(the feature matrix, the client IDs if the input has them, the body's options, the data
    file it describes or None for rows) of a /prediction request: rows, a named data file, or
    (naming none) the configured test data. A body is read on any method: a course client sends
    GET with a JSON body."""
    data = read_body(config["api_max_body_bytes"])
    body: dict = {}
    if data:
        mimetype = request.mimetype
        if mimetype in ("text/csv", "application/csv"):
            return *matrix_from_csv(data, config), {}, None
        if mimetype == "multipart/form-data":
            upload, body = multipart_csv(data, config)
            if upload is not None:
                if requested_file(config, body) is not None:
                    raise InputError("give either a data file or an uploaded file, not both")
                return *matrix_from_csv(upload, config), body, None
        else:
            body = fields_of(data, mimetype, config, "application/json, text/csv or a form")
    if any(key in body for key in ROW_KEYS):
        if any(key in body or key in request.args for key in FILE_KEYS):
            raise InputError("give either a data file or rows, not both")
        return *matrix_from_json(body, config), body, None
    path = requested_file(config, body)
    if path is None:  # no location: the configured test data (the course's clients' default)
        path = resolve_data_file(config, config.relative(config.testdata_file))
    matrix = serving.feature_matrix_cached(path)
    check_rows(len(matrix), config, config.relative(path))
    return matrix, serving.client_ids_cached(path), body, config.relative(path)


def body_fields(config: Config) -> dict:
    """The fields of a request's body on a route that reads a named data file (/scoring,
    /summarystats, /diagnostics), on any method: a JSON object, a form, or a multipart form's
    fields. {} without a body; an uploaded file or another content type is refused, never ignored."""
    data = read_body(config["api_max_body_bytes"])
    if not data:
        return {}
    if request.mimetype == "multipart/form-data":
        upload, body = multipart_csv(data, config)
        if upload is not None:
            raise InputError(f"{request.path} reads no uploaded file: name a data file (filepath=...)")
        return body
    return fields_of(data, request.mimetype, config, "application/json or a form naming a data file")


def fields_of(data: bytes, mimetype: str, config: Config, accepted: str) -> dict:
    """A JSON object or a URL-encoded form body as a dict; any other content type is 415."""
    if mimetype == "application/json":
        return parse_json(data, config)
    if mimetype == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(data.decode("utf-8"), strict_parsing=True, max_num_fields=16)
        except (UnicodeDecodeError, ValueError) as error:
            raise InputError(f"malformed form body ({str(error)[:80]})") from None
        fields = dict(pairs)
        if len(fields) < len(pairs):
            twice = next(key for key in fields if sum(name == key for name, _ in pairs) > 1)
            raise InputError(f"form body: the field {twice[:40]!r} is given twice; give it once")
        return fields
    raise UnsupportedMediaType(f"{mimetype or 'no content type'}: send {accepted}")


def wants(name: str, default: bool = False, body: dict | None = None) -> bool:
    """An on/off option from the query string (or the body): 1/0, true/false, yes/no, on/off."""
    value = request.args.get(name)
    if value is None and body:
        value = body.get(name)
    if value is None:
        return default
    text = str(value).lower() if not isinstance(value, bool) else str(int(value))
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise InputError(f"{name} must be 1 or 0 (or true/false, yes/no, on/off), not {str(value)[:20]!r}")


def ascii_whole(raw: str) -> int | None:
    """raw as a whole number when it is 1 to MAX_DIGITS ASCII digits, else None.

    str.isdigit alone accepts what int() refuses ("²", "①") and what it reads as another
    number ("٣" is 3): only 0-9 are digits here.
    """
    if 0 < len(raw) <= MAX_DIGITS and raw.isascii() and raw.isdigit():
        return int(raw)
    return None


def whole_number(name: str, default: int, low: int, high: int) -> int:
    """A whole-number query option within [low, high]; anything else is 400."""
    raw = request.args.get(name, str(default))
    value = ascii_whole(raw)
    if value is None or not low <= value <= high:
        raise InputError(f"{name} must be a whole number from {low} to {high:,}, not {raw[:20]!r}")
    return value
