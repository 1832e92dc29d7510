"""The course's outdated_packages_list: each pinned requirement's installed and latest version.
pip is asked once per dependency_cache_hours (its answer cached beside the config file); with no
index reachable the latest version is "unknown".
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from attrition.core.config import Config, load_config
from attrition.core.files import atomic_write_json
from attrition.core.names import PROJECT_DIR
from attrition.core.processes import file_lock

REQUIREMENTS = PROJECT_DIR / "requirements.txt"


FAILED_PIP_CACHE_SECONDS = 3600  # an offline answer is retried after an hour


def requirement_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """{name: pinned version} of a requirements file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        match = re.fullmatch(r"([A-Za-z0-9._-]+)\s*==\s*([^\s;]+)", line)
        if match:
            pins[match.group(1)] = match.group(2)
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _ask_pip(timeout: float) -> dict[str, str] | None:
    """{normalised name: latest version} from pip, or None when pip cannot reach an index."""
    base = [sys.executable, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"]
    network = ["--retries", "0", "--timeout", str(max(1, int(timeout / 3)))]
    processes = [
        subprocess.Popen([*base, flag, *network], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for flag in ("--outdated", "--uptodate")
    ]
    deadline = time.monotonic() + timeout
    latest: dict[str, str] = {}
    try:
        for process, key in zip(processes, ("latest_version", "version"), strict=True):
            stdout, _ = process.communicate(timeout=max(0.1, deadline - time.monotonic()))
            if process.returncode != 0:
                return None
            for entry in json.loads(stdout or "[]"):
                latest[_normalise(entry["name"])] = entry[key]
    except (subprocess.TimeoutExpired, ValueError):
        return None
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    return latest


def outdated_packages_list(config: Config | None = None, refresh: bool = False) -> list[dict]:
    """module | installed | latest for every package of requirements.txt, by running pip.

    pip is bounded by dependency_timeout_seconds; without an index latest is "unknown". The
    answer is cached (dependency_cache_hours; an offline answer for an hour). One pip at a
    time: concurrent callers (API workers, a run) wait for the one running, polling its lock,
    and take its answer.
    """
    config = config or load_config()
    cache = config.cache_folder / "dependencies.json"
    pins = requirement_pins()
    requested = time.time()

    def cached_table(fresh_after: float | None) -> list[dict] | None:
        try:
            cached = json.loads(cache.read_text())
            max_age = (
                config["dependency_cache_hours"] * 3600 if cached["online"] else FAILED_PIP_CACHE_SECONDS
            )
            young = fresh_after is None and time.time() - cached["checked"] < max_age
            if (young or (fresh_after is not None and cached["checked"] >= fresh_after)) and [
                row["module"] for row in cached["table"]
            ] == list(pins):
                return cached["table"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass
        return None

    if not refresh and (table := cached_table(None)) is not None:
        return table
    with file_lock(config.cache_folder / "dependencies.lock", poll=0.05):
        # another caller's pip may have answered while this one waited
        table = cached_table(requested if refresh else None)
        if table is not None:
            return table
        latest = _ask_pip(config["dependency_timeout_seconds"])
        table = []
        for module, pinned in pins.items():
            try:
                installed = importlib.metadata.version(module)
            except importlib.metadata.PackageNotFoundError:
                installed = "not installed"
            newest = (latest or {}).get(_normalise(module), "unknown")
            table.append(
                {
                    "module": module,
                    "required": pinned,
                    "installed": installed,
                    "latest": newest,
                    "outdated": newest not in ("unknown", installed),
                }
            )
        atomic_write_json(cache, {"checked": time.time(), "online": latest is not None, "table": table})
    return table
