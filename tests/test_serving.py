"""A real gunicorn on a free loopback port: apicalls.py, and a redeploy under load."""

import json
import shutil
import socket
import threading

import pytest
import requests
from conftest import ROW, Workspace, assert_one_line_error, copy_template, run_ok, timed, wait_until

from attrition.api.server import free_port, start_api_server, stop_process

pytestmark = pytest.mark.slow  # pipeline runs, real servers or a browser: make test, not make test-fast


def serve(workspace):
    """A real gunicorn on a free loopback port serving workspace (its timing kept: conftest.timed),
    always stopped."""
    timed(workspace)
    port = free_port()
    process = start_api_server(
        "127.0.0.1", port, workspace.root / "gunicorn.log", workers=2, env=workspace.env
    )
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


@pytest.fixture
def server(deployed_workspace):
    yield from serve(deployed_workspace)


@pytest.fixture
def retrained_server(retrained_workspace):
    yield from serve(retrained_workspace)


def test_apicalls_against_a_real_server(server, deployed_workspace):
    result = deployed_workspace.run("apicalls.py", "--url", server)
    assert result.returncode == 0, result.stderr
    answers = json.loads((deployed_workspace.path("output_model_path") / "apireturns.txt").read_text())
    assert {"prediction", "scoring", "summarystats", "diagnostics"} <= set(answers)
    assert len(answers["prediction"]["predictions"]) == 200
    deployed = float((deployed_workspace.path("prod_deployment_path") / "latestscore.txt").read_text())
    assert answers["scoring"]["f1"] == pytest.approx(deployed)
    assert set(answers["diagnostics"]) == {
        "execution_time_seconds",
        "data",
        "missing_data_percent",
        "dependencies",
    }
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


def test_a_redeploy_under_load_fails_no_request(retrained_server, retrained_workspace):
    server, workspace = retrained_server, retrained_workspace
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
        for _ in range(4):  # another model (version 2), then the same again thrice
            run_ok(workspace, "deployment.py")
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
    timed(deployed_workspace)
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
    other_ws.set_config(api_port=port)  # its configured address: the other server
    pending = {"after_version": 1, "second": True}  # as a run killed before its reports leaves it
    (other_ws.path("prod_deployment_path") / "pendingreport.json").write_text(json.dumps(pending))
    result = other_ws.run("fullprocess.py", timeout=300)  # finishes the reports: API calls included
    assert result.returncode == 0, result.stderr
    assert "serves another deployment: starting a temporary gunicorn" in result.stderr
    answers = json.loads((other_ws.path("output_model_path") / "apireturns2.txt").read_text())
    assert answers["url"] != server and answers["scoring"]["model_version"] == 2


# Hostile clients against gunicorn as `make serve` runs it (issue 11).
HEADER = "lastmonth_activity,lastyear_activity,number_of_employees\n"


@pytest.fixture(scope="module")
def small_server(deployed_template, tmp_path_factory):
    """A gunicorn whose body limit is 100 kB, shared by the tests below (none changes its workspace)."""
    workspace = copy_template(deployed_template, tmp_path_factory.mktemp("small") / "ws")
    workspace.set_config(api_max_body_bytes=100_000)
    port = free_port()
    process = start_api_server(
        "127.0.0.1", port, workspace.root / "gunicorn.log", workers=2, env=workspace.env
    )
    yield port
    stop_process(process)


def exchange(port: int, raw: bytes, timeout: float = 30.0) -> tuple[int, dict]:
    """Send raw bytes on a new connection; (status, JSON body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (and close) before it read everything
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if length and len(body) >= int(length[0].split(b":")[1]):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), data[:300]
    return int(head.split(b" ")[1]), json.loads(body)


def chunked(body: bytes, size: int = 4096) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def csv_post(body: bytes, headers: str) -> bytes:
    return (
        f"POST /prediction HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n{headers}"
        "Connection: close\r\n\r\n"
    ).encode() + body


def test_a_chunked_body_is_counted_never_cut_short(small_server):
    rows = HEADER.encode() + b"1,2,3\n" * 5000  # 30 kB: under the limit
    status, answer = exchange(small_server, csv_post(chunked(rows), "Transfer-Encoding: chunked\r\n"))
    assert status == 200 and len(answer["predictions"]) == 5000
    big = HEADER.encode() + b"1,2,3\n" * 50_000  # 300 kB: over, sent without a Content-Length
    status, answer = exchange(small_server, csv_post(chunked(big), "Transfer-Encoding: chunked\r\n"))
    assert status == 413 and answer["error"] == "request_entity_too_large", answer
    body = b'{"records": [' + b",".join([json.dumps(ROW).encode()] * 3000) + b"]}"
    request = (
        b"POST /prediction HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunked(body)
    )
    assert exchange(small_server, request)[0] == 413
    status, answer = exchange(
        small_server, csv_post(b"zz\r\n1,2\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n")
    )
    assert status == 400 and set(answer) == {"error", "message"}, answer


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", 414),
        (
            b"GET /health HTTP/1.1\r\nHost: localhost\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(200))
            + b"\r\n",
            431,
        ),
    ],
)
def test_gunicorns_own_errors_are_json(small_server, raw, status):
    answer_status, answer = exchange(small_server, raw)
    assert answer_status == status and set(answer) == {"error", "message"}, answer


def test_idle_and_slow_clients_and_timing_runs_do_not_starve_health(small_server):
    """Twenty idle connections, ten that stall half-way through their headers, and four clients
    asking for fresh timings: /health keeps answering (it used to time out for 30 s)."""
    base = f"http://127.0.0.1:{small_server}"
    idle = [socket.create_connection(("127.0.0.1", small_server)) for _ in range(20)]
    slow = [socket.create_connection(("127.0.0.1", small_server)) for _ in range(10)]
    for sock in slow:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")  # and never the blank line
    stop = threading.Event()
    timings = []

    def fresh_timings():
        while not stop.is_set():
            timings.append(requests.get(f"{base}/diagnostics?fresh=1", timeout=120).status_code)

    threads = [threading.Thread(target=fresh_timings) for _ in range(4)]
    for thread in threads:
        thread.start()
    latencies = []
    try:
        wait_until(lambda: timings, "a first timing run")
        for _ in range(50):
            response = requests.get(f"{base}/health", timeout=10)  # a hang guard, not a speed claim
            assert response.status_code == 200
            latencies.append(response.elapsed.total_seconds())
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for sock in idle + slow:
            sock.close()
    assert set(timings) == {200}
    print(
        f"/health under load: median {sorted(latencies)[25] * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms"
    )
    # a connection that sends nothing is closed by the server after keepalive (5 s)
    with socket.create_connection(("127.0.0.1", small_server), timeout=30) as sock:
        assert sock.recv(1) == b""


def test_the_server_never_unpickles_a_hostile_pickle(server, deployed_workspace, tmp_path):
    """A pickle that would run code, its manifest and trainedmodel.json made to match it."""
    import hashlib
    import pickle

    from conftest import deploy_bytes, deploy_model_meta

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    blob = pickle.dumps(Exploit())
    deploy_bytes(deployed_workspace, blob)
    deploy_model_meta(
        deployed_workspace, lambda meta: {**meta, "model_sha256": hashlib.sha256(blob).hexdigest()}
    )
    for path in ("/health", "/scoring", "/prediction?filepath=testdata/testdata.csv", "/summarystats"):
        assert requests.get(f"{server}{path}", timeout=30).status_code == 200, path
    assert not marker.exists()
