"""Live config: file changes reload without a restart, broken updates are rejected while the
last good config keeps serving, listeners come and go, open connections survive."""

from __future__ import annotations

import collections
import signal
import socket
import time
from pathlib import Path

from isthmus.samples.tcp_echo import start_tcp_echo
from tests.e2e.harness import background, free_port, isthmus_run, tcp_gateway

DEADLINE = 15.0


def ask(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"x\n")
        return s.makefile("rb").readline().decode().split()[0]


def share_of_one(port: int, n: int = 400) -> float:
    counts = collections.Counter(ask(port) for _ in range(n))
    return counts["one"] / n


def wait_for(predicate, timeout: float = DEADLINE) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_weights_change_live_and_open_connections_survive(tmp_path: Path) -> None:
    port = free_port()
    with background() as bg:
        one = bg.run(start_tcp_echo(0, "one")).sockets[0].getsockname()[1]
        two = bg.run(start_tcp_echo(0, "two")).sockets[0].getsockname()[1]
        backends = [("v1", one, "127.0.0.1"), ("v2", two, "127.0.0.1")]
        config = tmp_path / "c.yaml"
        config.write_text(tcp_gateway(port, backends, weights=[100, 0]))
        with isthmus_run(tmp_path) as gw:
            long_lived = socket.create_connection(("127.0.0.1", port), timeout=10)
            long_lived.sendall(b"before\n")
            reader = long_lived.makefile("rb")
            assert reader.readline() == b"one before\n"
            config.write_text(tcp_gateway(port, backends, weights=[0, 100]))
            assert wait_for(lambda: ask(port) == "two"), "".join(gw.output)
            assert share_of_one(port, 100) == 0.0
            long_lived.sendall(b"after\n")  # opened on the old weights, still relayed
            assert reader.readline() == b"one after\n"
            long_lived.close()
        assert any("reloaded (files changed)" in line for line in gw.output)


def test_broken_updates_are_rejected_and_the_old_config_serves(tmp_path: Path) -> None:
    port = free_port()
    with background() as bg:
        one = bg.run(start_tcp_echo(0, "one")).sockets[0].getsockname()[1]
        config = tmp_path / "c.yaml"
        good = tcp_gateway(port, [("v1", one, "127.0.0.1")])
        config.write_text(good)
        with isthmus_run(tmp_path) as gw:
            broken = [
                good.replace("weight", "wieght") + "\nkind: [",  # not YAML
                good.replace("number: 9000}", 'number: "x"}'),  # invalid field
                good.replace("kind: VirtualService", "kind: VirtualServise"),  # unknown kind
            ]
            for i, text in enumerate(broken):
                config.write_text(text)
                assert wait_for(
                    lambda i=i: sum("rejected update" in line for line in gw.output) > i
                ), "".join(gw.output)
                assert ask(port) == "one"
        output = "".join(gw.output)
        assert "still serving config" in output
        assert "VirtualService default/app: spec.tcp[0].route[0].destination.port.number" in output


def test_listeners_added_and_removed(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    with background() as bg:
        one = bg.run(start_tcp_echo(0, "one")).sockets[0].getsockname()[1]
        backends = [("v1", one, "127.0.0.1")]
        config = tmp_path / "c.yaml"
        config.write_text(tcp_gateway(first, backends))
        with isthmus_run(tmp_path, "--drain-seconds", "30"):
            open_before = socket.create_connection(("127.0.0.1", first), timeout=10)
            config.write_text(tcp_gateway(second, backends))
            assert wait_for(lambda: _accepts(second))
            assert wait_for(lambda: not _accepts(first))
            open_before.sendall(b"still\n")  # draining, not cut
            assert open_before.makefile("rb").readline() == b"one still\n"
            open_before.close()


def _accepts(port: int) -> bool:
    try:
        return ask(port) == "one"
    except OSError:
        return False


def test_sighup_reloads(tmp_path: Path) -> None:
    port = free_port()
    with background() as bg:
        one = bg.run(start_tcp_echo(0, "one")).sockets[0].getsockname()[1]
        two = bg.run(start_tcp_echo(0, "two")).sockets[0].getsockname()[1]
        backends = [("v1", one, "127.0.0.1"), ("v2", two, "127.0.0.1")]
        config = tmp_path / "c.yaml"
        config.write_text(tcp_gateway(port, backends, weights=[100, 0]))
        with isthmus_run(tmp_path, "--no-watch") as gw:
            config.write_text(tcp_gateway(port, backends, weights=[0, 100]))
            time.sleep(1.5)
            assert ask(port) == "one"  # not watching
            gw.proc.send_signal(signal.SIGHUP)
            assert wait_for(lambda: ask(port) == "two")
