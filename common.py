"""Shared settings, paths, file names, errors, logging and atomic file writes.

Every script of the pipeline imports this module. It is pure: importing it reads no file,
configures no logging and imports no data library (the standard library only). The other
shared homes: records.py (small record files), processes.py (locks, children, debris),
production.py (what is live).

Errors: PipelineError and its subclasses are the expected failures; each class carries the exit
status a script ends with (run_main) and the HTTP status the API answers with (app.py). Anything
else is a bug: one log line, no traceback, exit 70, HTTP 500 (README: The scripts, for the table).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PROJECT_DIR / "config.json"
CONFIG_ENV = "RISK_CONFIG"
DEBUG_ENV = "RISK_DEBUG"
TOKEN_ENV = "RISK_API_TOKEN"
FROZEN_ENV = "RISK_CONFIG_FROZEN"  # fullprocess.py's children: the run's one configuration (load_config)

# The five keys of the course's config.json: all required.
REQUIRED_KEYS = (
    "input_folder_path",
    "output_folder_path",
    "test_data_path",
    "output_model_path",
    "prod_deployment_path",
)
# Optional keys and their defaults; anything else in config.json is an error.
OPTIONAL_DEFAULTS = {
    "drift_test": "raw",  # raw | parametric | nonparametric (fullprocess.py)
    "drift_tolerance": 0.0,  # F1 points the new score may drop before it counts as drift
    "promotion_gate": True,  # redeploy only when the candidate is at least as good
    "step_timeout_seconds": 900,  # bound on each step fullprocess.py runs
    "api_host": "127.0.0.1",
    "api_port": 8000,
    "api_workers": 2,
    "api_max_body_bytes": 8 * 1024 * 1024,  # a request body, however it is sent (413 beyond)
    "api_max_rows": 100_000,  # rows of one /prediction request or data file
    "api_max_columns": 64,  # columns of a CSV body or data file, fields of a JSON row
    "api_body_seconds": 30.0,  # a request body must arrive whole within this (408 and closed beyond)
    "api_answer_seconds": 30.0,  # an answer the client does not read within this is abandoned
    "api_allowed_hosts": [],  # Host names served besides localhost, 127.0.0.1 and api_host
    "api_trusted_proxies": [],  # proxy addresses whose X-Forwarded-* and SCRIPT_NAME are believed
    "notify_urls": [],  # apprise URLs told of every run that matters (fullprocess.py)
    "heartbeat_url": "",  # pinged after every run (a dead-man's switch); + "/fail" after a failed one
    "notify_timeout_seconds": 10.0,  # bound on sending the notifications of one run
    "dependency_cache_hours": 24.0,  # how long the pip answer is reused
    "dependency_timeout_seconds": 15.0,  # bound on the pip call
}
DRIFT_TESTS = ("raw", "parametric", "nonparametric")
VALUE_RULES = {  # key: (check, what the value must be)
    "drift_test": (lambda value: value in DRIFT_TESTS, f"one of {', '.join(DRIFT_TESTS)}"),
    "notify_urls": (
        lambda urls: all(isinstance(url, str) and url.strip() for url in urls),
        "a list of apprise URLs (strings)",
    ),
    "api_port": (lambda value: 0 < value < 65536, "a port number (1-65535)"),
    **{
        key: (lambda names: all(isinstance(name, str) and name.strip() for name in names), words)
        for key, words in (
            ("api_allowed_hosts", "a list of host names (strings)"),
            ("api_trusted_proxies", "a list of proxy IP addresses (strings)"),
        )
    },
    "dependency_cache_hours": (lambda value: value >= 0, "not negative"),
    **{
        key: (lambda value: value > 0, "positive")
        for key in (
            "step_timeout_seconds",
            "api_workers",
            "api_max_body_bytes",
            "api_max_rows",
            "api_max_columns",
            "api_body_seconds",
            "api_answer_seconds",
            "dependency_timeout_seconds",
            "notify_timeout_seconds",
        )
    },
}

ID_COLUMN = "corporation"
FEATURES = ("lastmonth_activity", "lastyear_activity", "number_of_employees")
TARGET = "exited"
COLUMNS = (ID_COLUMN, *FEATURES, TARGET)

# File names shared between the scripts.
FINALDATA = "finaldata.csv"  # output_folder_path
EXTRACTS = "finaldataextracts.csv"  # each finaldata.csv row's first and last extract
INGESTEDFILES = "ingestedfiles.txt"
KEPT_EXTRACTS = "kept"  # output_folder_path/kept/: the bytes of every extract ingested (ingestion.py)
INGESTION_RECORD = "ingestionrecord.json"
MODEL = "trainedmodel.pkl"  # output_model_path
MODEL_META = "trainedmodel.json"
REFERENCE_DATA = "referencedata.csv"
LATESTSCORE = "latestscore.txt"
SCORE_METRICS = "latestscore.json"
SCORE_HISTORY = "scorehistory.jsonl"
DIAGNOSTICS = "diagnostics.json"
DIAGNOSTICS_HISTORY = "diagnostics_history"
CONFUSION_MATRIX = "confusionmatrix.png"
CONFUSION_MATRIX_AFTER_REDEPLOY = "confusionmatrix2.png"
RISK_RANKING = "riskranking.csv"  # the call list (calllist.py)
RISK_RANKING_BASIS = "riskranking.json"  # what the call list was computed from: model and data
LOST_CLIENTS = "lostclients.csv"
QUERY_STORE = "riskdata.sqlite"  # output_model_path: the lists and client rows as SQLite (riskdb.py)
DRIFT = "drift.json"  # output_model_path: drift.py's two comparisons, stamped (reporting.py)
DECISION = "decision.json"  # output_model_path: why fullprocess.py deploys this model (deployed with it)
REPORTS_DIR = "reports"  # prod_deployment_path/archive/vNNNN/reports: the reports about that version
REPORT = "report.pdf"
APIRETURNS = "apireturns.txt"
APIRETURNS_AFTER_REDEPLOY = "apireturns2.txt"
TESTDATA = "testdata.csv"  # test_data_path
MANIFEST = "manifest.json"  # prod_deployment_path
DEPLOYMENT_HISTORY = "deployments.jsonl"
ARCHIVE_DIR = "archive"
RUN_HISTORY = "runhistory.jsonl"
CACHE_DIR = ".cache"  # beside the config file: caches and locks, never in the data folders

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%dT%H:%M:%SZ"  # UTC
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


@dataclass(frozen=True)
class Config:
    """The resolved configuration: absolute folders, plus the optional settings by key."""

    path: Path
    input_folder: Path
    output_folder: Path
    test_data: Path
    model_folder: Path
    prod_folder: Path
    settings: dict = field(repr=False)
    text: str = field(default="", repr=False, compare=False)  # config.json as read: frozen() hands it on

    @property
    def testdata_file(self) -> Path:
        return self.test_data / TESTDATA

    @property
    def finaldata_file(self) -> Path:
        return self.output_folder / FINALDATA

    @property
    def cache_folder(self) -> Path:
        """Caches and locks, beside the config file: never in the data folders."""
        return self.path.parent / CACHE_DIR

    def written_folders(self) -> list[Path]:
        """Every folder the pipeline writes (where a killed run's temporary files can be left)."""
        return [
            self.output_folder,
            self.model_folder,
            self.model_folder / DIAGNOSTICS_HISTORY,
            self.prod_folder,
            self.cache_folder,
        ]

    def relative(self, path: Path) -> str:
        """path relative to the config file's folder: what stays true when the project moves."""
        return os.path.relpath(path, self.path.parent)

    def __getitem__(self, key: str):
        return self.settings[key]

    def frozen(self) -> dict[str, str]:
        """The environment that makes a child use this very configuration (RISK_CONFIG and the text
        read), whatever happens to the file meanwhile: one configuration per run."""
        return {
            CONFIG_ENV: str(self.path),
            FROZEN_ENV: json.dumps({"path": str(self.path), "text": self.text}),
        }


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser().resolve()


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and check config.json beside this file, or the file RISK_CONFIG names (children started by
    fullprocess.py inherit it: how the tests and the timing run use a temporary workspace). Folders
    resolve against the config file's folder, never the working directory: cron starts in $HOME.
    A child of fullprocess.py reads the text its run read (Config.frozen), not the file again."""
    path = Path(path).resolve() if path else config_path()
    try:
        text = frozen_text(path)
        if text is None:
            text = path.read_text(encoding="utf-8")
        raw = json.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (set {CONFIG_ENV} or create it)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file: {error}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path}: invalid JSON at line {error.lineno}: {error.msg}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: config must be a JSON object")
    unknown = sorted(set(raw) - set(REQUIRED_KEYS) - set(OPTIONAL_DEFAULTS))
    if unknown:
        raise ConfigError(f"{path}: unknown config key {unknown[0]!r}")
    for key in REQUIRED_KEYS:
        if key not in raw:
            raise ConfigError(f"{path}: missing required config key {key!r}")
        if not isinstance(raw[key], str) or not raw[key].strip():
            raise ConfigError(f"{path}: config key {key!r} must be a non-empty folder name")
    settings = dict(OPTIONAL_DEFAULTS)
    for key, default in OPTIONAL_DEFAULTS.items():
        if key in raw:
            value = raw[key]
            expected = type(default)
            ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value, ok = float(value), True
            if not ok:
                raise ConfigError(f"{path}: config key {key!r} must be {expected.__name__}")
            settings[key] = value
    for key, (valid, words) in VALUE_RULES.items():
        if not valid(settings[key]):
            raise ConfigError(f"{path}: config key {key!r} must be {words}")
    folders = [folder_of(path, raw[key]) for key in REQUIRED_KEYS]
    return Config(path, *folders, settings, text)


def folder_of(config_file: Path, value: str) -> Path:
    """A folder named in config.json: an absolute path as written ("/srv/risk/production"), a
    relative one against the config file's folder. The course's prose writes folders with slashes
    ("/practicedata/"): a one-name absolute path that does not exist at the root means that name in
    the config file's folder (the only case read other than as written; README: Configuration)."""
    value = value.strip()
    folder = Path(value).expanduser()
    if not folder.is_absolute():
        return (config_file.parent / folder).resolve()
    name = value.strip("/")
    if name and "/" not in name and not folder.exists():
        return (config_file.parent / name).resolve()
    return folder.resolve()


def frozen_text(path: Path) -> str | None:
    """The configuration text a parent run froze for this path (Config.frozen), or None."""
    try:
        frozen = json.loads(os.environ.get(FROZEN_ENV) or "null")
    except ValueError:
        return None
    if isinstance(frozen, dict) and frozen.get("path") == str(path) and isinstance(frozen.get("text"), str):
        return frozen["text"]
    return None


ODD_KINDS = {stat.S_IFLNK: "a symlink", stat.S_IFDIR: "a directory"}


def clear_odd_entry(path: Path) -> str | None:
    """A record, log, lock or output the pipeline writes must be a regular file of its own: a
    symlink (never written through: a lock linked to config.json truncated it), a directory or a
    special file in its place is moved aside (NAME.aside-<UTC time>) and named in a warning. A
    link to a character device (a log sent to /dev/null) is left as the operator made it.
    Returns the warning, or None when the entry is a regular file or absent."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode) and device_link(path):
        return None  # `ln -s /dev/null fullprocess.log`: an operator's deliberate routing, not damage
    kind = ODD_KINDS.get(stat.S_IFMT(mode), "a special file")
    aside = path.with_name(f"{path.name}.aside-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    os.rename(path, aside)
    message = f"{path} was {kind}, not the pipeline's file: moved aside to {aside}"
    logging.getLogger("repair").warning("%s", message)
    return message


def device_link(path: Path) -> bool:
    """Whether a symlink leads to a character device (/dev/null, /dev/full): written through."""
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


class LogFileHandler(logging.FileHandler):
    """A log file that, when it cannot be written (a full disk), says so once on stderr instead of a
    traceback per line; failed names the error for the caller (fullprocess.py's exit status).
    Never written through a symlink, nor blocked by a directory in its place (clear_odd_entry)."""

    failed: OSError | None = None

    def _open(self):
        clear_odd_entry(Path(self.baseFilename))
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        error = sys.exc_info()[1]
        if self.failed is None:
            self.failed = error if isinstance(error, OSError) else OSError(str(error))
            sys.stderr.write(
                f"cannot write the log file {self.baseFilename} "
                f"({getattr(error, 'strerror', None) or error}): logging to stderr only\n"
            )


def setup_logging(name: str, log_file: Path | None = None) -> logging.Logger:
    """The one log format, to stderr (and a file if given). Entry points only."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(LogFileHandler(log_file, encoding="utf-8", errors="backslashreplace"))
    formatter = logging.Formatter(LOG_FORMAT, datefmt=LOG_DATEFMT)
    formatter.converter = time.gmtime
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    return logging.getLogger(name)


def command_line(doc: str) -> argparse.ArgumentParser:
    """An argparse parser whose --help page is the script's docstring."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def run_main(main, name: str) -> None:
    """Run an entry point: an expected failure is one log line and its class's exit status."""
    try:
        code = main()
    except PipelineError as error:
        logging.getLogger(name).error("%s", error)
        code = error.exit_code
    except KeyboardInterrupt:
        logging.getLogger(name).error("interrupted")
        code = 130
    except Exception as error:  # a bug, not bad input: still one line for cron logs
        full = disk_full(error)
        if full is not None:
            logging.getLogger(name).error("%s", full)
            sys.exit(full.exit_code)
        if os.environ.get(DEBUG_ENV):
            raise
        logging.getLogger(name).error(
            "unexpected %s: %s (run with %s=1 for a traceback)", type(error).__name__, error, DEBUG_ENV
        )
        code = EXIT_BUG
    sys.exit(code or 0)


def fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def file_stamp(*paths: Path) -> tuple:
    """What changes when any of the files is replaced or rewritten."""
    stamp = []
    for path in paths:
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            stamp.append(None)
            continue
        stamp.append((stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size))  # ctime: an edit
        # whose mtime was set back
    return tuple(stamp)


@contextlib.contextmanager
def atomic_path(path: Path, sync_folder: bool = True):
    """Yield a temporary path in the target's folder; on success it replaces the target.

    Readers see the old file or the new one, never half of one. For libraries that
    write by file name (DataFrame.to_csv, savefig, PdfPages). sync_folder=False leaves the
    folder's fsync to a caller that replaces several files and syncs the folder once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    os.close(os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield temp_path
        with open(temp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temp_path, 0o644)
        clear_odd_entry(path)  # a directory in the way would fail the replace on every run
        os.replace(temp_path, path)
        if sync_folder:
            fsync_folder(path.parent)
    except BaseException as error:
        temp_path.unlink(missing_ok=True)
        full = disk_full(error, path)
        if full is not None:
            raise full from None
        raise


def atomic_write_bytes(path: Path, data: bytes, sync_folder: bool = True) -> None:
    with atomic_path(path, sync_folder) as temp:
        temp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
