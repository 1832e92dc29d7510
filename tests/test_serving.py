"""A real gunicorn on a free loopback port: apicalls.py, and a redeploy under load."""

import json
import shutil
import socket
import threading

import pytest
import requests
from conftest import Workspace, assert_one_line_error, client_frame, run_ok, wait_until

from fullprocess import start_api_server, stop_process

ROW = {"lastmonth_activity": 10, "lastyear_activity": 200, "number_of_employees": 30}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(deployed_workspace):
    """A real gunicorn on a free loopback port, always stopped."""
    port = free_port()
    process = start_api_server("127.0.0.1", port, deployed_workspace.root / "gunicorn.log", workers=2,
                               env=deployed_workspace.env)  # fmt: skip
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


def test_apicalls_against_a_real_server(server, deployed_workspace):
    result = deployed_workspace.run("apicalls.py", "--url", server)
    assert result.returncode == 0, result.stderr
    answers = json.loads((deployed_workspace.path("output_model_path") / "apireturns.txt").read_text())
    assert {"prediction", "scoring", "summarystats", "diagnostics"} <= set(answers)
    assert len(answers["prediction"]["predictions"]) == 200
    deployed = float((deployed_workspace.path("prod_deployment_path") / "latestscore.txt").read_text())
    assert answers["scoring"]["f1"] == pytest.approx(deployed)
    assert set(answers["diagnostics"]) == {"execution_time_seconds", "missing_data_percent", "dependencies"}
    result = deployed_workspace.run("apicalls.py", "--url", server, "--output", "apireturns2.txt")
    assert result.returncode == 0, result.stderr
    assert (deployed_workspace.path("output_model_path") / "apireturns2.txt").is_file()


def test_apicalls_against_a_closed_port_fails_cleanly(deployed_workspace):
    url = f"http://127.0.0.1:{free_port()}"
    result = deployed_workspace.run("apicalls.py", "--url", url)
    assert result.returncode == 69  # Unavailable
    assert_one_line_error(result, url, "make serve")
    assert not (deployed_workspace.path("output_model_path") / "apireturns.txt").exists()


def test_gunicorn_serves_json_errors(server):
    response = requests.get(f"{server}/prediction", params={"filepath": "/etc/passwd"}, timeout=5)
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    response = requests.post(f"{server}/prediction", data="{x", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "Traceback" not in response.text


def test_a_redeploy_under_load_fails_no_request(server, deployed_workspace):
    stop = threading.Event()
    results = []

    def hammer():
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(f"{server}/prediction", json={"records": [ROW]}, timeout=10)
                results.append((response.status_code, response.json().get("model_version")))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(results) >= 20, "answers from version 1")
        for _ in range(3):
            run_ok(deployed_workspace, "deployment.py")
        (deployed_workspace.path("input_folder_path") / "dataset2.csv").unlink()
        run_ok(deployed_workspace, "ingestion.py", "training.py", "scoring.py", "deployment.py")
        wait_until(lambda: results and results[-1][1] == 5, "answers from version 5")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    statuses = {status for status, _ in results}
    assert statuses == {200}, [r for r in results if r[0] != 200][:5]
    versions = [version for _, version in results]
    assert versions[0] == 1 and versions[-1] == 5
    assert len(results) > 50


def test_apicalls_sends_the_token_from_the_environment(deployed_workspace):
    port = free_port()
    env = {**deployed_workspace.env, "RISK_API_TOKEN": "s3cret"}
    server = start_api_server("127.0.0.1", port, deployed_workspace.root / "gunicorn.log", workers=1, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        result = deployed_workspace.run("apicalls.py", "--url", url)
        assert result.returncode == 1
        assert_one_line_error(result, "HTTP 401", "send Authorization: Bearer <token>")
        result = deployed_workspace.run("apicalls.py", "--url", url, env=env)
        assert result.returncode == 0, result.stderr
        answers = json.loads((deployed_workspace.path("output_model_path") / "apireturns.txt").read_text())
        assert len(answers["prediction"]["predictions"]) == 200
    finally:
        stop_process(server)


def test_answers_from_another_deployment_are_not_recorded(server, deployed_workspace, tmp_path):
    """Another checkout's server on the address: apicalls.py refuses it, fullprocess.py uses its own."""
    other = tmp_path / "other"
    shutil.copytree(deployed_workspace.root, other, symlinks=True)
    other_ws = Workspace(other, other / "config.json")
    run_ok(other_ws, "deployment.py")  # version 2 there: another deployment than the server's
    result = other_ws.run("apicalls.py", "--url", server)
    assert result.returncode == 1
    assert_one_line_error(result, "not this production folder's live version 2", "answers are not recorded")
    assert not (other_ws.path("output_model_path") / "apireturns.txt").exists()

    port = int(server.rsplit(":", 1)[1])
    other_ws.set_config(drift_tolerance=-1.0, api_port=port)  # its configured address: the other server
    frame = client_frame(100, seed=9)
    other_ws.write_csv("input_folder_path", "dataset9.csv", frame)
    result = other_ws.run("fullprocess.py", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "serves another deployment: starting a temporary gunicorn" in result.stderr
    answers = json.loads((other_ws.path("output_model_path") / "apireturns2.txt").read_text())
    assert answers["url"] != server and answers["scoring"]["model_version"] == 3
