"""The WSGI entry point gunicorn imports: `gunicorn -c gunicorn.conf.py wsgi:app` (make serve).

The app, inside deadlines on the socket (Deadlines). gunicorn bounds a request's headers
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
"""

from __future__ import annotations

import errno
import time

from werkzeug.exceptions import RequestTimeout

from app import create_app, warm_up
from attrition.api import metrics
from attrition.core.errors import error_body

try:
    import gevent
    from gevent import monkey
except ImportError:  # the deadlines then fall back on socket timeouts
    gevent = None


class BodyTimeout(Exception):
    """The body did not arrive whole in time (raised in the reading greenlet by gevent.Timeout)."""


class AnswerAbandoned(BrokenPipeError):
    """The client did not take its answer in time: gunicorn closes the connection as for EPIPE."""


def cooperative() -> bool:
    return gevent is not None and monkey.is_module_patched("socket")


class TimedBody:
    """wsgi.input, each read bounded by what is left of the body's deadline."""

    def __init__(self, stream, sock, seconds: float, length: int | None):
        self.stream, self.sock, self.seconds, self.length = stream, sock, seconds, length
        self.deadline = time.monotonic() + seconds
        self.received, self.ended = 0, False

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
        except (BodyTimeout, TimeoutError):
            raise self.late() from None
        self.received += len(data)
        if not data or (self.length is not None and self.received >= self.length):
            self.ended = True
        return data

    def late(self) -> RequestTimeout:
        # an HTTP error, not an OSError: Werkzeug's reader would take that for a disconnection
        return RequestTimeout(f"the request body did not arrive whole within {self.seconds:g} s")

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

    def __init__(self, app, config):
        self.app = app
        self.limit = config["api_max_body_bytes"]
        self.body_seconds = config["api_body_seconds"]
        self.answer_seconds = config["api_answer_seconds"]

    def __call__(self, environ, start_response):
        # gunicorn's start_response is its Response's method: force_close() makes the answer
        # say "Connection: close" and the worker close the connection after it
        force_close = getattr(getattr(start_response, "__self__", None), "force_close", lambda: None)
        sock = environ.get("gunicorn.socket")
        length = environ.get("CONTENT_LENGTH") or ""
        declared = int(length) if length.isascii() and length.isdigit() else None
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if declared is not None and declared > self.limit:
            force_close()
            metrics.refused(413, "api_max_body_bytes")
            metrics.observe_request("unrouted", environ.get("REQUEST_METHOD", ""), 413, 0.0, 0, 0)
            return refuse(
                start_response,
                "413 Request Entity Too Large",
                "request_entity_too_large",
                f"the body is {declared:,} bytes; at most {self.limit:,} (api_max_body_bytes)",
            )
        body = None
        if chunked or declared:
            body = environ["wsgi.input"] = TimedBody(environ["wsgi.input"], sock, self.body_seconds, declared)
        answer = self.app(environ, start_response)
        if body is not None and not body.ended:
            force_close()  # what is left of the body is not read: the connection ends here
        if sock is not None and not cooperative():
            sock.settimeout(self.answer_seconds)
        return TimedAnswer(answer, self.answer_seconds)


def refuse(start_response, status: str, code: str, message: str):
    body = error_body(code, message)
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close")],
    )
    return [body]


flask_app = create_app()
warm_up(flask_app)
app = Deadlines(flask_app, flask_app.extensions["risk_config"])
