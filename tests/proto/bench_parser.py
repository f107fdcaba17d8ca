"""Time ``RequestParser.feed`` on a typical browser GET (not collected by pytest).

Run: ``.venv/bin/python tests/proto/bench_parser.py [rounds]``. Prints µs per call next to
the floor (httptools with no callbacks, and with callbacks that only record url and headers),
best of interleaved rounds, and as a ratio to that floor, which carries across machines.
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable

import httptools

from isthmus.proto.http1 import (
    RequestHead,
    RequestParser,
    ResponseParser,
    serialize_request_head,
)

REQUEST = (
    b"GET /api/v1/products/12345?include=reviews&page=2 HTTP/1.1\r\n"
    b"Host: shop.example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\n"
    b"Connection: keep-alive\r\n"
    b"Cookie: session=3f1c2d4a5b6c; theme=dark\r\n"
    b"Cache-Control: max-age=0\r\n"
    b"\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
    b"date: Sat, 21 Nov 2026 23:00:00 GMT\r\nserver: backend\r\n\r\n{}"
)


class _Recorder:
    """The least a callback user can do: keep url and headers."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.url = b""

    def on_message_begin(self) -> None:
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url = url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        pass

    def on_message_complete(self) -> None:
        pass


def best_us(funcs: dict[str, Callable[[], object]], number: int, rounds: int) -> dict[str, float]:
    """Best µs per call of each function, interleaved so a noisy neighbour hits all alike."""
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(rounds):
        for name, func in funcs.items():
            best[name] = min(best[name], timeit.timeit(func, number=number) / number * 1e6)
    return best


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    assert 380 <= len(REQUEST) <= 420, len(REQUEST)
    bare = httptools.HttpRequestParser(object())
    recording = httptools.HttpRequestParser(_Recorder())
    parser = RequestParser()
    events = parser.feed(REQUEST)
    head = events[0]
    assert isinstance(head, RequestHead) and len(head.headers) == 8 and len(events) == 2
    headers = list(head.headers)
    results = best_us(
        {
            "httptools, no callbacks": lambda: bare.feed_data(REQUEST),
            "httptools, recording callbacks": lambda: recording.feed_data(REQUEST),
            "RequestParser.feed": lambda: parser.feed(REQUEST),
            "RequestParser() + feed": lambda: RequestParser().feed(REQUEST),
            "ResponseParser(GET) + feed (4 headers, body)": lambda: ResponseParser("GET").feed(
                RESPONSE
            ),
            "serialize_request_head (8 headers)": lambda: serialize_request_head(
                "GET", "/x", headers
            ),
        },
        number=2000,
        rounds=rounds,
    )
    floor = results["httptools, recording callbacks"]
    print(f"{len(REQUEST)}-byte GET, {len(headers)} headers; best of {rounds} interleaved rounds")
    for name, us in results.items():
        print(f"  {name:<46} {us:6.2f} µs  {us / floor:4.1f}x recording httptools")


if __name__ == "__main__":
    main()
