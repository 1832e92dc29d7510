"""fullprocess.py's notifications (notify.py), received by a local HTTP server through apprise's json:// URL,
and its heartbeat ping: one message per run that matters, none for a quiet run, never a failed run."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import client_frame

from apiserver import free_port

pytestmark = pytest.mark.slow  # pipeline runs, real servers or a browser: make test, not make test-fast


class Receiver:
    """A loopback HTTP server that keeps every request: (method, path, JSON body or None)."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(("POST", self.path, json.loads(body) if body else None))
                self.send_response(200)
                self.end_headers()

            def do_GET(self):
                received.append(("GET", self.path, None))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self):
        return [body for method, path, body in self.received if path == "/notify"]

    def pings(self):
        return [path for method, path, body in self.received if path.startswith("/ping")]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


@pytest.fixture
def watched(deployed_workspace, receiver):
    deployed_workspace.set_config(
        api_port=free_port(),
        notify_urls=[f"json://127.0.0.1:{receiver.port}/notify"],
        heartbeat_url=f"http://127.0.0.1:{receiver.port}/ping",
    )
    return deployed_workspace


def test_a_redeploy_and_a_rejected_file_each_send_one_message_and_a_quiet_run_none(watched, receiver):
    watched.set_config(drift_tolerance=-1.0)  # always drift: the run retrains and redeploys
    watched.write_csv("input_folder_path", "dataset9.csv", client_frame(300, seed=9))
    result = watched.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(receiver.messages()) == 1
    message = receiver.messages()[0]
    assert message["title"] == "risk model: redeployed" and message["type"] == "success"
    assert "version 2 is live" in message["message"] and "Drift (raw)" in message["message"]

    assert watched.run("fullprocess.py").returncode == 0  # nothing new: no message, one more ping
    assert len(receiver.messages()) == 1 and receiver.pings() == ["/ping", "/ping"]

    # a rejected file beside a good one, no drift: named in the log, the decision, the run record, the
    # exit status (3) and one warning message; decided on, it is not reported again until it changes
    watched.set_config(drift_tolerance=1.0)
    (watched.path("input_folder_path") / "broken.csv").write_text("corporation,exited\nab,1\n")
    watched.write_csv("input_folder_path", "dataset10.csv", client_frame(100, seed=10))
    result = watched.run("fullprocess.py", timeout=300)
    assert result.returncode == 3, result.stderr
    assert (
        "1 input file(s) rejected, the others ingested: 'broken.csv' (missing required columns"
        in result.stderr
    )
    last = watched.runs()[-1]
    assert last["decision"] == "no drift: kept the deployed model; 1 input file(s) rejected"
    assert last["exit_status"] == 3 and [entry["name"] for entry in last["rejected_files"]] == ["broken.csv"]
    assert len(receiver.messages()) == 2
    assert "Rejected broken.csv: missing required column" in receiver.messages()[1]["message"]
    assert receiver.messages()[1]["type"] == "warning"  # coloured as a warning in Slack or Teams
    assert receiver.pings() == ["/ping"] * 3  # a partial run is not a failed one
    assert watched.run("fullprocess.py").returncode == 0 and len(receiver.messages()) == 2


def test_a_failed_run_pings_fail_and_a_dead_receiver_never_fails_a_run(watched, receiver):
    watched.set_config(drift_tolerance=-1.0)
    watched.write_csv("input_folder_path", "dataset9.csv", client_frame(300, seed=9))
    (watched.path("test_data_path") / "testdata.csv").write_text("nonsense\n")  # scoring fails
    result = watched.run("fullprocess.py", timeout=300)
    assert result.returncode == 1
    assert receiver.messages()[0]["title"].startswith("risk model: failed")
    assert receiver.messages()[0]["type"] == "failure"
    assert receiver.pings() == ["/ping/fail"]

    dead = free_port()
    watched.set_config(
        notify_urls=[f"json://127.0.0.1:{dead}/notify"],
        heartbeat_url=f"http://127.0.0.1:{dead}/ping",
        notify_timeout_seconds=5.0,
    )
    result = watched.run("fullprocess.py", "--force", timeout=300)
    assert result.returncode == 1  # still failing scoring: the notification failure adds nothing
    assert "notification: not sent" in result.stderr and "heartbeat: not sent" in result.stderr
    assert "Traceback" not in result.stderr


def test_notify_urls_must_be_a_list_of_strings(deployed_workspace):
    deployed_workspace.set_config(notify_urls="json://x")
    result = deployed_workspace.run("fullprocess.py")
    assert result.returncode == 78 and "'notify_urls' must be list" in result.stderr
