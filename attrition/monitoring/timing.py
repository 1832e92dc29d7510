"""The course's execution_time: ingestion.py and training.py timed on a temporary workspace (a
copy that reads the real input folder through a link), or the seconds a run's own steps took.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from attrition.core.config import REQUIRED_KEYS, Config, load_config
from attrition.core.errors import EXIT_PARTIAL, PipelineError
from attrition.core.files import atomic_write_json
from attrition.core.names import CONFIG_ENV, PROJECT_DIR
from attrition.core.processes import die_with_parent, file_lock, remove_leftovers
from attrition.core.records import list_csv_files

TIMED_SCRIPTS = ("ingestion.py", "training.py")


TIMING_NICENESS = 10  # the timed scripts yield the CPU to the API's requests and to cron's runs


def execution_time(config: Config | None = None, max_age: float = 0.0) -> list[float]:
    """[ingestion seconds, training seconds]: the real scripts, timed on a temporary workspace.

    The temporary config reads the real input folder (through a link) and writes every output
    into a temporary folder, so nothing in the real folders changes. Concurrent callers share
    one run: the second waits for the first and takes its answer. With max_age, a timing of
    the same input files (names, sizes, modification times) at most max_age seconds old is
    reused: the API passes the cron period, so that fullprocess.py's diagnostics.py and its
    /diagnostics call do not time the same work twice. The scripts run at nice 10 (what a busy
    machine reports is the time they take at that priority), and a caller waits for another's
    run by polling the lock, which an API worker serves other requests during.
    """
    config = config or load_config()
    cache = config.cache_folder
    cache.mkdir(parents=True, exist_ok=True)
    result_path = cache / "timing.json"
    requested = time.time()
    inputs = input_signature(config)
    with file_lock(cache / "timing.lock", poll=0.05):
        try:
            previous = json.loads(result_path.read_text())
            if previous["finished"] >= requested:  # another caller's run finished while we waited
                return previous["seconds"]
            if previous["inputs"] == inputs and requested - previous["finished"] <= max_age:
                return previous["seconds"]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            pass
        seconds = time_scripts(config)
        atomic_write_json(result_path, {"finished": time.time(), "inputs": inputs, "seconds": seconds})
    return seconds


def keep_timing(config: Config, seconds: list[float]) -> list[float]:
    """A caller's own timing of ingestion.py and training.py on the current input files (fullprocess.py
    passes the seconds its steps just took: timing them again would do the run's work twice), kept
    as execution_time's answer for those files (the API's /diagnostics reuses it like its own)."""
    cache = config.cache_folder
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / "timing.lock", poll=0.05):
        atomic_write_json(
            cache / "timing.json",
            {"finished": time.time(), "inputs": input_signature(config), "seconds": seconds},
        )
    return seconds


def input_signature(config: Config) -> list[list]:
    """[name, size, mtime] of each input file: what a timing is valid for."""
    if not config.input_folder.is_dir():
        return []
    return [
        [path.name, path.stat().st_size, path.stat().st_mtime_ns]
        for path in list_csv_files(config.input_folder)
    ]


def time_scripts(config: Config) -> list[float]:
    """Run ingestion.py and training.py on a temporary workspace that reads the real input folder."""
    cache = config.cache_folder
    remove_leftovers(cache)  # a timing workspace whose run was killed with its caller
    with tempfile.TemporaryDirectory(prefix=f"timing-{os.getpid()}-", dir=cache) as temp:
        workspace = Path(temp)
        (workspace / "input").symlink_to(config.input_folder, target_is_directory=True)
        folders = dict(
            zip(REQUIRED_KEYS, ("input", "ingesteddata", "testdata", "models", "production"), strict=True)
        )
        temp_config = workspace / "config.json"
        temp_config.write_text(json.dumps(folders))
        env = {**os.environ, CONFIG_ENV: str(temp_config)}
        seconds = []
        for script in TIMED_SCRIPTS:
            started = time.perf_counter()
            try:
                result = subprocess.run(
                    [sys.executable, str(PROJECT_DIR / script)],
                    cwd=workspace,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=config["step_timeout_seconds"],
                    preexec_fn=lambda: (os.nice(TIMING_NICENESS), die_with_parent()),  # no orphan
                )
            except subprocess.TimeoutExpired:
                raise PipelineError(
                    f"timing {script} did not finish within {config['step_timeout_seconds']} s"
                ) from None
            seconds.append(round(time.perf_counter() - started, 4))
            if result.returncode not in (0, EXIT_PARTIAL):
                last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                raise PipelineError(f"timing {script} failed (exit {result.returncode}): {last}")
        return seconds
