"""The API at the socket, against gunicorn as `make serve` runs it (issue 20): deadlines on every
byte of a request's body and of its answer, 413 at once for a declared or chunked size over the
limit, "100 Continue" only within it, HTTP/1.0 and 1.1 only, proxy headers from nobody."""

import socket
import time

import pytest
import requests
from conftest import client_frame, copy_template

from attrition.api.server import free_port, start_api_server, stop_process

pytestmark = pytest.mark.slow  # a real server: make test, not make test-fast

BODY_SECONDS = 2.0  # the deadlines of the server below: short, so that the tests are
ANSWER_SECONDS = 2.0
LIMIT = 100_000


@pytest.fixture(scope="module")
def served(deployed_template, tmp_path_factory):
    """(port, workspace) of a gunicorn with 2-second deadlines and a 100 kB body limit, and a
    100,000-row data file whose answer is larger than the sockets' buffers."""
    workspace = copy_template(deployed_template, tmp_path_factory.mktemp("sockets") / "ws")
    workspace.set_config(
        api_max_body_bytes=LIMIT, api_body_seconds=BODY_SECONDS, api_answer_seconds=ANSWER_SECONDS
    )
    big = workspace.path("test_data_path") / "big.csv"
    client_frame(100_000, seed=3).to_csv(big, index=False)
    workspace.set_config(api_max_body_bytes=big.stat().st_size + 1)  # a file may be as large as a body
    port = free_port()
    process = start_api_server(
        "127.0.0.1", port, workspace.root / "gunicorn.log", workers=2, env=workspace.env
    )
    yield port, workspace
    stop_process(process)
    log = (workspace.root / "gunicorn.log").read_text()
    assert "Traceback" not in log, log[-3000:]


