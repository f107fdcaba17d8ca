"""A minimal HTTP/1.1 reverse proxy on uvloop + httptools, written only to measure the floor.

``../shared/PERFORMANCE.md`` quotes what "minimal Python" reaches; this is that proxy, so
``bench/http.py --targets ...,minimal`` can measure the floor on the machine at hand next to
isthmus. It parses each request and response with httptools, rebuilds the header block, keeps
a pool of keep-alive upstream connections, and does nothing else: no routing, no header policy,
no limits, no metrics. Not part of isthmus; never use it for anything but measuring.

    python bench/minimal_proxy.py LISTEN_PORT ORIGIN_PORT
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

HOST = "127.0.0.1"


class Upstream(asyncio.Protocol):
    def __init__(self, pool: list[Upstream]) -> None:
        self.pool = pool
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: Downstream | None = None
        self.headers: list[bytes] = []
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() != b"connection":  # the client's connection is ours to describe
            self.headers.append(name + b": " + value + b"\r\n")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        client = self.client
        closing = client is not None and not client.keep_alive
        end = b"Connection: close\r\n\r\n" if closing else b"\r\n"
        out = [b"HTTP/1.1 %d OK\r\n" % status, *self.headers, end, *self.body]
        self.headers = []
        self.body = []
        self.client = None
        self.pool.append(self)
        if client is not None and client.transport is not None:
            client.transport.writelines(out)
            client.responded()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.close()
        if self in self.pool:
            self.pool.remove(self)


class Downstream(asyncio.Protocol):
    def __init__(self, pool: list[Upstream], origin: int) -> None:
        self.pool = pool
        self.origin = origin
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: list[bytes] = []
        self.queue: list[tuple[list[bytes], bool]] = []
        self.busy = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() != b"connection":  # the upstream connection is kept alive
            self.headers.append(name + b": " + value + b"\r\n")

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        msg = [method + b" " + self.url + b" HTTP/1.1\r\n", *self.headers, b"\r\n"]
        self.headers = []
        self.queue.append((msg, self.parser.should_keep_alive()))
        if not self.busy:
            self.next()

    def responded(self) -> None:
        if not self.keep_alive and self.transport is not None:
            self.transport.close()
            return
        self.next()

    def next(self) -> None:
        self.busy = False
        if self.queue:
            self.busy = True
            msg, self.keep_alive = self.queue.pop(0)
            if self.pool:
                up = self.pool.pop()
                up.client = self
                assert up.transport is not None
                up.transport.writelines(msg)
            else:
                asyncio.get_running_loop().create_task(self._connect(msg))

    async def _connect(self, msg: list[bytes]) -> None:
        loop = asyncio.get_running_loop()
        _, up = await loop.create_connection(lambda: Upstream(self.pool), HOST, self.origin)
        up.client = self
        assert up.transport is not None
        up.transport.writelines(msg)


async def serve(port: int, origin: int) -> None:
    pool: list[Upstream] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Downstream(pool, origin), HOST, port, backlog=1024)
    print(f"minimal proxy on {HOST}:{port} -> {origin}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2])))
