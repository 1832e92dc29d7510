"""Bounds on the socket, in one home: the deadline middleware around the app (Deadlines, which wsgi.py
serves) and gunicorn's hooks (gunicorn.conf.py installs them).

The middleware: gunicorn bounds a request's headers
(keepalive, in gunicorn.conf.py) but neither its body nor its answer: a client that sends
headers and a few bytes of a body, or never reads its answer, would hold its connection (and
the answer's memory) for ever. Here
    a declared body over api_max_body_bytes is 413 at once, nothing read, the connection closed
        (gunicorn.conf.py also sends no "100 Continue" for it, and refuses an over-limit chunk);
    a body must arrive whole within api_body_seconds of the request, or 408 and closed;
    a body the app did not read whole closes the connection (no draining what nobody wants);
    an answer the client has not taken within api_answer_seconds is abandoned (closed).
Under gevent (make serve) the deadlines are gevent timeouts, which the worker's other
connections are served during; under another server, socket timeouts.

And each answer ends with a turn for the worker's other connections (gevent.idle: the event
loop polls every socket first). A keep-alive client whose next request has already arrived
finds it readable at once, so its greenlet would never wait and never yield: under 4 busy
keep-alive connections, two were served in turn while the others waited, p99 300-500 ms
against the sync worker's 5-8 ms. With the turn: p99 8-10 ms beside sync's 5-6 ms (wrk -c4,
/prediction of 100 rows, 2 workers, same run; README: Performance).

gunicorn's hooks (patch_gunicorn, pre_request, on_starting, child_exit, on_exit): errors gunicorn
answers itself (a malformed request line, 414, 431, a bad chunk) are JSON like the API's own; no
"100 Continue" for a declared body over api_max_body_bytes and a chunk over it refused at its size
line; HTTP/1.0 and 1.1 only; the workers' metrics folder (server-<master PID> beneath
$PROMETHEUS_MULTIPROC_DIR when set, else a temporary one), a worker's live gauges dropped when it
exits, the folder removed when the server stops.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import time
from collections import Counter

import gunicorn.util
from gunicorn.http.body import ChunkedReader
from gunicorn.http.errors import InvalidHTTPVersion
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from attrition.core.errors import error_body

try:
    import gevent
    from gevent import monkey
except ImportError:  # the deadlines then fall back on socket timeouts
    gevent = None


# Every answer's headers, the app's (app.security_headers) and the refusals made before it
# (refuse, json_error): not sniffed, never framed, no referrer, never kept in a cache.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
REFUSAL_HEADERS = [*SECURITY_HEADERS.items(), ("Cache-Control", "no-store")]


class BodyTimeout(Exception):
    """The body did not arrive whole in time (raised in the reading greenlet by gevent.Timeout)."""


class AnswerAbandoned(BrokenPipeError):
    """The client did not take its answer in time: gunicorn closes the connection as for EPIPE."""


def cooperative() -> bool:
    return gevent is not None and monkey.is_module_patched("socket")


class TimedBody:
    """wsgi.input, each read bounded by what is left of the body's deadline."""

    def __init__(self, stream, sock, seconds: float, length: int | None, stall: float, rate: float):
        self.stream, self.sock, self.length, self.stall = stream, sock, length, stall
        # a rate floor on a declared body: at least `rate` bytes a second after the first `stall`
        self.seconds = min(seconds, stall + length / rate) if length else seconds
        self.deadline = time.monotonic() + self.seconds
        self.received, self.ended = 0, False
        if sock is not None and cooperative():
            sock.settimeout(stall)  # each recv: a body that stops for `stall` seconds is late

    def _read(self, method, *args):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self.late()
        try:
            if cooperative():
                with gevent.Timeout(remaining, BodyTimeout):
                    data = method(*args)
            else:
                if self.sock is not None:
                    self.sock.settimeout(remaining)
                data = method(*args)
        except BodyTimeout:
            raise self.late() from None
        except TimeoutError:  # no byte for `stall` seconds
            raise RequestTimeout(f"the request body stopped for {self.stall:g} s") from None
        self.received += len(data)
        if not data or (self.length is not None and self.received >= self.length):
            self.ended = True
        return data

    def late(self) -> RequestTimeout:
        # an HTTP error, not an OSError: Werkzeug's reader would take that for a disconnection
        return RequestTimeout(f"the request body did not arrive whole within {self.seconds:.3g} s")

    def read(self, size=-1):
        return self._read(self.stream.read, size)

    def readline(self, size=-1):
        return self._read(self.stream.readline, size)

    def readlines(self, hint=-1):
        lines = []
        while line := self.readline():
            lines.append(line)
        return lines

    def __iter__(self):
        return iter(self.readline, b"")


