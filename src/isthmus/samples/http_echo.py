"""An HTTP/1.1 echo backend: every request is answered with JSON describing what arrived.

It is what HTTP tests need to see what the gateway forwarded: method, path, query and the
headers exactly as received (names in their original case, in order), plus a ``name`` telling
which backend answered.  Keep-alive and pipelining work; bodies are read (echoed up to 64 KiB).
"""

from __future__ import annotations

import asyncio
import json
from typing import cast

import httptools

from isthmus.samples import run_forever

MAX_ECHOED_BODY = 64 * 1024


class _EchoProtocol(asyncio.Protocol):
    """One connection.  Parser callbacks only record; the answer is written at message end."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        # per request
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.body_length = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(b"501 Not Implemented")
        except httptools.HttpParserError:
            self._fail(b"400 Bad Request")

    def _fail(self, status: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    # flow control: a client pipelining without reading stops being read
    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.body = bytearray()
        self.body_length = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body_length += len(body)
        room = MAX_ECHOED_BODY - len(self.body)
        if room > 0:
            self.body += body[:room]

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        method = self.parser.get_method().decode("latin-1")
        keep_alive = self.parser.should_keep_alive()
        payload = json.dumps(self._describe(method)).encode()
        head = [
            b"HTTP/1.1 200 OK",
            b"content-type: application/json",
            b"content-length: " + str(len(payload)).encode(),
            b"server: isthmus-http-echo",
        ]
        if not keep_alive:
            head.append(b"connection: close")
        elif self.parser.get_http_version() == "1.0":
            head.append(b"connection: keep-alive")
        message = b"\r\n".join(head) + b"\r\n\r\n"
        if method != "HEAD":
            message += payload
        transport.write(message)
        if not keep_alive:
            transport.close()

    def _describe(self, method: str) -> dict[str, object]:
        target = self.url.decode("latin-1")
        path, query = target, ""
        try:
            parsed = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            pass
        else:
            path = (parsed.path or b"").decode("latin-1")
            query = (parsed.query or b"").decode("latin-1")
        merged: dict[str, str] = {}
        for name, value in self.headers:
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        return {
            "name": self.name,
            "method": method,
            "url": target,
            "path": path,
            "query": query,
            "http_version": self.parser.get_http_version(),
            "headers": merged,
            "header_list": [list(pair) for pair in self.headers],
            "body_length": self.body_length,
            "body": self.body.decode("utf-8", "replace"),
        }


async def start_http_echo(port: int, name: str, host: str = "127.0.0.1") -> asyncio.Server:
    """Start listening and return the server (``port=0`` lets the OS choose)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _EchoProtocol(name), host, port)


async def serve_http_echo(
    port: int,
    name: str,
    host: str = "127.0.0.1",
    ready: asyncio.Event | None = None,
) -> None:
    """Serve until cancelled; ``ready`` is set once the port is bound."""
    server = await start_http_echo(port, name, host)
    async with server:
        if ready is not None:
            ready.set()
        await server.serve_forever()


def run_http_echo(port: int, name: str, host: str = "127.0.0.1") -> None:
    """Blocking entry point for ``isthmus samples http-echo``."""
    run_forever(lambda: serve_http_echo(port, name, host))
