"""The sample backends: tcp-echo answers like Istio's, http-echo describes each request."""

from __future__ import annotations

import asyncio
import json

from isthmus.samples.http_echo import start_http_echo
from isthmus.samples.tcp_echo import serve_tcp_echo, start_tcp_echo

from .conftest import Run


def test_tcp_echo_answers_prefix_and_line(run: Run) -> None:
    async def main() -> tuple[bytes, bytes, bytes]:
        server = await start_tcp_echo(0, "one")
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello\nworld\n")
            first = await reader.readline()
            second = await reader.readline()
            writer.write(b"no newline")
            writer.write_eof()
            rest = await reader.read()
            writer.close()
            await writer.wait_closed()
            return first, second, rest

    assert run(main()) == (b"one hello\n", b"one world\n", b"")


def test_serve_tcp_echo_sets_ready_and_stops_on_cancel(run: Run) -> None:
    async def main() -> bool:
        ready = asyncio.Event()
        task = asyncio.create_task(serve_tcp_echo(0, "two", ready=ready))
        await ready.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return task.cancelled()

    assert run(main())


def test_http_echo_keep_alive_and_headers_as_received(run: Run) -> None:
    async def main() -> list[tuple[bytes, dict[str, object]]]:
        server = await start_http_echo(0, "v1")
        async with server:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /one?x=1 HTTP/1.1\r\nHost: a.example\r\nX-Thing: A\r\nx-thing: b\r\n\r\n"
                b"POST /two HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n"
                b"Connection: close\r\n\r\nhello"
            )
            answers = []
            for _ in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                answers.append((head, json.loads(await reader.readexactly(length))))
            assert await reader.read() == b""  # closed after "Connection: close"
            writer.close()
            await writer.wait_closed()
            return answers

    (head1, first), (head2, second) = run(main())
    assert head1.startswith(b"HTTP/1.1 200 OK\r\n") and b"connection: close" not in head1
    assert b"connection: close" in head2
    assert first["name"] == "v1"
    assert (first["method"], first["path"], first["query"]) == ("GET", "/one", "x=1")
    assert first["header_list"] == [["Host", "a.example"], ["X-Thing", "A"], ["x-thing", "b"]]
    assert first["headers"] == {"Host": "a.example", "X-Thing": "A", "x-thing": "b"}
    assert (second["method"], second["path"], second["body"]) == ("POST", "/two", "hello")
