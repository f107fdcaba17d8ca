"""`isthmus run` as a process: clean stop, draining, rejected configs; the samples command."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from isthmus.cli.demo import DEMO_CONFIG
from isthmus.control.build import build
from isthmus.samples.tcp_echo import start_tcp_echo
from isthmus.snapshot import Call, simulate
from isthmus.translate.identity import GatewayIdentity
from tests.e2e.harness import background, free_port, isthmus_run, tcp_gateway, write_config


def test_sigterm_drains_open_connections_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    with background() as bg:
        echo = bg.run(start_tcp_echo(0, "e"))
        backend = echo.sockets[0].getsockname()[1]
        config = write_config(tmp_path, tcp_gateway(port, [("v1", backend, "127.0.0.1")]))
        with isthmus_run(config) as gw:
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"before\n")
            assert conn.recv(64) == b"e before\n"
            gw.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # listeners closed, our connection still relayed while draining
            refused = False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except ConnectionRefusedError:
                refused = True
            conn.sendall(b"during\n")
            assert conn.recv(64) == b"e during\n"
            assert refused
            assert gw.proc.wait(timeout=15) == 0
            conn.close()
        assert any("draining 1 connection" in line for line in gw.output)


def test_invalid_config_is_rejected_with_file_line_and_field(tmp_path: Path) -> None:
    port = free_port()
    text = tcp_gateway(port, [("v1", 1, "127.0.0.1")]).replace("number: 9000}", "number: 0}")
    config = write_config(tmp_path, text)
    proc = subprocess.run(
        [sys.executable, "-m", "isthmus", "run", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "config rejected" in proc.stderr
    assert (
        f"{config / 'config.yaml'}:26: VirtualService default/app: "
        "spec.tcp[0].route[0].destination.port.number: expected a port number between 1 "
        "and 65535, got 0"
    ) in proc.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, tcp_gateway(port, [("v1", 1, "127.0.0.1")]))
        proc = subprocess.run(
            [sys.executable, "-m", "isthmus", "run", "-f", str(config), "--bind", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1
    assert f"listener 0.0.0.0_{port}: cannot bind 127.0.0.1:{port}" in proc.stderr


def test_samples_tcp_echo_command() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "isthmus",
            "samples",
            "tcp-echo",
            "--port",
            str(port),
            "--prefix",
            "one",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "tcp-echo 'one'" in proc.stdout.readline()
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with conn:
            conn.sendall(b"hello\nworld\n")
            reader = conn.makefile("rb")
            assert reader.readline() == b"one hello\n"
            assert reader.readline() == b"one world\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_demo_config_builds_clean_with_the_80_20_split() -> None:
    result = build([DEMO_CONFIG], GatewayIdentity())
    assert result.snapshot is not None
    assert result.diagnostics == []
    routed = simulate(result.snapshot, Call(31400))
    assert [(d.cluster.split("|")[2], d.share) for d in routed.destinations] == [
        ("v1", 0.8),
        ("v2", 0.2),
    ]
    assert [e.port for c in routed.clusters for e in c.endpoints] == [9001, 9002]
