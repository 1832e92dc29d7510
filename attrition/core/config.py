"""config.json: reading and checking it, the resolved Config (absolute folders, settings)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from attrition.core.errors import ConfigError
from attrition.core.names import (
    CACHE_DIR,
    CONFIG_ENV,
    DIAGNOSTICS_HISTORY,
    FINALDATA,
    FROZEN_ENV,
    TESTDATA,
    config_path,
)

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
    "api_body_stall_seconds": 5.0,  # no byte of a body for this long: 408 and closed
    "api_body_min_rate": 10_000,  # bytes/s: a declared body must arrive within stall + length/rate
    "api_connections_per_address": 64,  # open connections of one client address per worker (0: no cap)
    "api_worker_connections": 4000,  # connections each worker holds at once (gunicorn's worker_connections)
    "api_max_answer_bytes": 268_435_456,  # 256 MiB of answers a worker holds for unread clients (503 beyond)
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
    "api_connections_per_address": (lambda value: value >= 0, "not negative (0: no cap)"),
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
            "api_body_stall_seconds",
            "api_body_min_rate",
            "api_worker_connections",
            "api_max_answer_bytes",
            "dependency_timeout_seconds",
            "notify_timeout_seconds",
        )
    },
}


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