def connect(port: int, timeout: float = 30.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)  # timeout: a hang guard


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """(the head, everything after it) until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def post_head(length: int, extra: str = "", path: str = "/prediction") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def test_a_half_sent_body_is_408_and_closed_after_the_deadline(served):
    port, _ = served
    with connect(port) as sock:
        sock.sendall(post_head(100) + b"x")
        started = time.monotonic()
        head, body = read_answer(sock)  # ends only when the server closes the connection
    assert head.startswith(b"HTTP/1.1 408") and b"Connection: close" in head, head
    assert b"did not arrive whole within 2 s" in body
    assert time.monotonic() - started >= BODY_SECONDS * 0.9  # not refused before its time


def test_a_trickled_body_gets_no_more_than_the_deadline(served):
    """One byte every 0.2 s keeps every read alive; the deadline is on the whole body."""
    port, _ = served
    with connect(port) as sock:
        sock.sendall(post_head(1000))
        sent = 0
        try:
            while sent < 1000:
                sock.sendall(b"1")
                sent += 1
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        head, _ = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 408"), head
    assert sent < 1000 * 0.5  # cut off long before the client finished


@pytest.mark.parametrize("path", ["/prediction", "/health"])
def test_a_declared_length_over_the_limit_is_413_at_once_and_nothing_read(served, path):
    port, workspace = served
    limit = workspace.path("test_data_path").joinpath("big.csv").stat().st_size + 1
    with connect(port) as sock:
        sock.sendall(post_head(limit + 1, "Expect: 100-continue\r\n", path))
        head, body = read_answer(sock)  # no "100 Continue" first, and closed without a byte of body
    assert head.startswith(b"HTTP/1.1 413") and b"Connection: close" in head, head
    assert b"api_max_body_bytes" in body


def test_100_continue_only_for_a_length_within_the_limit(served):
    port, _ = served
    rows = b"lastmonth_activity,lastyear_activity,number_of_employees\n1,2,3\n"
    with connect(port) as sock:
        sock.sendall(post_head(len(rows), "Expect: 100-continue\r\nConnection: close\r\n"))
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(rows)
        head, body = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 200") and b'"predictions":[' in body


def test_100_continue_then_no_body_is_408_after_the_deadline(served):
    port, _ = served
    with connect(port) as sock:
        sock.sendall(post_head(100, "Expect: 100-continue\r\n"))
        head, rest = read_answer(sock)
    assert head == b"HTTP/1.1 100 Continue" and rest.startswith(b"HTTP/1.1 408"), (head, rest[:100])


def test_a_chunk_over_the_limit_is_413_as_soon_as_its_size_is_read(served):
    port, _ = served
    with connect(port) as sock:
        sock.sendall(
            b"POST /prediction HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
            b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\nabc"
        )
        started = time.monotonic()
        head, _ = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 413") and b"Connection: close" in head, head
    assert time.monotonic() - started < BODY_SECONDS  # not the body deadline: at once


def test_a_body_the_route_does_not_read_closes_the_connection(served):
    """Nothing drains what nobody asked for: the answer, then the connection ends."""
    port, _ = served
    with connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nContent-Length: 50000\r\n\r\n" + b"x" * 10)
        head, _ = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head, head


def test_an_answer_nobody_reads_is_abandoned(served):
    port, _ = served
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little room: the server must wait
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    with sock:
        sock.sendall(
            b"GET /prediction?filepath=testdata/big.csv&proba=1&reasons=1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        first = sock.recv(4096)
        length = int(first.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        time.sleep(ANSWER_SECONDS + 2)  # the client reads nothing meanwhile
        received = len(first.partition(b"\r\n\r\n")[2])
        try:
            while chunk := sock.recv(65536):
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < length, (received, length)  # the server gave up on the rest


@pytest.mark.parametrize("version", [b"HTTP/1.2", b"HTTP/1.9"])
def test_unknown_http_versions_are_refused(served, version):
    port, _ = served
    with connect(port) as sock:
        sock.sendall(b"GET /health " + version + b"\r\nHost: localhost\r\n\r\n")
        head, body = read_answer(sock)
    assert head.startswith(b"HTTP/1.1 400") and b"Invalid HTTP Version" in body, head


def test_proxy_headers_from_a_client_are_not_believed(served):
    """SCRIPT_NAME and X-Forwarded-Proto move links, redirects and the Secure flag: only a
    configured proxy (api_trusted_proxies) may send them."""
    port, _ = served
    answer = requests.get(
        f"http://127.0.0.1:{port}/clients",
        headers={"SCRIPT_NAME": "/evil", "X-Forwarded-Proto": "https", "Accept": "text/html"},
        timeout=10,
    )
    assert answer.status_code == 200 and "/evil" not in answer.text and "https:" not in answer.text


def test_a_connection_with_requests_waiting_does_not_keep_its_worker(served):
    """A client pipelines 40 requests; another sends one just after. The other is answered in its
    turn, not after all 40: each answer gives the worker's other connections a turn
    (deadlines.TimedAnswer.close). Without it a connection whose next request had already arrived kept
    its worker, and under four keep-alive clients p99 was 300-500 ms (the latency itself is
    measured by benchmarks/bench_api.py beside the sync workers')."""
    _, workspace = served
    port = free_port()
    process = start_api_server(
        "127.0.0.1", port, workspace.root / "one-worker.log", workers=1, env=workspace.env
    )
    try:
        with connect(port) as busy, connect(port) as other:
            request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
            busy.sendall(request * 40)
            other.sendall(request)
            assert other.recv(65536).startswith(b"HTTP/1.1 200")
            busy.setblocking(False)
            answered_before = 0
            try:
                answered_before = busy.recv(1 << 20).count(b"HTTP/1.1 200")
            except BlockingIOError:
                pass
    finally:
        stop_process(process)
    assert answered_before < 20, answered_before


SECURITY = (b"X-Content-Type-Options: nosniff", b"X-Frame-Options: DENY", b"Cache-Control: no-store")


@pytest.mark.parametrize(
    "request_bytes",
    [
        post_head(10**9),  # the deadline middleware's 413, before the app
        b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n",  # gunicorn's own 414
        b"GET /health HTTP/1.1\r\nHost: localhost\r\n" + b"X-A: b\r\n" * 60 + b"\r\n",  # gunicorn's 431
        b"GET /health HTTP/1.2\r\nHost: localhost\r\n\r\n",  # gunicorn's 400 for the version
    ],
    ids=["413 middleware", "414 gunicorn", "431 gunicorn", "400 gunicorn"],
)
def test_refusals_before_the_app_carry_the_security_headers(served, request_bytes):
    port, _ = served
    with connect(port) as sock:
        sock.sendall(request_bytes)
        head, body = read_answer(sock)
    assert b"Content-Type: application/json" in head and all(header in head for header in SECURITY), head
    assert body.startswith(b'{"error":')


def test_an_absolute_form_target_is_judged_by_its_own_host(served):
    """GET http://evil.example/... with Host: localhost beside it: the target's host decides (RFC
    9112), and it is not on the allowlist."""
    port, _ = served
    for target, host, status in (
        ("http://evil.example/health", "localhost", b"400"),
        (f"http://127.0.0.1:{port}/health", "evil.example", b"200"),
    ):
        with connect(port) as sock:
            sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head, _ = read_answer(sock)
        assert head.split(b" ")[1] == status, (target, head)


def test_connection_keep_alive_close_closes(served):
    port, _ = served
    with connect(port, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, close\r\n\r\n")
        started = time.monotonic()
        head, _ = read_answer(sock)  # returns only when the server closes the connection
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head, head
    assert time.monotonic() - started < 4  # closed after the answer, not after gunicorn's keepalive (5 s)
