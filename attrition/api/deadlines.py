"""Bounds on the socket, the middleware's side: the deadlines around the app (Deadlines, which
wsgi.py serves), the budget of answers held for unread clients (AnswerBudget), the refusals made
before the app.

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

And each answer ends with a turn for the worker's other connections (Turns: first come, first
served, once the event loop has polled every socket). A keep-alive client whose next request has
already arrived finds it readable at once, so its greenlet would never wait and never yield:
under 4 busy keep-alive connections, two were served in turn while the others waited, p99
300-500 ms against the sync worker's 5-8 ms. A turn per greenlet (gevent.idle) fixed that but
libev wakes idle watchers last-started first, so two connections were served in pairs (A A B B):
half the requests waited two answers, p99 4.0-4.6 ms against sync's 2.0-2.2 (wrk -c4, 2/2). One
queue in arrival order serves them A B A B (docs/api.md, "Tail latency").

gunicorn's side (its own refusals as JSON, the hooks, the capped worker) is workers.py.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import time
from collections import deque

from werkzeug.exceptions import RequestTimeout

from attrition.core.errors import error_body

try:
    import gevent
    from gevent import monkey
    from gevent.hub import Waiter
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


class AnswerBudget:
    """The bytes of the answers this worker holds until their clients take them, at most `limit`
    (api_max_answer_bytes): past it an answer is refused (503, Retry-After) and freed at once,
    instead of pinning memory for api_answer_seconds while its client does not read. When the
    last held answer is gone after a large peak, the cyclic garbage is collected and the C
    allocator is asked to return its free memory to the system (malloc_trim), so that the
    worker's RSS comes back to its baseline."""

    TRIM_ABOVE = 32 * 2**20

    def __init__(self, limit: int):
        self.limit, self.held, self.peak = limit, 0, 0

    def take(self, size: int) -> bool:
        if self.held and self.held + size > self.limit:
            return False
        self.held += size
        self.peak = max(self.peak, self.held)
        return True

    def give_back(self, size: int) -> None:
        self.held -= size
        if not self.held and self.peak > self.TRIM_ABOVE:
            self.peak = 0
            gc.collect()  # cycles left by the abandoned answers' exceptions first (25 ms, once a burst)
            trim_memory()


def trim_memory() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to ask
        pass


class TimedAnswer:
    """The app's answer, abandoned when gunicorn has not written it within the deadline."""

    def __init__(self, answer, seconds: float, on_close=lambda: None):
        self.answer, self.seconds, self.timer, self.on_close = answer, seconds, None, on_close

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
            self.answer = None  # the answer's bytes go now, whoever holds this iterator
            self.on_close()
            if self.timer is not None:
                self.timer.close()
                TURNS.wait()


class Turns:
    """The worker's connections whose answers are out wait here for their next turn, and resume
    in the order they came once the event loop has nothing else ready (every socket polled, so a
    connection whose request has arrived is served before a greenlet takes a second turn)."""

    def __init__(self):
        self.waiting, self.watcher = deque(), None

    def wait(self) -> None:
        waiter = Waiter()
        self.waiting.append(waiter)
        if self.watcher is None:
            self.watcher = gevent.get_hub().loop.idle()
            self.watcher.start(self.release)
        waiter.get()

    def release(self) -> None:
        """The loop is idle: every waiting greenlet resumes, first come first, each as a callback
        (a callback runs after the ones scheduled before it)."""
        self.watcher.stop()
        self.watcher = None
        loop = gevent.get_hub().loop
        while self.waiting:
            loop.run_callback(self.waiting.popleft().switch, None)


TURNS = Turns()  # one per worker process: a gevent worker runs one hub


class Deadlines:
    """WSGI middleware: the app with deadlines on its request's body and its answer."""

    def __init__(self, app, config, count_refusal=lambda status, reason, method: None):
        self.app = app
        self.count_refusal = count_refusal  # metrics.refused_unrouted: this module imports no metrics
        self.limit = config["api_max_body_bytes"]
        self.body_seconds = config["api_body_seconds"]
        self.stall, self.rate = config["api_body_stall_seconds"], config["api_body_min_rate"]
        self.answer_seconds = config["api_answer_seconds"]
        self.budget = AnswerBudget(config["api_max_answer_bytes"])

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
        started = []

        def deferred(status, headers, exc_info=None):  # the answer starts once it fits the budget
            if exc_info is not None:
                return start_response(status, headers, exc_info)
            started.append((status, headers))
            return None

        answer = self.app(environ, deferred)
        if body is not None and not body.ended:
            force_close()  # what is left of the body is not read: the connection ends here
        if sock is not None:  # the answer's deadline: TimedAnswer's timer under gevent
            sock.settimeout(None if cooperative() else self.answer_seconds)
        if not started:
            return TimedAnswer(answer, self.answer_seconds)
        status, headers = started[0]
        size = next((int(value) for name, value in headers if name.lower() == "content-length"), 0)
        if not self.budget.take(size):
            if hasattr(answer, "close"):
                answer.close()
            del answer
            self.count_refusal(503, "api_max_answer_bytes", environ.get("REQUEST_METHOD", ""))
            held = self.budget.held / 2**20
            return refuse(
                start_response,
                "503 Service Unavailable",
                "unavailable",
                f"this worker holds {held:.0f} MiB of answers its clients have not taken "
                f"(api_max_answer_bytes); retry shortly",
                [("Retry-After", "1")],
            )
        start_response(status, headers)
        return TimedAnswer(answer, self.answer_seconds, lambda: self.budget.give_back(size))


def absolute_form_host(environ) -> None:
    """An absolute-form request target (GET http://host/path HTTP/1.1) names the host it asks for,
    and it supersedes the Host header (RFC 9112, 3.2.2): the app's Host allowlist then judges
    that host, not a Host header the client set beside it."""
    target = environ.get("RAW_URI", "")
    scheme, separator, rest = target.partition("://")
    if separator and scheme.lower() in ("http", "https"):
        environ["HTTP_HOST"] = rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]


def refuse(start_response, status: str, code: str, message: str, extra=()):
    body = error_body(code, message)
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    start_response(status, headers + REFUSAL_HEADERS + list(extra))
    return [body]
