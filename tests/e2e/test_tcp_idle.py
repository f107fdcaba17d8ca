"""Many idle connections held through the gateway with bounded memory."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from isthmus.samples.tcp_echo import start_tcp_echo
from tests.e2e.harness import (
    background,
    free_port,
    isthmus_run,
    raise_fd_limit,
    tcp_gateway,
    write_config,
)

IDLE = 1000
MAX_KIB_PER_CONNECTION = 32


@pytest.mark.parametrize(
    "extra", [pytest.param((), id="splice"), pytest.param(("--no-splice",), id="asyncio")]
)
def test_thousand_idle_connections_bounded_memory(
    tmp_path: Path, extra: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    raise_fd_limit()
    port = free_port()
    with background() as bg:
        echo = bg.run(start_tcp_echo(0, "idle"))
        backend = echo.sockets[0].getsockname()[1]
        config = write_config(tmp_path, tcp_gateway(port, [("v1", backend, "127.0.0.1")]))
        with isthmus_run(config, *extra) as gw, contextlib.ExitStack() as stack:
            warm = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            warm.sendall(b"warm\n")
            assert warm.recv(64) == b"idle warm\n"
            before = gw.rss_kib()
            conns = []
            for i in range(IDLE):
                s = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
                s.sendall(b"%d\n" % i)
                conns.append(s)
            for i, s in enumerate(conns):  # every connection is relayed end to end
                assert s.recv(64) == b"idle %d\n" % i
            after = gw.rss_kib()
            per_connection = (after - before) / IDLE
            with capsys.disabled():
                print(
                    f"\n[{'/'.join(extra) or 'splice'}] RSS {before} KiB -> {after} KiB "
                    f"with {IDLE} idle connections: {per_connection:.1f} KiB each"
                )
            assert per_connection < MAX_KIB_PER_CONNECTION
