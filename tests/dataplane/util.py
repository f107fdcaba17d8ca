"""Helpers for data-plane tests: a client ↔ relay ↔ backend wiring on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from isthmus.dataplane.relay import RelayStats, relay

MiB = 1024 * 1024


def listener(host: str = "127.0.0.1", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((host, 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


def closed_port() -> int:
    """A port nobody listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Wired:
    client: socket.socket
    backend: socket.socket
    relay: asyncio.Task[RelayStats]


@contextlib.asynccontextmanager
async def wired_relay(
    *, backend_rcvbuf: int | None = None, upstream_sndbuf: int | None = None, **relay_args: Any
) -> AsyncIterator[Wired]:
    """client → (accepted | relay | upstream) → backend; the relay owns the middle sockets."""
    loop = asyncio.get_running_loop()
    with contextlib.ExitStack() as stack:
        gateway = stack.enter_context(listener())
        backend_listener = stack.enter_context(listener(rcvbuf=backend_rcvbuf))
        client = stack.enter_context(socket.socket())
        client.setblocking(False)
        await loop.sock_connect(client, gateway.getsockname())
        accepted, _ = await loop.sock_accept(gateway)
        upstream = socket.socket()
        if upstream_sndbuf is not None:
            upstream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, upstream_sndbuf)
        upstream.setblocking(False)
        await loop.sock_connect(upstream, backend_listener.getsockname())
        backend, _ = await loop.sock_accept(backend_listener)
        stack.enter_context(backend)
        backend.setblocking(False)
        task = asyncio.create_task(relay(accepted, upstream, **relay_args))
        try:
            yield Wired(client, backend, task)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def send_all(sock: socket.socket, data: bytes, *, eof: bool = True) -> None:
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    for start in range(0, len(data), MiB):
        await loop.sock_sendall(sock, view[start : start + MiB])
    if eof:
        sock.shutdown(socket.SHUT_WR)


async def read_digest(sock: socket.socket, chunk: int = 256 * 1024) -> tuple[int, str]:
    """Read to EOF; returns (bytes, sha256)."""
    loop = asyncio.get_running_loop()
    digest = hashlib.sha256()
    total = 0
    while data := await loop.sock_recv(sock, chunk):
        digest.update(data)
        total += len(data)
    return total, digest.hexdigest()


async def read_to_end(sock: socket.socket) -> tuple[bytes, str]:
    """Read until EOF or reset; returns (data, "eof" | "reset")."""
    loop = asyncio.get_running_loop()
    received = bytearray()
    try:
        while data := await loop.sock_recv(sock, 65536):
            received += data
    except ConnectionResetError:
        return bytes(received), "reset"
    return bytes(received), "eof"
