"""The API under a crowd (issue 33), gunicorn as `make serve` runs it, at full scale.

Prints, beside the floor of /health on an idle server:
  - /health latency from another address while one address opens 10,000 connections that each
    sent their headers and one byte of a 100-byte body (how many were refused 503 at once);
  - the same while 40 addresses hold 4,000 such connections between them;
  - the workers' memory (RSS, from /proc) before, at the peak and after 200 clients upload the
    100,000-row CSV with ?proba=1&reasons=1 and never read their answers.
Client addresses are loopback addresses (Linux routes all of 127.0.0.0/8 to lo).
Run
    python benchmarks/bench_crowd.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import harness  # noqa: E402
from bench_api import prepare  # noqa: E402

from attrition.api.server import start_api_server, stop_process  # noqa: E402

HALF_SENT = (
    b"POST /prediction HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\nContent-Length: 100\r\n\r\nx"
)


def connect(port: int, source: str, timeout: float = 30.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))


def health_ms(port: int, source: str = "127.0.0.2", times: int = 10) -> list[float]:
    """/health latencies (ms) from source, one connection each."""
    latencies = []
    for _ in range(times):
        started = time.perf_counter()
        with connect(port, source) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def hold(port: int, sources: list[str], each: int) -> tuple[list[socket.socket], int]:
    """each half-sent bodies from every source; (the sockets, how many were refused 503 at once)."""
    held, refused = [], 0
    for source in sources:
        for _ in range(each):
            try:
                sock = connect(port, source, timeout=5)
                sock.sendall(HALF_SENT)
            except OSError:
                refused += 1
                continue
            held.append(sock)
    time.sleep(1)
    for sock in held:
        sock.setblocking(False)
        try:
            refused += sock.recv(16).startswith(b"HTTP/1.1 503")
        except (BlockingIOError, OSError):
            pass
    return held, refused


def worker_rss_mib(master_pid: int) -> list[float]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return sizes


def slow_readers(port: int, body: bytes, clients: int) -> list[socket.socket]:
    """clients uploads of body to /prediction?proba=1&reasons=1 that never read the answer."""
    head = (
        "POST /prediction?proba=1&reasons=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/csv\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    held = []
    for number in range(clients):
        sock = connect(port, f"127.0.2.{number % 200 + 1}")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(head + body)
        held.append(sock)
    return held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    figures = {"machine": harness.machine()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = prepare(root)
        big = root / "testdata" / "big.csv"
        rows = (root / "testdata" / "testdata.csv").read_text().splitlines(keepends=True)
        big.write_text(rows[0] + "".join(rows[1 + i % (len(rows) - 1)] for i in range(100_000)))
        port = harness.free_port()
        process = start_api_server(
            "127.0.0.1", port, root / "gunicorn.log", workers=2, env=harness.env_for(config)
        )
        try:
            figures["health_idle_ms"] = max(health_ms(port))
            held, refused = hold(port, ["127.0.0.1"], 10_000)
            figures["one_address_10000"] = {"refused_503": refused, "health_max_ms": max(health_ms(port))}
            for sock in held:
                sock.close()
            time.sleep(2)
            sources = [f"127.0.1.{n}" for n in range(1, 41)]
            held, refused = hold(port, sources, 100)
            figures["forty_addresses_4000"] = {"refused_503": refused, "health_max_ms": max(health_ms(port))}
            for sock in held:
                sock.close()
            time.sleep(8)
            baseline = worker_rss_mib(process.pid)
            readers = slow_readers(port, big.read_bytes(), 200)
            peak = baseline
            for _ in range(20):
                time.sleep(1)
                peak = [max(a, b) for a, b in zip(peak, worker_rss_mib(process.pid), strict=False)]
            for sock in readers:
                sock.close()
            time.sleep(40)  # past api_answer_seconds (30 s): every abandoned answer is gone
            after = worker_rss_mib(process.pid)
            figures["slow_readers_rss_mib"] = {
                "baseline": [round(x) for x in baseline],
                "peak": [round(x) for x in peak],
                "after": [round(x) for x in after],
            }
        finally:
            stop_process(process)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
