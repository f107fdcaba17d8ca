"""The upstream connection pool: keep-alive reuse, maxRequestsPerConnection, and Envoy's
circuit breakers (maxConnections + http1MaxPendingRequests)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from tests.e2e.harness import free_port, isthmus_run, thread_server
from tests.e2e.http_util import http_gateway, http_service, request, virtual_service


class CountingBackend:
    """Counts connections; answers every request after ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.connections = 0
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, conn: socket.socket) -> None:
        with self.lock:
            self.connections += 1
        reader = conn.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                return
            while reader.readline() not in (b"\r\n", b""):
                pass
            time.sleep(self.delay)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


def config(port: int, backend: int, policy: str) -> str:
    return (
        http_gateway(port)
        + virtual_service("  - route: [{destination: {host: app, port: {number: 80}}}]\n")
        + http_service("app", [(backend, "v1")])
        + f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app, namespace: default}}
spec:
  host: app
  trafficPolicy:
    connectionPool:
{policy}"""
    )


def test_keep_alive_reuse_and_max_requests_per_connection(tmp_path: Path) -> None:
    port = free_port()
    counter = CountingBackend()
    with thread_server(counter) as backend:
        policy = "      http: {maxRequestsPerConnection: 5}\n"
        (tmp_path / "c.yaml").write_text(config(port, backend.port, policy))
        with isthmus_run(tmp_path):
            for _ in range(20):
                assert request(port, "/").status == 200
    assert counter.connections == 4


def test_circuit_breaker_pending_then_overflow(tmp_path: Path) -> None:
    port = free_port()
    counter = CountingBackend(delay=1.0)
    with thread_server(counter) as backend:
        policy = "      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 1}\n"
        (tmp_path / "c.yaml").write_text(config(port, backend.port, policy))
        with isthmus_run(tmp_path):
            results: list[tuple[int, bytes]] = []

            def client() -> None:
                r = request(port, "/", timeout=20)
                results.append((r.status, r.body))

            threads = [threading.Thread(target=client) for _ in range(3)]
            for t in threads:
                t.start()
                time.sleep(0.1)
            for t in threads:
                t.join(timeout=30)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 503]
    overflow = next(body for status, body in results if status == 503)
    assert overflow.endswith(b"reset reason: overflow")
    assert counter.connections == 1
