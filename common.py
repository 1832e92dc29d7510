"""Shared settings, paths, file names, errors, logging and atomic file helpers.

Every script of the pipeline imports this module. It is pure: importing it reads no file,
configures no logging and imports no data library.

Start-up budget: fullprocess.py's "nothing new" path (every 10 minutes under cron) and
deployment.py import only this module and the standard library, and are benchmarked against
`python -c pass` (README: Benchmarks). So the standard modules that cost a noticeable share of
that budget and that those paths rarely need (argparse, hashlib, ast) are imported inside the
functions that use them; those two scripts read their on/off switches with getopt
(parse_switches) rather than argparse, whose import and parser cost as much as starting the
interpreter; the configuration is a plain class rather than a dataclass (whose import costs a
third of the budget); and atomic_path names its temporary file itself instead of importing
tempfile. Everywhere else imports sit at the top of the file.

Configuration
    config.json beside this file, or the file named by the environment variable
    RISK_CONFIG (children started by fullprocess.py inherit it, which is how the
    tests and diagnostics.execution_time() run the real scripts on a temporary
    workspace). Every folder in it resolves against the config file's own
    folder, never the working directory: cron starts in $HOME.

Errors
    PipelineError and its subclasses are the expected failures. Each class carries the exit
    status a script ends with (run_main) and the HTTP status the API answers with (app.py):

    class                  meaning                                   exit  HTTP
    PipelineError          a step of the pipeline failed                1   500
    InputError             input data or a request is not usable       65   400
    ConfigError            config.json is wrong                         78   500
    Unavailable            something the service needs is missing      69   503
      DeploymentUnavailable  no deployed model can be used             69   503
        ModelIntegrityError  its bytes do not match the manifest       69   503
      DataUnavailable        the server's own data files are unusable  69   503
    (anything else)        a bug: one log line, no traceback           70   500
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sys
import time
import types
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PROJECT_DIR / "config.json"
CONFIG_ENV = "RISK_CONFIG"
DEBUG_ENV = "RISK_DEBUG"
TOKEN_ENV = "RISK_API_TOKEN"

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
    "notify_urls": [],  # apprise URLs told of every run that matters (fullprocess.py)
    "heartbeat_url": "",  # pinged after every run (a dead-man's switch); + "/fail" after a failed one
    "notify_timeout_seconds": 10.0,  # bound on sending the notifications of one run
    "dependency_cache_hours": 24.0,  # how long the pip answer is reused
    "dependency_timeout_seconds": 15.0,  # bound on the pip call
}
DRIFT_TESTS = ("raw", "parametric", "nonparametric")

ID_COLUMN = "corporation"
FEATURES = ("lastmonth_activity", "lastyear_activity", "number_of_employees")
TARGET = "exited"
COLUMNS = (ID_COLUMN, *FEATURES, TARGET)

# File names shared between the scripts.
FINALDATA = "finaldata.csv"  # output_folder_path
INGESTEDFILES = "ingestedfiles.txt"
INGESTION_RECORD = "ingestionrecord.json"
INGESTION_HISTORY = "ingestionhistory.jsonl"
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
PROCESSED_FILES = "processedfiles.json"
FULLPROCESS_LOG = "fullprocess.log"
CACHE_DIR = ".cache"  # beside the config file: caches and locks, never in the data folders

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%dT%H:%M:%SZ"  # UTC
EXIT_BUG = 70  # EX_SOFTWARE: an unexpected exception
EXIT_PARTIAL = 3  # ingestion.py: ingested, but some file was rejected


class PipelineError(Exception):
    """An expected failure: a step of the pipeline failed. One log line, no traceback."""

    exit_code = 1
    http_status = 500
    code = "pipeline_error"


class InputError(PipelineError):
    """Input data (a CSV file, a request body, a command-line value) is missing or not usable."""

    exit_code = 65  # EX_DATAERR
    http_status = 400
    code = "bad_request"


class ConfigError(PipelineError):
    """config.json (or $RISK_CONFIG) is missing, malformed or has a bad value."""

    exit_code = 78  # EX_CONFIG
    http_status = 500
    code = "config_error"


class Unavailable(PipelineError):
    """Something the service needs is not there: not the caller's fault, maybe later."""

    exit_code = 69  # EX_UNAVAILABLE
    http_status = 503
    code = "unavailable"


class DeploymentUnavailable(Unavailable):
    """No deployed model can be used: none yet, an unreadable manifest, a missing or broken model."""

    code = "model_unavailable"


class ModelIntegrityError(DeploymentUnavailable):
    """The deployed model's bytes do not match the deployment manifest."""


class DataUnavailable(Unavailable):
    """A data file the server itself reads (finaldata.csv, testdata.csv) is missing or unusable."""

    code = "data_unavailable"


