"""The expected failures (PipelineError and its subclasses), each with its exit status and HTTP
status, and the one JSON error body the API sends.

Anything else is a bug: one log line, no traceback, exit 70, HTTP 500 (README: The scripts).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from attrition.core.names import config_path

EXIT_BUG = 70  # EX_SOFTWARE: an unexpected exception
EXIT_PARTIAL = 3  # ingestion.py: ingested, but some file was rejected
EXIT_LOCKED = 75  # EX_TEMPFAIL: fullprocess.py, another run holds the lock; try again later


class PipelineError(Exception):
    """An expected failure: a step of the pipeline failed. One log line, no traceback."""

    exit_code, http_status, code = 1, 500, "pipeline_error"


class InputError(PipelineError):
    """Input data (a CSV file, a request body, a command-line value) is missing or not usable.
    reason: what kind of problem, for the API's refusal counter (metrics.py): a limit's name
    (api_max_rows, ...), malformed_json, bad_path, or bad_input."""

    exit_code, http_status, code = 65, 400, "bad_request"

    def __init__(self, *args, reason: str = "bad_input"):
        super().__init__(*args)
        self.reason = reason


class ConfigError(PipelineError):
    """config.json (or $RISK_CONFIG) is missing, malformed or has a bad value."""

    exit_code, http_status, code = 78, 500, "config_error"


class DiskFull(PipelineError):
    """No space left on the device (or quota) while writing a file: the file is as it was."""

    exit_code, http_status, code = 74, 507, "disk_full"


def disk_full(error: BaseException, path: Path | None = None) -> DiskFull | None:
    """A DiskFull naming the file (relative to the project) when error, or the error it arose from
    (a library's own error raised while handling a failed write), is out of space; else None."""
    seen = error
    while seen is not None and not out_of_space(seen):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    name = path or getattr(seen, "filename", None)
    shown = os.path.relpath(name, config_path().parent) if name else "a file"
    why = getattr(seen, "strerror", None) or str(seen)
    return DiskFull(
        f"disk full writing {shown} ({why}): it is as it was, nothing in it changed; free space and run again"
    )


SQLITE_FULL = 13  # sqlite3's "database or disk is full" (an OperationalError, not an OSError)


def out_of_space(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    return getattr(error, "sqlite_errorcode", None) == SQLITE_FULL


class Unavailable(PipelineError):
    """Something the service needs is not there: not the caller's fault, maybe later."""

    exit_code, http_status, code = 69, 503, "unavailable"


class DeploymentUnavailable(Unavailable):
    """No deployed model can be used: none yet, an unreadable manifest, a missing or broken model."""

    code = "model_unavailable"


class ModelIntegrityError(DeploymentUnavailable):
    """The deployed model's bytes do not match the deployment manifest."""


class DataUnavailable(Unavailable):
    """A data file the server itself reads (finaldata.csv, testdata.csv) is missing or unusable."""

    code = "data_unavailable"


def error_body(code: str, message: str) -> bytes:
    """The API's one JSON error body, {"error": code, "message": message}: what Flask's error
    answers (app.error_response), the deadline middleware (wsgi.refuse) and gunicorn's own
    refusals (gunicorn.conf.py) all send."""
    return json.dumps({"error": code, "message": message}, separators=(",", ":")).encode() + b"\n"
