"""gunicorn settings for `make serve`: bind and workers from config.json (or $RISK_CONFIG).

Command-line flags override these (e.g. `-b 127.0.0.1:9000`).
"""

import sys
from pathlib import Path

# gunicorn imports this file before --chdir applies: find common.py from here, not the cwd.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import load_config  # noqa: E402

_config = load_config()

bind = f"{_config['api_host']}:{_config['api_port']}"
workers = _config["api_workers"]
worker_class = "sync"
timeout = 300  # /diagnostics runs ingestion and training; large data needs minutes
graceful_timeout = 10
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# gunicorn 27's control socket lives at one path per user: two servers (make serve and a test,
# or fullprocess.py's temporary one) would fight over it, and nothing here uses it.
control_socket_disable = True