class Config:
    """The resolved configuration: absolute folders, plus the optional settings by key."""

    __slots__ = (
        "path",
        "input_folder",
        "output_folder",
        "test_data",
        "model_folder",
        "prod_folder",
        "settings",
    )

    def __init__(self, path, input_folder, output_folder, test_data, model_folder, prod_folder, settings):
        self.path, self.input_folder, self.output_folder = path, input_folder, output_folder
        self.test_data, self.model_folder, self.prod_folder = test_data, model_folder, prod_folder
        self.settings = settings

    @property
    def testdata_file(self) -> Path:
        return self.test_data / TESTDATA

    @property
    def finaldata_file(self) -> Path:
        return self.output_folder / FINALDATA

    def relative(self, path: Path) -> str:
        """path relative to the config file's folder: what stays true when the project moves."""
        return os.path.relpath(path, self.path.parent)

    def __getitem__(self, key: str):
        return self.settings[key]


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG).expanduser().resolve()


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and check a config file; folders resolve against the file's folder."""
    path = Path(path).resolve() if path else config_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
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
    if not all(isinstance(url, str) and url.strip() for url in settings["notify_urls"]):
        raise ConfigError(f"{path}: config key 'notify_urls' must be a list of apprise URLs (strings)")
    positive = ("step_timeout_seconds", "api_workers", "api_max_body_bytes", "api_max_rows", "api_max_columns",
                "dependency_timeout_seconds", "notify_timeout_seconds")  # fmt: skip
    for key in positive:
        if settings[key] <= 0:
            raise ConfigError(f"{path}: config key {key!r} must be positive")
    if not 0 < settings["api_port"] < 65536:
        raise ConfigError(f"{path}: config key 'api_port' must be a port number (1-65535)")
    if settings["dependency_cache_hours"] < 0:
        raise ConfigError(f"{path}: config key 'dependency_cache_hours' must not be negative")
    if settings["drift_test"] not in DRIFT_TESTS:
        raise ConfigError(f"{path}: config key 'drift_test' must be one of {', '.join(DRIFT_TESTS)}")
    base = path.parent

    def folder(key: str) -> Path:
        # Leading slashes as in the course text ("/practicedata/") mean the project folder.
        return (base / raw[key].strip().strip("/")).resolve()

    return Config(
        path=path,
        input_folder=folder("input_folder_path"),
        output_folder=folder("output_folder_path"),
        test_data=folder("test_data_path"),
        model_folder=folder("output_model_path"),
        prod_folder=folder("prod_deployment_path"),
        settings=settings,
    )


def setup_logging(name: str, log_file: Path | None = None) -> logging.Logger:
    """The one log format, to stderr (and a file if given). Entry points only."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8", errors="backslashreplace"))
    formatter = logging.Formatter(LOG_FORMAT, datefmt=LOG_DATEFMT)
    formatter.converter = time.gmtime
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    return logging.getLogger(name)


def command_line(doc: str):
    """An argparse parser whose --help page is the script's docstring."""
    import argparse

    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def parse_switches(
    doc: str, switches: dict[str, str], argv: list[str] | None = None
) -> types.SimpleNamespace:
    """On/off switches ({"--dry-run": "help text"} gives args.dry_run) parsed with getopt.

    For the two scripts with a start-up budget (see above): the same --help page and usage
    errors (exit 2) as command_line(), without argparse's cost.
    """
    import getopt

    argv = sys.argv[1:] if argv is None else argv
    prog = os.path.basename(sys.argv[0])
    usage = f"usage: {prog} [-h] " + " ".join(f"[{switch}]" for switch in switches)
    try:
        options, rest = getopt.getopt(argv, "h", ["help", *(switch[2:] for switch in switches)])
        if rest:
            raise getopt.GetoptError(f"unrecognized arguments: {' '.join(rest)}")
    except getopt.GetoptError as error:
        message = error.msg
        if message.endswith("not recognized"):  # word it as argparse does
            message = f"unrecognized arguments: {'-' if len(error.opt) == 1 else '--'}{error.opt}"
        sys.stderr.write(f"{usage}\n{prog}: error: {message}\n")
        sys.exit(2)
    given = {option for option, _ in options}
    if given & {"-h", "--help"}:
        described = {"-h, --help": "show this help message and exit", **switches}
        width = max(map(len, described))
        lines = "".join(f"  {switch:<{width}}  {text}\n" for switch, text in described.items())
        sys.stdout.write(f"{usage}\n\n{doc.strip()}\n\noptions:\n{lines}")
        sys.exit(0)
    return types.SimpleNamespace(**{switch[2:].replace("-", "_"): switch in given for switch in switches})


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
        if os.environ.get(DEBUG_ENV):
            raise
        logging.getLogger(name).error(
            "unexpected %s: %s (run with %s=1 for a traceback)", type(error).__name__, error, DEBUG_ENV
        )
        code = EXIT_BUG
    sys.exit(code or 0)


