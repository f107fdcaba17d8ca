"""A tiny HTTP/1.1 server on asyncio streams for the admin, status and metrics ports.

One request per connection (``connection: close``), ``GET`` and ``HEAD`` only, a bounded head
and a read timeout: enough for ``curl``, ``urllib``, Prometheus and kubelet probes, and not on
any request path that matters for performance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
MAX_HEAD = 16 * 1024
READ_TIMEOUT = 10.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes

    @classmethod
    def text(cls, body: str, status: int = 200) -> Response:
        return cls(status, TEXT, body.encode())

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Response:
        return cls(status, JSON, (json.dumps(data, indent=2) + "\n").encode())


Query = Mapping[str, list[str]]
Handler = Callable[[Query], Response]
Routes = Mapping[str, Handler]


def dispatch(routes: Routes, method: str, target: str) -> Response:
    """The response of ``routes`` to ``method target`` (a 404 lists the known paths)."""
    path, _, query = target.partition("?")
    path = unquote(path)
    if len(path) > 1:
        path = path.rstrip("/")
    handler = routes.get(path)
    if handler is None:
        known = "".join(f"  {p}\n" for p in sorted(routes))
        return Response.text(f"no such endpoint: {path}\nendpoints:\n{known}", 404)
    if method not in ("GET", "HEAD"):
        return Response.text(f"{method} not allowed\n", 405)
    try:
        return handler(parse_qs(query))
    except Exception as exc:  # an admin page must never take the gateway down
        return Response.text(f"internal error: {type(exc).__name__}: {exc}\n", 500)


async def _serve_one(
    routes: Routes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        method = parts[0]
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            response = Response.text("bad request\n", 400)
        else:
            response = dispatch(routes, method, parts[1])
        header = (
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}\r\n"
            f"content-type: {response.content_type}\r\n"
            f"content-length: {len(response.body)}\r\n"
            "server: isthmus-admin\r\n"
            "connection: close\r\n\r\n"
        ).encode()
        writer.write(header if method == "HEAD" else header + response.body)
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve(routes: Routes, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` answering with ``routes``; close the server to stop."""

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve_one(routes, reader, writer)

    return await asyncio.start_server(on_connect, host, port, limit=MAX_HEAD)
