"""Seeds 000 and 001 served end to end by a real `isthmus run` process."""

from __future__ import annotations

import collections
import socket
from pathlib import Path

from isthmus.samples.tcp_echo import start_tcp_echo
from tests.e2e.harness import background, free_port, isthmus_run

DATA = Path(__file__).parent.parent / "data"
CONNECTIONS = 2000


def ask(port: int, line: bytes = b"hello") -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(line + b"\n")
        return s.makefile("rb").readline().decode().strip()


def workload_entries(v1: int, v2: int) -> str:
    return "".join(
        f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: tcp-echo-{v}, namespace: default}}
spec:
  address: 127.0.0.1
  ports: {{tcp: {port}}}
  labels: {{app: tcp-echo, version: {v}}}
"""
        for v, port in (("v1", v1), ("v2", v2))
    )


def split(port: int) -> dict[str, float]:
    counts = collections.Counter(ask(port).split()[0] for _ in range(CONNECTIONS))
    return {k: 100.0 * n / CONNECTIONS for k, n in counts.items()}


def test_seed_001_weighted_split_and_changed_weights(tmp_path: Path) -> None:
    gateway_port = free_port()
    seed = (DATA / "seeds" / "001" / "tcp-echo.yaml").read_text()
    with background() as bg:
        one = bg.run(start_tcp_echo(0, "one"))
        two = bg.run(start_tcp_echo(0, "two"))
        ports = [s.sockets[0].getsockname()[1] for s in (one, two)]
        (tmp_path / "tcp-echo.yaml").write_text(seed.replace("31400", str(gateway_port)))
        (tmp_path / "workloads.yaml").write_text(workload_entries(*ports))

        with isthmus_run(tmp_path):
            assert ask(gateway_port, b"ping") in ("one ping", "two ping")
            shares = split(gateway_port)
        assert set(shares) == {"one", "two"}
        assert abs(shares["one"] - 80) <= 4, shares

        text = (tmp_path / "tcp-echo.yaml").read_text()
        (tmp_path / "tcp-echo.yaml").write_text(
            text.replace("weight: 80", "weight: 50").replace("weight: 20", "weight: 50")
        )
        with isthmus_run(tmp_path):
            shares = split(gateway_port)
        assert abs(shares["one"] - 50) <= 4, shares


def test_seed_000_corrected_moves_bytes_both_ways(tmp_path: Path) -> None:
    gateway_port = free_port()
    text = (DATA / "corrected" / "000" / "tcp.yaml").read_text()
    with background() as bg:
        app = bg.run(start_tcp_echo(0, "tcp-app"))
        app_port = app.sockets[0].getsockname()[1]
        # Same config, on ports this machine has free: the gateway port and the app's port.
        text = text.replace("31400", str(gateway_port)).replace("8080", str(app_port))
        (tmp_path / "tcp.yaml").write_text(text)
        with isthmus_run(tmp_path) as gw:
            assert ask(gateway_port, b"from a client") == "tcp-app from a client"
        assert any(f"127.0.0.1:{gateway_port}" in line for line in gw.output)