def utc_now() -> str:
    """The current UTC time, ISO 8601 with microseconds (without importing datetime)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1_000_000):06d}Z"


def sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path, sync_folder: bool = True):
    """Yield a temporary path in the target's folder; on success it replaces the target.

    Readers see the old file or the new one, never half of one. For libraries that
    write by file name (DataFrame.to_csv, savefig, PdfPages). sync_folder=False leaves the
    folder's fsync to a caller that replaces several files and syncs the folder once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # What tempfile.mkstemp does, without its import (see the module docstring).
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    os.close(os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        yield temp_path
        with open(temp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(temp_path, 0o644)
        os.replace(temp_path, path)
        if sync_folder:
            fsync_folder(path.parent)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, sync_folder: bool = True) -> None:
    with atomic_path(path, sync_folder) as temp:
        temp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines history; a missing file is an empty history.

    A line that is not one JSON object (cut short by a killed writer, even inside a multi-byte
    character) is skipped.
    """
    try:
        lines = Path(path).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        with contextlib.suppress(ValueError):  # JSONDecodeError and UnicodeDecodeError both
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


def append_jsonl(path: Path, record: dict) -> None:
    """Append one record as one line, in a single O_APPEND write.

    A history only grows, so rewriting it would cost more each run; a single appended write
    is never interleaved with another, and readers (read_jsonl) skip a line cut short by a
    crash.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, default=str) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.fstat(fd).st_size:
            # a previous writer killed mid-line leaves no newline: start on a fresh line
            with open(path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


def read_ingested_files(path: Path) -> list[str]:
    """File names in ingestedfiles.txt: one per line, or the course's Python-list form."""
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        import ast

        try:
            names = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise InputError(f"{path}: not a list of file names") from None
        if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
            raise InputError(f"{path}: not a list of file names")
        return [str(n) for n in names]
    return [line.strip() for line in text.splitlines() if line.strip()]


def list_csv_files(folder: Path) -> list[Path]:
    """Visible regular *.csv files (any case) of a folder, sorted by name."""
    return sorted(
        entry
        for entry in Path(folder).iterdir()
        if entry.name.lower().endswith(".csv") and not entry.name.startswith(".") and entry.is_file()
    )


def read_score(path: Path) -> float:
    """The single F1 number of a latestscore.txt."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InputError(f"{path}: score file not found") from None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{path}: not a number: {text[:40]!r}") from None


def read_manifest(prod_folder: Path) -> dict:
    """The live deployment's manifest.json: version, timestamp, sha256 of each deployed file."""
    path = Path(prod_folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DeploymentUnavailable(
            f"{path}: no deployment yet; run deployment.py (or fullprocess.py)"
        ) from None
    except (OSError, ValueError) as error:
        raise DeploymentUnavailable(f"{path}: unreadable deployment manifest ({error})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    entry = files.get(MODEL) if isinstance(files, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
        raise DeploymentUnavailable(f"{path}: deployment manifest lists no {MODEL} with its sha256")
    return manifest


def live_folder(prod_folder: Path, manifest: dict) -> Path:
    """The folder holding the live version's files: its archive folder, named by the manifest.

    A deployment made before versions were switched by the manifest has no "folder": its files
    are the production folder's own.
    """
    folder = manifest.get("folder")
    if folder is None:
        return Path(prod_folder)
    if not isinstance(folder, str) or not re.fullmatch(rf"{ARCHIVE_DIR}/v\d{{4,}}", folder):
        raise DeploymentUnavailable(f"{Path(prod_folder) / MANIFEST}: names no version folder ({folder!r})")
    return Path(prod_folder) / folder


def process_alive(pid: int) -> bool:
    """Whether a process with this PID is running: a temporary file named with a dead PID is debris.

    A zombie (killed, not yet reaped: its parent was killed too, and init has not got to it) is dead.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # someone else's process
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


TEMP_FILE = re.compile(r"\..+\.(\d+)\.[0-9a-f]+\.tmp")  # atomic_path's names: .NAME.PID.HEX.tmp
TIMING_FOLDER = re.compile(r"timing-(\d+)-.+")  # diagnostics' temporary workspaces, in .cache/


def die_with_parent() -> None:
    """In a child, before exec: the kernel sends it SIGTERM when the process that started it dies
    (Linux's PR_SET_PDEATHSIG), so a killed run leaves no step, report or temporary server behind."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove the temporary files (and timing workspaces) of processes that no longer exist.

    Their names carry the PID of the process that made them, so a live writer's are left alone.
    """
    removed = []
    if not Path(folder).is_dir():
        return removed
    for entry in Path(folder).iterdir():
        match = TEMP_FILE.fullmatch(entry.name) or TIMING_FOLDER.fullmatch(entry.name)
        if match and not process_alive(int(match.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                import shutil

                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def file_lock(path: Path, blocking: bool = True, poll: float = 0.0):
    """An flock on path, held for the block: yields the open lock file, or None when not
    blocking and another process holds it.

    With poll, waits by trying again every poll seconds rather than blocking in the kernel:
    time.sleep is what the API's gevent workers can serve other requests during.
    The kernel drops the lock when the last process holding the open file dies, so a killed
    run never blocks the next; a child that inherits the file keeps the lock while it lives.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking and not poll else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if not blocking:
                    yield None
                    return
                time.sleep(poll)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
