"""A gunicorn of this project's API, started and stopped by a program: the one home for it.

Not a script. fullprocess.py starts a temporary one for apicalls.py when no API serves the
live version; the tests and benchmarks start theirs with it too. `make serve` is the way a
person starts the API.
    free_port()                       a free TCP port on the loopback interface
    api_health(url)                   the /health answer at url, or None when nothing answers
    start_api_server(host, port, log) gunicorn as `make serve` runs it, once it answers /health
    stop_process(process)             SIGTERM, then SIGKILL
    worker_pids(pid)                  the processes a gunicorn master forked (/proc)
    connections_by_worker(pid, port)  how many connections each worker of a server holds (/proc)
    wait_for_every_worker(...)        until every gevent worker takes connections (tests, benchmarks)
    serving_live_version(config)      a context: the URL of an API serving the live version (the
                                      configured one, or a temporary one stopped afterwards)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from attrition.core.config import Config
from attrition.core.errors import PipelineError
from attrition.core.names import PROJECT_DIR
from attrition.core.processes import die_with_parent
from attrition.production import stamps, versions

log = logging.getLogger("apiserver")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_health(url: str, timeout: float = 3.0) -> dict | None:
    """The API's /health answer at url ({"status": ...} also for a 503), or None when nothing answers."""
    # Here, not at the top: urllib.request (http.client, email) costs twice the rest of
    # fullprocess.py's nothing-new run, which imports this module and fetches nothing.
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            return json.loads(error.read()) if error.code == 503 else None
        except ValueError:
            return None
    except (OSError, ValueError):
        return None


def start_api_server(
    host: str,
    port: int,
    log_path: Path,
    workers: int | None = None,
    env: dict | None = None,
    access_log: bool = True,
    timeout: float = 60.0,
    pass_fds: tuple[int, ...] = (),
    worker_class: str | None = None,
):
    """gunicorn as `make serve` runs it (gunicorn.conf.py), once it answers /health.

    Its output goes to log_path: a pipe nobody reads would fill and stall the workers.
    """
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(PROJECT_DIR / "gunicorn.conf.py"),
        "--chdir",
        str(PROJECT_DIR),
        "-b",
        f"{host}:{port}",
        "wsgi:app",
    ]
    if workers:
        command[-1:-1] = ["-w", str(workers)]
    if worker_class:  # the benchmarks' sync-worker floor
        command[-1:-1] = ["-k", worker_class]
    if not access_log:
        command[-1:-1] = ["--access-logfile", "/dev/null"]
    with open(log_path, "ab") as output:
        server = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            preexec_fn=die_with_parent,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise PipelineError(f"the API on {host}:{port} did not start: see {log_path}")
        if api_health(f"http://{host}:{port}") is not None:
            return server
        time.sleep(0.1)
    stop_process(server)
    raise PipelineError(f"the API on {host}:{port} did not answer within {timeout:g} s: see {log_path}")


def stop_process(process, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it is still there after timeout seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def worker_pids(master_pid: int) -> list[str]:
    """The processes gunicorn's master forked (Linux: /proc)."""
    return Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()


def connections_by_worker(master_pid: int, port: int) -> list[int]:
    """How many established connections to the port each worker of the server holds, most first
    (Linux: the workers' socket inodes from /proc/<pid>/fd, matched in the kernel's TCP tables)."""
    children = worker_pids(master_pid)
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                established.add(fields[9])
    counts = []
    for pid in children:
        inodes = set()
        try:
            descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            descriptors = []  # the worker exited meanwhile
        for fd in descriptors:
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        counts.append(len(inodes & established))
    return sorted(counts, reverse=True)


def wait_for_every_worker(
    server, host: str, port: int, workers: int | None = None, seconds: float = 60
) -> None:
    """Until every gevent worker of the server (by default, every process gunicorn forked) takes
    connections: gunicorn forks them together, but one still loading the app takes none, and a
    kept connection stays where it went. Kept-alive connections are opened one by one until each
    worker holds one, then closed; then until the server holds none."""
    held, counts, deadline = [], [], time.monotonic() + seconds
    if workers is None:
        workers = len(worker_pids(server.pid))
    try:
        while time.monotonic() < deadline:
            sock = socket.create_connection((host, port), timeout=10)
            held.append(sock)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            sock.recv(4096)
            counts = connections_by_worker(server.pid, port)
            if len(counts) == workers and all(counts):
                break
            time.sleep(0.05)
        else:
            raise PipelineError(f"not every worker of the API on {host}:{port} took a connection: {counts}")
    finally:
        for sock in held:
            sock.close()
    wait_for_no_connections(server, port, deadline - time.monotonic())


def wait_for_no_connections(server, port: int, seconds: float = 10) -> None:
    """Until the server's workers have closed every connection to it (their counts of connections,
    balance.py's, are then true again: the benchmarks wait here between runs)."""
    deadline = time.monotonic() + seconds
    while any(connections_by_worker(server.pid, port)) and time.monotonic() < deadline:
        time.sleep(0.02)


@contextlib.contextmanager
def serving_live_version(config: Config, pass_fds: tuple[int, ...] = ()):
    """The URL of an API that serves this production folder's live version: api_host:api_port when
    it does; otherwise (nothing answers, or another checkout's server does) a temporary gunicorn on
    a free loopback port, stopped when the block ends."""
    url = f"http://{config['api_host']}:{config['api_port']}"
    serves = stamps.serves_live_version(api_health(url), versions.read_manifest(config.prod_folder))
    if serves:
        yield url
        return
    port = free_port()
    log.info(
        "the API at %s %s: starting a temporary gunicorn on 127.0.0.1:%d",
        url,
        "does not answer" if serves is None else "serves another deployment",
        port,
    )
    server = start_api_server(
        "127.0.0.1", port, config.prod_folder / "temporary-api.log", workers=1, pass_fds=pass_fds
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(server)