class TimedAnswer:
    """The app's answer, abandoned when gunicorn has not written it within the deadline."""

    def __init__(self, answer, seconds: float):
        self.answer, self.seconds, self.timer = answer, seconds, None

    def __iter__(self):
        if cooperative():
            late = AnswerAbandoned(errno.EPIPE, "the answer was not read in time")  # gunicorn: debug
            self.timer = gevent.Timeout(self.seconds, late)
            self.timer.start()
        yield from self.answer

    def close(self):
        """After gunicorn wrote the answer: stop its timer, and give the worker's other connections
        their turn (see Deadlines)."""
        try:
            if hasattr(self.answer, "close"):
                self.answer.close()
        finally:
            if self.timer is not None:
                self.timer.close()
                gevent.idle()


class Deadlines:
    """WSGI middleware: the app with deadlines on its request's body and its answer."""

    def __init__(self, app, config, count_refusal=lambda status, reason, method: None):
        self.app = app
        self.count_refusal = count_refusal  # metrics.refused_unrouted: this module imports no metrics
        self.limit = config["api_max_body_bytes"]
        self.body_seconds = config["api_body_seconds"]
        self.stall, self.rate = config["api_body_stall_seconds"], config["api_body_min_rate"]
        self.answer_seconds = config["api_answer_seconds"]

    def __call__(self, environ, start_response):
        # gunicorn's start_response is its Response's method: force_close() makes the answer
        # say "Connection: close" and the worker close the connection after it
        force_close = getattr(getattr(start_response, "__self__", None), "force_close", lambda: None)
        sock = environ.get("gunicorn.socket")
        if "close" in (token.strip().lower() for token in environ.get("HTTP_CONNECTION", "").split(",")):
            force_close()  # "Connection: keep-alive, close" closes too (gunicorn reads only "close")
        absolute_form_host(environ)
        length = environ.get("CONTENT_LENGTH") or ""
        declared = int(length) if length.isascii() and length.isdigit() else None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if declared is not None and declared > self.limit:
            force_close()
            self.count_refusal(413, "api_max_body_bytes", environ.get("REQUEST_METHOD", ""))
            return refuse(
                start_response,
                "413 Request Entity Too Large",
                "request_entity_too_large",
                f"the body is {declared:,} bytes; at most {self.limit:,} (api_max_body_bytes)",
            )
        body = None
        if chunked or declared:
            body = TimedBody(environ["wsgi.input"], sock, self.body_seconds, declared, self.stall, self.rate)
            environ["wsgi.input"] = body
        answer = self.app(environ, start_response)
        if body is not None and not body.ended:
            force_close()  # what is left of the body is not read: the connection ends here
        if sock is not None:  # the answer's deadline: TimedAnswer's timer under gevent
            sock.settimeout(None if cooperative() else self.answer_seconds)
        return TimedAnswer(answer, self.answer_seconds)


def absolute_form_host(environ) -> None:
    """An absolute-form request target (GET http://host/path HTTP/1.1) names the host it asks for,
    and it supersedes the Host header (RFC 9112, 3.2.2): the app's Host allowlist then judges
    that host, not a Host header the client set beside it."""
    target = environ.get("RAW_URI", "")
    scheme, separator, rest = target.partition("://")
    if separator and scheme.lower() in ("http", "https"):
        environ["HTTP_HOST"] = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]


def refuse(start_response, status: str, code: str, message: str):
    body = error_body(code, message)
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    start_response(status, headers + REFUSAL_HEADERS)
    return [body]


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
_limits = {"max_body": 0, "per_address": 0, "exempt": ()}  # patch_gunicorn sets them from config.json


def pre_request(worker, req):
    """Before gunicorn answers anything for a request: HTTP/1.0 and 1.1 only (400 for "HTTP/1.2");
    no "100 Continue" for a declared body over api_max_body_bytes (Deadlines answers 413
    and closes, and the client never sends it)."""
    if req.version not in HTTP_VERSIONS:
        raise InvalidHTTPVersion(f"{req.version[0]}.{req.version[1]}")
    length = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), "")
    if length.isdigit() and int(length) > _limits["max_body"]:
        req._expected_100_continue = False


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
    CappedWorker's cap on each address (read by the workers at call time)."""
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
            if name.startswith("server-") and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        folder = os.path.join(base, f"server-{os.getpid()}")
        shutil.rmtree(folder, ignore_errors=True)  # a dead server's, whose PID this one reuses
        os.makedirs(folder)
    else:
        folder = tempfile.mkdtemp(prefix="risk-metrics-")
    _own_metrics_folder.append(folder)
    os.environ[_METRICS_ENV] = folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def child_exit(server, worker):
    """A worker exited: its live gauges (the model it served) leave the exposition."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    for folder in _own_metrics_folder:
        shutil.rmtree(folder, ignore_errors=True)


try:
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
