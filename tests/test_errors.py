"""One JSON error body (errors.error_body) for Flask's answers, the deadline middleware and gunicorn's
own refusals: the same bytes for the same error wherever it is refused."""

import importlib.util
import json
import socket

import gunicorn.util
from conftest import PROJECT_DIR, client_for

from attrition.core.errors import error_body


def test_flask_the_middleware_and_gunicorn_send_one_body(deployed_workspace, monkeypatch):
    monkeypatch.setenv("RISK_CONFIG", str(deployed_workspace.config_path))
    flask_answer = client_for(deployed_workspace).get(
        "/no/such/route", headers={"Accept": "application/json"}
    )
    assert flask_answer.status_code == 404 and flask_answer.mimetype == "application/json"
    assert flask_answer.get_data() == error_body("not_found", json.loads(flask_answer.get_data())["message"])

    from attrition.api import deadlines, workers

    started = []
    body = b"".join(
        deadlines.refuse(lambda status, headers: started.append(status), "408 Request Timeout", "x", "late")
    )
    assert body == error_body("x", "late") and started == ["408 Request Timeout"]

    spec = importlib.util.spec_from_file_location("gunicorn_conf", PROJECT_DIR / "gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        assert gunicorn.util.write_error is workers.json_error  # what gunicorn.conf.py installs
        workers.json_error(ours, 431, "Request Header Fields Too Large", "")
        ours.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: theirs.recv(65536), b""))
    head, _, sent = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and b"Content-Type: application/json" in head
    assert sent == error_body("request_header_fields_too_large", "Request Header Fields Too Large")
