"""gunicorn settings for `make serve`: bind and workers from config.json (or $RISK_CONFIG).

Command-line flags override these (e.g. `-b 127.0.0.1:9000`).

Workers: gevent. gunicorn's sync workers serve one connection each and assume a buffering proxy
in front (gunicorn's docs, "Design"); with nothing in front, two idle TCP connections made the
API unavailable. A gevent worker holds each connection in a greenlet: an idle or slow client
costs a few kilobytes, not a worker, and must send a whole request within `keepalive` seconds
(gunicorn wraps each request read in gevent.Timeout(keepalive)) or be disconnected. The work
of a request stays short and bounded (config.json's api_max_* limits); the one long task,
/diagnostics' timing run, runs in niced subprocesses that the request waits for cooperatively
(diagnostics.execution_time), so it occupies neither a worker nor a core that serving needs.

Metrics: the workers count into one folder (prometheus-client's multiprocess mode, metrics.py):
server-<master PID> beneath $PROMETHEUS_MULTIPROC_DIR when set (so a second server never
touches a running one's files), else a new temporary folder; new when the server starts (a
restart begins at zero, as Prometheus expects of a counter), a worker's live gauges dropped
when it exits, and the folder removed when the server stops.

Errors gunicorn answers itself (a malformed request line, 414, 431, a bad chunk) are JSON
like the API's own: {"error": ..., "message": ...}.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

import gunicorn.util
from gunicorn.http.body import ChunkedReader
from gunicorn.http.errors import InvalidHTTPVersion
from werkzeug.exceptions import RequestEntityTooLarge

# gunicorn imports this file before --chdir applies: find the attrition package from here, not the cwd.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from attrition.core.config import load_config  # noqa: E402
from attrition.core.errors import error_body  # noqa: E402

_config = load_config()

bind = f"{_config['api_host']}:{_config['api_port']}"
workers = _config["api_workers"]
worker_class = "gevent"
worker_connections = 2000  # per worker: each idle connection is a greenlet, closed after keepalive
keepalive = 5  # seconds a client has to send each whole request on a connection
timeout = 30  # a worker that misses its heartbeat this long is restarted (no request runs this long)
graceful_timeout = 10
limit_request_line = 8190  # 414 beyond; the longest path a request may name is 1,024 characters
limit_request_fields = 50  # header lines (431 beyond): a browser sends about 15
limit_request_field_size = 8190  # bytes of one header line (431 beyond)
# Only these proxies' X-Forwarded-* and SCRIPT_NAME headers are believed (config.json's
# api_trusted_proxies, none by default): a client cannot choose the scheme or the prefix of the
# links and redirects this server makes.
forwarded_allow_ips = ",".join(_config["api_trusted_proxies"])
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# gunicorn 27's control socket lives at one path per user: two servers (make serve and a test,
# or fullprocess.py's temporary one) would fight over it, and nothing here uses it.
control_socket_disable = True


def _json_error(sock, status_int, reason, mesg):
    """gunicorn.util.write_error's answer as the API's JSON error instead of an HTML page."""
    body = error_body(reason.lower().replace(" ", "_"), mesg or reason)
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    gunicorn.util.write_nonblock(sock, head + body)


gunicorn.util.write_error = _json_error  # read by the workers' handle_error at call time

HTTP_VERSIONS = ((1, 0), (1, 1))
_max_body = _config["api_max_body_bytes"]


def pre_request(worker, req):
    """Before gunicorn answers anything for a request: HTTP/1.0 and 1.1 only (400 for "HTTP/1.2");
    no "100 Continue" for a declared body over api_max_body_bytes (wsgi.py answers 413 and
    closes, and the client never sends it)."""
    if req.version not in HTTP_VERSIONS:
        raise InvalidHTTPVersion(f"{req.version[0]}.{req.version[1]}")
    length = next((value for name, value in req.headers if name == "CONTENT-LENGTH"), "")
    if length.isdigit() and int(length) > _max_body:
        req._expected_100_continue = False


_parse_chunk_size = ChunkedReader.parse_chunk_size


def parse_chunk_size(self, unreader, data=None):
    """gunicorn's chunk-size parser, refusing a chunk over api_max_body_bytes as soon as its size
    line is read (413, wsgi.py closes the connection), instead of waiting for its bytes."""
    size, rest = _parse_chunk_size(self, unreader, data)
    if size > _max_body:
        raise RequestEntityTooLarge(f"a chunk of {size:,} bytes; at most {_max_body:,} (api_max_body_bytes)")
    return size, rest


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
