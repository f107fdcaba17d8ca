"""relay_transports with a TLS-terminated client side, as the TLS listener will hand it over."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from isthmus.dataplane.relay import RelayStats, relay_transports

from .conftest import Run
from .util import MiB


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d: Path = tmp_path_factory.mktemp("tls")
    crt, key = d / "tls.crt", d / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(crt, key)
    client = ssl.create_default_context(cafile=str(crt))
    return server, client


class Handoff(asyncio.Protocol):
    """Holds a new transport, reading paused, until the relay takes it (what listeners do)."""

    def __init__(self, arrived: asyncio.Queue[Handoff] | None = None) -> None:
        self.arrived = arrived
        self.early = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.pause_reading()  # type: ignore[attr-defined]
        if self.arrived is not None:
            self.arrived.put_nowait(self)

    def data_received(self, data: bytes) -> None:
        self.early += data
        assert self.transport is not None
        self.transport.pause_reading()


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def bye(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readline()
    writer.write(b"bye\n")
    writer.close()


async def through_tls_gateway(
    server_ctx: ssl.SSLContext, backend: object, client_part: object
) -> tuple[object, RelayStats]:
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[Handoff] = asyncio.Queue()
    upstream_server = await asyncio.start_server(backend, "127.0.0.1", 0)  # type: ignore[arg-type]
    gateway = await loop.create_server(lambda: Handoff(arrived), "127.0.0.1", 0, ssl=server_ctx)
    async with upstream_server, gateway:

        async def serve_one() -> RelayStats:
            down = await arrived.get()
            up_transport, up = await loop.create_connection(
                Handoff, *upstream_server.sockets[0].getsockname()[:2]
            )
            assert down.transport is not None
            return await relay_transports(
                down.transport,
                up_transport,
                to_upstream=bytes(down.early),
                to_client=bytes(up.early),
            )

        relay_task = asyncio.create_task(serve_one())
        outcome = await client_part(gateway.sockets[0].getsockname()[1])  # type: ignore[operator]
        return outcome, await relay_task


def test_bulk_through_a_terminated_tls_side(
    run: Run, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls
    data = os.urandom(4 * MiB)

    async def client(port: int) -> str:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )

        async def send() -> None:
            for start in range(0, len(data), MiB):
                writer.write(data[start : start + MiB])
                await writer.drain()

        _, back = await asyncio.gather(send(), reader.readexactly(len(data)))
        writer.close()  # close_notify: TLS has no half-close
        await writer.wait_closed()
        return hashlib.sha256(back).hexdigest()

    digest, stats = run(through_tls_gateway(server_ctx, echo, client), timeout=60)
    assert digest == hashlib.sha256(data).hexdigest()
    assert stats.mode == "protocol"
    assert (stats.client_to_upstream, stats.upstream_to_client) == (len(data), len(data))
    assert stats.end_reason == "eof"


def test_upstream_eof_closes_the_tls_client_after_the_reply(
    run: Run, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_ctx, client_ctx = tls

    async def client(port: int) -> bytes:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        writer.write(b"hello\n")
        reply = await reader.read()  # reads to the end: the relay closed us after "bye"
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
        return reply

    reply, stats = run(through_tls_gateway(server_ctx, bye, client))
    assert reply == b"bye\n"
    assert stats.end_reason == "eof"
