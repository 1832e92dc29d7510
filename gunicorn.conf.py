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
A kept connection stays with the worker that accepted it: the workers share them evenly by
their counts of open connections (attrition/api/balance.py), and each answer gives a worker's
other connections their turn, first come first served (attrition/api/deadlines.py).

Metrics: the workers count into one folder (prometheus-client's multiprocess mode, metrics.py):
server-<master PID> beneath $PROMETHEUS_MULTIPROC_DIR when set (so a second server never
touches a running one's files), else a new temporary folder; new when the server starts (a
restart begins at zero, as Prometheus expects of a counter), a worker's live gauges dropped
when it exits, and the folder removed when the server stops.

Errors gunicorn answers itself (a malformed request line, 414, 431, a bad chunk) are JSON
like the API's own: {"error": ..., "message": ...}.
"""

import sys
from pathlib import Path

# gunicorn imports this file before --chdir applies: find the attrition package from here, not the cwd.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from attrition.api import workers as hooks  # noqa: E402
from attrition.core.config import load_config  # noqa: E402

_config = load_config()

bind = f"{_config['api_host']}:{_config['api_port']}"
workers = _config["api_workers"]
worker_class = "attrition.api.workers.CappedWorker"  # gevent, with a cap on each address
worker_connections = _config["api_worker_connections"]  # per worker: each a greenlet, closed after keepalive
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


hooks.patch_gunicorn(_config)
# the server hooks gunicorn reads from this file (attrition/api/workers.py)
pre_request = hooks.pre_request
on_starting = hooks.on_starting
child_exit = hooks.child_exit
on_exit = hooks.on_exit
