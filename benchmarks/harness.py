"""Shared benchmark plumbing: temporary workspaces, whole-process timing, gunicorn, wrk.

No timed assertions anywhere: the benchmarks print figures beside floors measured in the
same run, because these machines are shared and noisy.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

FOLDERS = {
    "input_folder_path": "input",
    "output_folder_path": "ingesteddata",
    "test_data_path": "testdata",
    "output_model_path": "models",
    "prod_deployment_path": "production_deployment",
}


def make_workspace(root: Path, **settings) -> Path:
    """A workspace with the five folders and a config.json; returns the config path."""
    for folder in FOLDERS.values():
        (root / folder).mkdir(parents=True, exist_ok=True)
    config = root / "config.json"
    config.write_text(json.dumps({**FOLDERS, **settings}, indent=2))
    return config


def env_for(config: Path) -> dict:
    return {**os.environ, "RISK_CONFIG": str(config)}


def run_script(config: Path, script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [PYTHON, str(PROJECT_DIR / script), *args], env=env_for(config), capture_output=True, text=True
    )
    if check and result.returncode not in (0, 3):
        raise RuntimeError(f"{script} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def measure(command: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one whole process, from wait4's rusage."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode()
    process.stderr.close()
    if process.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}): {stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # Linux: KiB


def repeat(command, runs: int, env=None, cwd=None, before=None) -> dict:
    """Median and range of runs whole-process measurements after one warm-up."""
    if before:
        before()
    measure(command, env, cwd)
    walls, rss = [], []
    for _ in range(runs):
        if before:
            before()
        wall, peak = measure(command, env, cwd)
        walls.append(wall)
        rss.append(peak)
    return {
        "median": statistics.median(walls),
        "min": min(walls),
        "max": max(walls),
        "rss_mib": statistics.median(rss),
        "runs": runs,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_wrk() -> str:
    """wrk (Debian's package) generates the load from a second process; installed if missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is needed for the API benchmark: apt-get install wrk")
    return found


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(
    url: str,
    seconds: int,
    connections: int,
    method: str = "GET",
    body: str | None = None,
    content_type: str | None = None,
    threads: int | None = None,
) -> dict:
    """requests/s, p50 and p99 latency (ms) of one endpoint under wrk (threads: wrk's, by default
    one per connection up to two)."""
    lua = f"wrk.method = {json.dumps(method)}\n"
    if body is not None:
        lua += f"wrk.body = {json.dumps(body)}\n"
    if content_type:
        lua += f'wrk.headers["Content-Type"] = {json.dumps(content_type)}\n'
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        output = subprocess.run(
            [
                ensure_wrk(),
                "-t",
                str(threads or min(connections, 2)),
                "-c",
                str(connections),
                "-d",
                f"{seconds}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    latency = {
        percent: float(value) * _UNITS[unit]
        for percent, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    }
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "rps": rps,
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def machine() -> str:
    import platform

    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, Python {platform.python_version()}"
