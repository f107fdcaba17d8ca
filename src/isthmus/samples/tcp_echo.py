"""A TCP echo backend that behaves like Istio's ``tcp-echo-server`` sample.

For each line received it answers ``<prefix> <line>``: it reads up to and including ``\\n`` and
writes the prefix, a space and the line.  A partial last line (no newline before EOF) gets no
answer, as in the Go original.  Lines are capped at 64 KiB; a longer one closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib

from isthmus.samples import run_forever

MAX_LINE = 64 * 1024


async def start_tcp_echo(port: int, prefix: str, host: str = "127.0.0.1") -> asyncio.Server:
    """Start listening and return the server (``port=0`` lets the OS choose)."""
    head = prefix.encode() + b" "

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readuntil(b"\n")
                writer.write(head + line)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=MAX_LINE)


async def serve_tcp_echo(
    port: int,
    prefix: str,
    host: str = "127.0.0.1",
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled; ``ready`` is set once the port is bound."""
    server = await start_tcp_echo(port, prefix, host)
    async with server:
        if ready is not None:
            ready.set()
        await server.serve_forever()


def run_tcp_echo(port: int, prefix: str, host: str = "127.0.0.1") -> None:
    """Blocking entry point for ``isthmus samples tcp-echo``."""
    run_forever(lambda: serve_tcp_echo(port, prefix, host))
