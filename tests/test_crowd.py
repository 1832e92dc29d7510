"""The API under a crowd (issue 33), against gunicorn as `make serve` runs it, with its limits
scaled down by configuration so that each case runs in seconds: 2 workers of 300 connections
(production: 4,000 each), at most 40 open connections per client address and worker (64), a body
that stops for 1 s is shed (5 s). Other client addresses are other loopback addresses (Linux
routes all of 127.0.0.0/8 to lo), so one address's crowd and everyone else can be told apart.
`make bench` measures the same cases at full scale (docs/api.md: Limits).
"""

import http.client
import os
import signal
import socket
import time

import pytest
import requests
from conftest import client_frame, copy_template

from attrition.api.server import (
    connections_by_worker,
    free_port,
    start_api_server,
    stop_process,
    wait_for_every_worker,
    worker_pids,
)

pytestmark = pytest.mark.slow  # a real server: make test, not make test-fast

WORKERS, SLOTS, PER_ADDRESS = 2, 300, 40
ANSWER_BUDGET = 8_000_000  # bytes of unread answers a worker holds: one answer for 100,000 rows
STALL = 1.0  # the whole body keeps its production deadline, api_body_seconds (30 s)


@pytest.fixture(scope="module")
def crowded(deployed_template, tmp_path_factory):
    workspace = copy_template(deployed_template, tmp_path_factory.mktemp("crowd") / "ws")
    workspace.set_config(
        api_worker_connections=SLOTS,
        api_connections_per_address=PER_ADDRESS,
        api_body_stall_seconds=STALL,
        api_max_answer_bytes=ANSWER_BUDGET,
    )
    client_frame(100_000, seed=3).to_csv(workspace.path("test_data_path") / "big.csv", index=False)
    port = free_port()
    log = workspace.root / "gunicorn.log"
    process = start_api_server("127.0.0.1", port, log, workers=WORKERS, env=workspace.env)
    yield port
    stop_process(process)
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]


