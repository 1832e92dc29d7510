"""gunicorn's side of the socket's bounds (the middleware's side is deadlines.py; gunicorn.conf.py
installs these): errors gunicorn answers itself (a malformed request line, 414, 431, a bad chunk)
are JSON like the API's own, with the security headers; no "100 Continue" for a declared body over
api_max_body_bytes and a chunk over it refused at its size line; HTTP/1.0 and 1.1 only; the
workers' metrics folder (server-<master PID> beneath $PROMETHEUS_MULTIPROC_DIR when set, else a
temporary one), a worker's live gauges dropped when it exits, the folder removed when the server
stops; and CappedWorker, gevent's worker with a cap on each client address's open connections
and an even share of the connections among workers (balance.py).
Nothing here imports the app or metrics.py: gunicorn's master imports this module before the
metrics folder exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter

import gunicorn.util
from gunicorn.http.body import ChunkedReader
from gunicorn.http.errors import InvalidHTTPVersion
from werkzeug.exceptions import RequestEntityTooLarge

from attrition.api import balance
from attrition.api.deadlines import REFUSAL_HEADERS
from attrition.core.errors import error_body
from attrition.core.processes import process_alive


def json_error(sock, status_int, reason, mesg, extra=()):
    """gunicorn.util.write_error's answer as the API's JSON error instead of an HTML page."""
    body = error_body(reason.lower().replace(" ", "_"), mesg or reason)
    headers = "".join(f"{name}: {value}\r\n" for name, value in [*REFUSAL_HEADERS, *extra])
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode("latin-1")
    gunicorn.util.write_nonblock(sock, head + body)


HTTP_VERSIONS = ((1, 0), (1, 1))


_limits = {"max_body": 0, "per_address": 0, "exempt": (), "shares": None}  # patch_gunicorn sets them


def pre_request(worker, req):
    """Before gunicorn answers anything for a request: HTTP/1.0 and 1.1 only (400 for "HTTP/1.2");
    no "100 Continue" for a declared body over api_max_body_bytes (Deadlines answers 413
    and closes, and the client never sends it); a crowded worker's answer closes its connection,
    at most once a second (balance.py: the client reconnects to a less crowded worker)."""
    if req.version not in HTTP_VERSIONS:
        raise InvalidHTTPVersion(f"{req.version[0]}.{req.version[1]}")
    length = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), "")
    if length.isdigit() and int(length) > _limits["max_body"]:
        req._expected_100_continue = False
    if any(server.crowded() for server in getattr(worker, "balanced", ())):
        req.must_close = True  # the answer says Connection: close; the client reconnects elsewhere


_parse_chunk_size = ChunkedReader.parse_chunk_size


def parse_chunk_size(self, unreader, data=None):
    """gunicorn's chunk-size parser, refusing a chunk over api_max_body_bytes as soon as its size
    line is read (413, Deadlines closes the connection), instead of waiting for its bytes."""
    size, rest = _parse_chunk_size(self, unreader, data)
    if size > _limits["max_body"]:
        most = _limits["max_body"]
        raise RequestEntityTooLarge(f"a chunk of {size:,} bytes; at most {most:,} (api_max_body_bytes)")
    return size, rest


def patch_gunicorn(config) -> None:
    """gunicorn's own error answers as JSON, its chunk parser bounded by api_max_body_bytes, and
    CappedWorker's cap on each address (read by the workers at call time); the workers' shared
    counts of connections (made here, in the master, before it forks them)."""
    _limits["shares"] = balance.Shares()
    _limits["max_body"] = config["api_max_body_bytes"]
    _limits["per_address"] = config["api_connections_per_address"]
    _limits["exempt"] = tuple(config["api_trusted_proxies"])  # a proxy carries everyone's connections
    gunicorn.util.write_error = json_error
    ChunkedReader.parse_chunk_size = parse_chunk_size


_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


_own_metrics_folder = []  # the temporary folder this server made, removed when it stops


def on_starting(server):
    """Before the workers start: their metrics folder, empty (metrics.py reads it at import).

    With $PROMETHEUS_MULTIPROC_DIR set, this server counts in a folder of its own beneath it
    (server-<master PID>): a second server started with the same setting (another `make serve`,
    the pipeline's temporary API) never empties a running server's files; folders of servers
    that are gone are removed."""
    base = os.environ.get(_METRICS_ENV)
    if base:
        os.makedirs(base, exist_ok=True)
        for name in os.listdir(base):
            pid = name.removeprefix("server-")
            if name.startswith("server-") and pid.isdigit() and not process_alive(int(pid)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        folder = os.path.join(base, f"server-{os.getpid()}")
        shutil.rmtree(folder, ignore_errors=True)  # a dead server's, whose PID this one reuses
        os.makedirs(folder)
    else:
        folder = tempfile.mkdtemp(prefix="risk-metrics-")
    _own_metrics_folder.append(folder)
    os.environ[_METRICS_ENV] = folder


def child_exit(server, worker):
    """A worker exited: its live gauges (the model it served) leave the exposition."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
    if _limits["shares"] is not None:
        _limits["shares"].release(worker.pid)


def on_exit(server):
    for folder in _own_metrics_folder:
        shutil.rmtree(folder, ignore_errors=True)


try:
    from gunicorn.workers import ggevent
    from gunicorn.workers.ggevent import GeventWorker
except ImportError:  # gevent missing: gunicorn.conf.py names this worker only with gevent
    GeventWorker = object


class CappedWorker(GeventWorker):
    """gunicorn's gevent worker, with a cap on the connections one client address holds open at
    once (api_connections_per_address per worker): one address's crowd of half-sent bodies or idle
    connections cannot take every slot (api_worker_connections) from everyone else. Beyond the cap
    a connection is answered 503 with Retry-After and closed at once; the trusted proxies, which
    carry everyone's connections, are not capped."""

    def init_process(self):
        self.open_by_address = Counter()
        super().init_process()

    def run(self):
        """gevent's worker's run, listening with balance.BalancedServer (gunicorn's gevent module
        makes its server from its StreamServer name: this worker process's own copy is replaced).
        The worker takes its slot now, its app loaded: the others leave it nothing before."""
        shares = _limits["shares"]
        slot = shares.claim(os.getpid()) if shares is not None else None
        self.balanced = []  # pre_request asks them whether this worker is crowded

        def balanced_server(*args, **kwargs):
            self.balanced.append(balance.BalancedServer(*args, shares=shares, slot=slot, **kwargs))
            return self.balanced[-1]

        ggevent.StreamServer = balanced_server
        super().run()

    def handle(self, listener, client, addr):
        host = addr[0] if isinstance(addr, tuple) and addr else ""
        cap = _limits["per_address"]
        if cap and host not in _limits["exempt"] and self.open_by_address[host] >= cap:
            message = f"{cap} connections from {host} are open on this worker; close one, then retry"
            try:
                json_error(client, 503, "Service Unavailable", message, [("Retry-After", "1")])
            except OSError:
                pass
            client.close()
            return
        self.open_by_address[host] += 1
        try:
            super().handle(listener, client, addr)
        finally:
            self.open_by_address[host] -= 1
            if not self.open_by_address[host]:
                del self.open_by_address[host]
