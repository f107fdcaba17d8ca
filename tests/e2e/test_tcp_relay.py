"""The TCP relay through a real gateway: bulk integrity on both relay paths, half-close,
failed and resetting backends, unrouted connections."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import time
from pathlib import Path

import pytest

from tests.e2e.harness import (
    closed_port,
    free_port,
    isthmus_run,
    tcp_gateway,
    thread_server,
    write_config,
)

GIB = 1 << 30
BLOCK = os.urandom(1 << 20)
PATHS = [pytest.param((), id="splice"), pytest.param(("--no-splice",), id="asyncio")]


def sink(conn: socket.socket) -> None:
    """Read to EOF, then answer the SHA-256 of what arrived (proves half-close passes)."""
    digest = hashlib.sha256()
    buf = bytearray(1 << 20)
    while n := conn.recv_into(buf):
        digest.update(memoryview(buf)[:n])
    conn.sendall(digest.hexdigest().encode())


def source(conn: socket.socket) -> None:
    """Send 1 GiB of BLOCKs then close."""
    for _ in range(GIB // len(BLOCK)):
        conn.sendall(BLOCK)


@pytest.mark.parametrize("extra", PATHS)
def test_one_gib_upload_arrives_intact(tmp_path: Path, extra: tuple[str, ...]) -> None:
    port = free_port()
    with thread_server(sink) as backend:
        config = write_config(tmp_path, tcp_gateway(port, [("v1", backend.port, "127.0.0.1")]))
        with isthmus_run(config, *extra), socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(120)
            expected = hashlib.sha256()
            for _ in range(GIB // len(BLOCK)):
                s.sendall(BLOCK)
                expected.update(BLOCK)
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(128):
                answer += chunk
    assert answer.decode() == expected.hexdigest()


@pytest.mark.parametrize("extra", PATHS)
def test_one_gib_download_arrives_intact(tmp_path: Path, extra: tuple[str, ...]) -> None:
    port = free_port()
    with thread_server(source) as backend:
        config = write_config(tmp_path, tcp_gateway(port, [("v1", backend.port, "127.0.0.1")]))
        with isthmus_run(config, *extra), socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(120)
            got = hashlib.sha256()
            total = 0
            buf = bytearray(1 << 20)
            while n := s.recv_into(buf):
                got.update(memoryview(buf)[:n])
                total += n
    expected = hashlib.sha256()
    for _ in range(GIB // len(BLOCK)):
        expected.update(BLOCK)
    assert total == GIB
    assert got.hexdigest() == expected.hexdigest()


@pytest.mark.parametrize("extra", PATHS)
def test_half_close_reply_still_comes_back(tmp_path: Path, extra: tuple[str, ...]) -> None:
    port = free_port()
    with thread_server(sink) as backend:
        config = write_config(tmp_path, tcp_gateway(port, [("v1", backend.port, "127.0.0.1")]))
        with isthmus_run(config, *extra), socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(10)
            s.sendall(b"abc")
            s.shutdown(socket.SHUT_WR)
            assert s.recv(128) == hashlib.sha256(b"abc").hexdigest().encode()
            assert s.recv(128) == b""  # then the backend's close arrives


def test_a_backend_that_is_down_is_skipped(tmp_path: Path) -> None:
    port = free_port()
    with thread_server(sink) as backend:
        backends = [("v1", closed_port(), "127.0.0.1"), ("v1", backend.port, "127.0.0.1")]
        config = write_config(tmp_path, tcp_gateway(port, backends))
        with isthmus_run(config):
            for _ in range(20):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"x")
                    s.shutdown(socket.SHUT_WR)
                    assert s.recv(128) == hashlib.sha256(b"x").hexdigest().encode()


def test_all_backends_down_closes_the_client_without_data(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, tcp_gateway(port, [("v1", closed_port(), "127.0.0.1")]))
    with isthmus_run(config), socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert s.recv(16) == b""


def resetter(conn: socket.socket) -> None:
    """Send some bytes, then reset the connection (SO_LINGER 0)."""
    conn.sendall(b"partial")
    time.sleep(0.2)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("extra", PATHS)
def test_backend_reset_mid_stream_closes_the_client(tmp_path: Path, extra: tuple[str, ...]) -> None:
    port = free_port()
    with thread_server(resetter) as backend:
        config = write_config(tmp_path, tcp_gateway(port, [("v1", backend.port, "127.0.0.1")]))
        with isthmus_run(config, *extra), socket.create_connection(("127.0.0.1", port)) as s:
            s.settimeout(10)
            received = b""
            with pytest.raises(ConnectionResetError):
                while chunk := s.recv(64):
                    received += chunk
                raise AssertionError("closed cleanly: a reset must reach the client as a reset")
            assert received == b"partial"


def test_unrouted_connection_is_closed_without_data(tmp_path: Path) -> None:
    port = free_port()
    text = tcp_gateway(port, [("v1", closed_port(), "127.0.0.1")])
    text = text.replace(f"match: [{{port: {port}}}]", "match: [{sourceSubnet: 10.0.0.0/8}]")
    config = write_config(tmp_path, text)
    with isthmus_run(config), socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"hello")
        try:
            data = s.recv(16)
        except ConnectionResetError:  # closed with our bytes unread: the kernel sends RST
            data = b""
        assert data == b""