def connect(port: int, source: str = "127.0.0.1", timeout: float = 20.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def half_sent(port: int, source: str) -> socket.socket:
    """A connection that sent its headers and 1 byte of a 100-byte body, then nothing."""
    sock = connect(port, source)
    head = (
        b"POST /prediction HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\nContent-Length: 100\r\n"
    )
    sock.sendall(head + b"\r\nx")
    return sock


def answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def health(port: int, source: str) -> bytes:
    """/health from another address; the socket's timeout is a hang guard (make bench times it)."""
    with connect(port, source, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return answer(sock)


def test_one_address_cannot_take_every_slot(crowded):
    """1,000 half-sent bodies from one address against 600 slots: beyond its cap (40 a worker) each
    is answered 503 with Retry-After at once, and another address is served meanwhile."""
    port = crowded
    held = [half_sent(port, "127.0.0.1") for _ in range(1000)]
    try:
        for sock in held:
            sock.settimeout(0.5)
        refused = 0
        for sock in held:
            try:
                data = sock.recv(4096)
            except TimeoutError:
                continue  # held: its body is still awaited
            refused += data.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in data
        assert refused >= 1000 - WORKERS * PER_ADDRESS
        for _ in range(5):
            assert health(port, "127.0.0.2").startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()


def test_forty_addresses_holding_bodies_leave_health_answering_and_are_shed(crowded):
    """40 addresses hold 400 half-sent bodies between them (10 each, under the cap): /health still
    answers, and each stalled body is 408 within seconds (its rate floor: 100 bytes are due within
    STALL + 100 / api_body_min_rate seconds), not after the whole body's 30 s."""
    port = crowded
    started = time.monotonic()
    held = [half_sent(port, f"127.0.1.{address}") for address in range(1, 41) for _ in range(10)]
    try:
        assert health(port, "127.0.0.2").startswith(b"HTTP/1.1 200")
        answers = [answer(sock) for sock in held]
        assert all(data.startswith(b"HTTP/1.1 408") for data in answers), {data[:40] for data in answers}
        assert time.monotonic() - started < 10 * STALL  # shed within seconds, not held for 30 s
    finally:
        for sock in held:
            sock.close()


def test_a_body_that_stops_is_shed_by_the_stall_deadline(crowded):
    """A large declared body that stops after its first bytes: 408 'stopped' after STALL seconds
    of silence; a body that keeps coming is read whole."""
    port = crowded
    with connect(port, "127.0.0.3") as sock:
        sock.sendall(
            b"POST /prediction HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
            b"Content-Length: 1000000\r\n\r\n" + b"lastmonth_activity," * 100
        )
        data = answer(sock)
    assert data.startswith(b"HTTP/1.1 408") and b"stopped for 1 s" in data, data[:300]


def test_answers_nobody_reads_are_bounded_in_bytes(crowded):
    """Six clients ask for 100,000 rows' predictions, probabilities and reasons (about 7 MB each)
    and never read: a worker holds at most ANSWER_BUDGET bytes of them, the rest are 503 with
    Retry-After at once (their memory freed then, not after api_answer_seconds); once the
    clients are gone the budget is free again."""
    port = crowded
    ask = b"GET /prediction?filepath=testdata/big.csv&proba=1&reasons=1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    readers = []
    for number in range(6):
        sock = connect(port, f"127.0.3.{number + 1}")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(ask)
        readers.append(sock)
    try:
        heads = []
        for sock in readers:
            sock.settimeout(15)
            heads.append(sock.recv(4096))
        refused = [head for head in heads if head.startswith(b"HTTP/1.1 503")]
        assert len(refused) >= 6 - WORKERS, [head[:20] for head in heads]
        assert all(b"Retry-After: 1" in head for head in refused), refused
    finally:
        for sock in readers:
            sock.close()
    time.sleep(1)  # the closed clients' answers are abandoned at their next write
    with connect(port, "127.0.3.9") as sock:
        sock.sendall(ask.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        assert answer(sock).startswith(b"HTTP/1.1 200")


def test_one_throttle_for_every_worker_of_a_real_server(deployed_template, tmp_path):
    """Wrong Bearer tokens on separate connections (spread over both workers by the kernel) and a
    wrong sign-in count together: the sixth credential from that address, the right one, is 429
    on whichever worker takes it; another address is served."""
    workspace = copy_template(deployed_template, tmp_path / "ws")
    port = free_port()
    env = {**workspace.env, "RISK_API_TOKEN": "s3cret"}
    process = start_api_server("127.0.0.1", port, tmp_path / "gunicorn.log", workers=WORKERS, env=env)
    try:

        def ask(token: str, source: str = "127.0.4.1") -> bytes:
            with connect(port, source, timeout=10) as sock:
                sock.sendall(
                    f"GET /scoring HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                return answer(sock)

        statuses = [ask(f"guess{number}")[9:12] for number in range(4)]
        with connect(port, "127.0.4.1", timeout=10) as sock:
            form = b"token=guess5"
            sock.sendall(
                b"POST /login HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n"
                + f"Content-Length: {len(form)}\r\n\r\n".encode()
                + form
            )
            statuses.append(answer(sock)[9:12])
        assert statuses == [b"401"] * 5
        for _ in range(4):  # both workers refuse, whichever takes the connection
            assert ask("s3cret")[9:12] == b"429"
        assert ask("s3cret", source="127.0.4.2")[9:12] == b"200"
    finally:
        stop_process(process)


def test_sessions_end_and_named_files_are_honoured_on_a_real_server(deployed_template, tmp_path):
    """Against gunicorn's two workers: a copy of the session cookie taken before the sign-out is
    nobody on any connection afterwards; a cross-site sign-out is 403; a GET with a JSON body
    naming a data file (as a course client sends it) answers for that file and names it."""
    workspace = copy_template(deployed_template, tmp_path / "ws")
    port = free_port()
    env = {**workspace.env, "RISK_API_TOKEN": "s3cret"}
    process = start_api_server("127.0.0.1", port, tmp_path / "gunicorn.log", workers=WORKERS, env=env)
    base, site = f"http://127.0.0.1:{port}", {"Origin": f"http://127.0.0.1:{port}"}
    try:
        with requests.Session() as browser:
            signed = browser.post(
                f"{base}/login", data={"token": "s3cret"}, headers=site, allow_redirects=False
            )
            assert signed.status_code == 303
            copy = browser.cookies.get("risk_session")
            evil = browser.post(
                f"{base}/logout", headers={"Origin": "http://evil.example"}, allow_redirects=False
            )
            assert evil.status_code == 403 and browser.get(f"{base}/scoring").status_code == 200
            assert browser.post(f"{base}/logout", headers=site, allow_redirects=False).status_code == 303
        for _ in range(4):  # new connections: both workers
            assert requests.get(f"{base}/scoring", cookies={"risk_session": copy}).status_code == 401
        bearer = {"Authorization": "Bearer s3cret"}
        course_client = {"filepath": "ingesteddata/finaldata.csv"}
        named = requests.get(f"{base}/prediction", json=course_client, headers=bearer)
        assert named.status_code == 200 and named.json()["data"] == "ingesteddata/finaldata.csv"
        rows = len((workspace.path("output_folder_path") / "finaldata.csv").read_text().splitlines()) - 1
        assert len(named.json()["predictions"]) == rows
    finally:
        stop_process(process)


def test_kept_connections_are_shared_evenly_by_the_workers(deployed_template, tmp_path):
    """40 clients that keep their connections (as a browser, a client's pool or wrk do), one after
    another, then 40 at once, each asking for predictions as soon as it is connected: the two
    workers hold half of them each, give or take 2. The first worker awake used to take a
    connection for good: 64 split 53/11 and 4 split 4/0 or 3/1 under wrk, one worker serving
    most clients while the other had nothing to do."""
    workspace = copy_template(deployed_template, tmp_path / "ws")
    port = free_port()
    server = start_api_server("127.0.0.1", port, tmp_path / "gunicorn.log", workers=2, env=workspace.env)
    ask = b"GET /prediction?filepath=testdata/testdata.csv HTTP/1.1\r\nHost: localhost\r\n\r\n"
    clients = []
    try:
        wait_for_every_worker(server, "127.0.0.1", port, workers=2)
        for _ in range(40):
            clients.append(connect(port))
            clients[-1].sendall(ask)
            assert clients[-1].recv(65536).startswith(b"HTTP/1.1 200")
        sequential = connections_by_worker(server.pid, port)
        burst = [connect(port) for _ in range(40)]
        for sock in burst:
            sock.sendall(ask)
        for sock in burst:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        clients += burst
        both = connections_by_worker(server.pid, port)
        assert max(sequential[0] - sequential[-1], both[0] - both[-1]) <= 2, (sequential, both)
    finally:
        for sock in clients:
            sock.close()
        stop_process(server)


def test_a_worker_that_restarts_gets_its_share_back(deployed_template, tmp_path):
    """Eight clients keep connections to two workers; one worker is killed. Its clients reconnect
    to the other while gunicorn's new worker loads the app, so one worker holds all eight. The
    crowded worker then asks one client a second to reconnect (an answer with Connection: close)
    until the two hold them within 2 of each other (without it they stayed 8/0 for good)."""
    workspace = copy_template(deployed_template, tmp_path / "ws")
    port = free_port()
    server = start_api_server("127.0.0.1", port, tmp_path / "gunicorn.log", workers=2, env=workspace.env)
    clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(8)]

    def ask_each() -> set:
        answers = set()
        for client in clients:
            for _ in range(2):  # a connection its killed worker left broken: once more
                try:
                    client.request("GET", "/health")
                    answer = client.getresponse()
                    answer.read()
                    answers.add((answer.status, answer.getheader("Connection")))
                    break
                except (ConnectionError, http.client.HTTPException):
                    client.close()
        return answers

    try:
        wait_for_every_worker(server, "127.0.0.1", port, workers=2)
        ask_each()
        assert connections_by_worker(server.pid, port) == [4, 4]
        os.kill(int(worker_pids(server.pid)[0]), signal.SIGKILL)
        ask_each()
        assert connections_by_worker(server.pid, port)[0] == 8  # the new worker is still loading
        seen, deadline = set(), time.monotonic() + 30
        while time.monotonic() < deadline:
            seen |= ask_each()
            held = connections_by_worker(server.pid, port)
            if len(held) == 2 and sum(held) == 8 and held[0] - held[-1] <= 2:
                break
            time.sleep(0.1)
        assert held[0] - held[-1] <= 2, held
        assert (200, "close") in seen and all(status == 200 for status, _ in seen), seen
    finally:
        for client in clients:
            client.close()
        stop_process(server)
