"""Edge hardening through a real gateway: limits, malformed requests, smuggling vectors,
upgrades, mirrors, and big bodies streamed with flat memory."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.samples.http_echo import start_http_echo
from tests.e2e.harness import background, free_port, isthmus_run, thread_server
from tests.e2e.http_util import http_gateway, http_service, read_response, request, virtual_service

GIB = 1 << 30
BLOCK = os.urandom(1 << 20)


class Recorder:
    """An HTTP/1.1 backend that records every request line it parses (keep-alive aware)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.hosts: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        while True:
            line = reader.readline()
            if not line:
                return
            headers: dict[str, str] = {}
            while (h := reader.readline()) not in (b"\r\n", b""):
                name, _, value = h.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            with self.lock:
                self.lines.append(line.decode("latin-1").strip())
                self.hosts.append(headers.get("host", ""))
            if headers.get("transfer-encoding") == "chunked":
                while True:
                    size = int(reader.readline().split(b";")[0], 16)
                    reader.read(size + 2) if size else reader.readline()
                    if size == 0:
                        break
            elif "content-length" in headers:
                reader.read(int(headers["content-length"]))
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


def upload_sink(conn: socket.socket) -> None:
    reader = conn.makefile("rb")
    length = 0
    while (h := reader.readline()) not in (b"\r\n", b""):
        if h.lower().startswith(b"content-length:"):
            length = int(h.split(b":")[1])
    digest = hashlib.sha256()
    left = length
    while left:
        data = reader.read(min(left, 1 << 20))
        if not data:
            return
        digest.update(data)
        left -= len(data)
    body = digest.hexdigest().encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))


def download_source(conn: socket.socket) -> None:
    reader = conn.makefile("rb")
    while reader.readline() not in (b"\r\n", b""):
        pass
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % GIB)
    for _ in range(GIB // len(BLOCK)):
        conn.sendall(BLOCK)


def websocket_echo(conn: socket.socket) -> None:
    reader = conn.makefile("rb")
    while reader.readline() not in (b"\r\n", b""):
        pass
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    while data := conn.recv(65536):
        conn.sendall(data)


RULES = """
  - match: [{uri: {prefix: /upload}}]
    route: [{destination: {host: sink, port: {number: 80}}}]
  - match: [{uri: {prefix: /download}}]
    route: [{destination: {host: source, port: {number: 80}}}]
  - match: [{uri: {prefix: /ws}}]
    route: [{destination: {host: ws, port: {number: 80}}}]
  - match: [{uri: {prefix: /mirror}}]
    mirror: {host: recorder, port: {number: 80}}
    route: [{destination: {host: echo, port: {number: 80}}}]
  - match: [{uri: {prefix: /echo}}]
    route: [{destination: {host: echo, port: {number: 80}}}]
  - route: [{destination: {host: recorder, port: {number: 80}}}]
"""


class Gateway:
    def __init__(self, port: int, recorder: Recorder, pid: int) -> None:
        self.port = port
        self.recorder = recorder
        self.pid = pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = tmp_path_factory.mktemp("edge")
    port = free_port()
    recorder = Recorder()
    with (
        background() as bg,
        thread_server(recorder) as rec,
        thread_server(upload_sink) as sink,
        thread_server(download_source) as source,
        thread_server(websocket_echo) as ws,
    ):
        echo = bg.run(start_http_echo(0, "echo")).sockets[0].getsockname()[1]
        text = (
            http_gateway(port)
            + virtual_service(RULES)
            + http_service("recorder", [(rec.port, "v1")])
            + http_service("sink", [(sink.port, "v1")])
            + http_service("source", [(source.port, "v1")])
            + http_service("ws", [(ws.port, "v1")])
            + http_service("echo", [(echo, "v1")])
        )
        (config / "config.yaml").write_text(text)
        with isthmus_run(config) as proc:
            yield Gateway(port, recorder, proc.pid)


def raw(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes, read until the gateway closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return out


def status_of(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


MANY_HEADERS = b"".join(b"x-h%d: v\r\n" % i for i in range(101))


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + MANY_HEADERS + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nx-big: " + b"a" * 61 * 1024 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: x\r\nx_under: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nUser-Agent: t\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n", 400),
        (b"GET /x#frag HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
        (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 403),
    ],
    ids=[
        "101-headers",
        "61KiB-header",
        "underscore",
        "no-host",
        "two-hosts",
        "absolute-uri-host-mismatch",
        "fragment",
        "http10-chunked",
        "connect",
    ],
)
def test_rejected_requests(gw: Gateway, data: bytes, status: int) -> None:
    before = len(gw.recorder.lines)
    reply = raw(gw.port, data)
    assert status_of(reply) == status, reply[:200]
    assert b"connection: close" in reply.lower() or status == 403
    assert len(gw.recorder.lines) == before  # nothing reached the backend


SMUGGLING = [
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1e\r\nGET /smuggled HTTP/1.1\r\nX: \r\n0\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nContent-Length: 4\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity"
    b"\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 3\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\n"
    b"abcGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabcGET /smuggled HTTP/1.1\r\n\r\n",
    b"POST /a HTTP/1.1\r\nHost: x\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
    b"abcGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize(
    "data",
    SMUGGLING,
    ids=[
        "CL.TE",
        "TE.CL",
        "TE-xchunked",
        "TE-space-colon",
        "TE-twice",
        "TE-list",
        "TE-tab",
        "CL-differing",
        "CL-sign",
        "obs-fold-TE",
    ],
)
def test_smuggling_never_reaches_the_backend(gw: Gateway, data: bytes) -> None:
    raw(gw.port, data)
    time.sleep(0.05)
    with gw.recorder.lock:
        assert not any("/smuggled" in line for line in gw.recorder.lines), gw.recorder.lines


def test_a_body_that_looks_like_a_request_stays_a_body(gw: Gateway) -> None:
    inner = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    reply = raw(
        gw.port,
        b"POST /legit HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (len(inner), inner),
    )
    assert status_of(reply) == 200
    time.sleep(0.05)
    with gw.recorder.lock:
        assert "POST /legit HTTP/1.1" in gw.recorder.lines
        assert not any("/smuggled" in line for line in gw.recorder.lines)


def test_h2c_upgrade_is_stripped(gw: Gateway) -> None:
    seen = request(
        gw.port,
        "/echo",
        headers={
            "Connection": "Upgrade, HTTP2-Settings",
            "Upgrade": "h2c",
            "HTTP2-Settings": "AAMA",
        },
    ).json()["headers"]
    assert isinstance(seen, dict)
    assert "upgrade" not in seen and "http2-settings" not in seen


def test_websocket_upgrade_tunnels_after_101(gw: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as s:
        s.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZQ==\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101")
        assert b"upgrade: websocket" in head.lower()
        for message in (b"\x81\x05hello", b"\x82\x03abc" * 1000):
            s.sendall(message)
            got = b""
            while len(got) < len(message):
                got += s.recv(65536)
            assert got == message


def test_mirror_gets_a_shadow_copy(gw: Gateway) -> None:
    assert request(gw.port, "/mirror/1", host="shop.example.com").json()["name"] == "echo"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with gw.recorder.lock:
            if "shop.example.com-shadow" in gw.recorder.hosts:
                break
        time.sleep(0.05)
    with gw.recorder.lock:
        assert "shop.example.com-shadow" in gw.recorder.hosts
        assert "GET /mirror/1 HTTP/1.1" in gw.recorder.lines


def test_one_gib_upload_streams_with_flat_memory(gw: Gateway) -> None:
    before = gw.rss_kib()
    expected = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", gw.port), timeout=120) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % GIB)
        for _ in range(GIB // len(BLOCK)):
            s.sendall(BLOCK)
            expected.update(BLOCK)
        response = read_response(s)
    growth_mib = (gw.rss_kib() - before) / 1024
    assert response.status == 200
    assert response.body.decode() == expected.hexdigest()
    assert growth_mib < 64, f"RSS grew {growth_mib:.0f} MiB for a 1 GiB upload"


def test_one_gib_download_streams_with_flat_memory(gw: Gateway) -> None:
    before = gw.rss_kib()
    got = hashlib.sha256()
    total = 0
    with socket.create_connection(("127.0.0.1", gw.port), timeout=120) as s:
        s.sendall(b"GET /download HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = bytearray(1 << 20)
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 200")
        peak = 0
        while n := s.recv_into(buf):
            got.update(memoryview(buf)[:n])
            total += n
            if total % (64 << 20) < n:
                peak = max(peak, gw.rss_kib())
    expected = hashlib.sha256()
    for _ in range(GIB // len(BLOCK)):
        expected.update(BLOCK)
    assert total == GIB and got.hexdigest() == expected.hexdigest()
    assert (peak - before) / 1024 < 64, f"RSS grew {(peak - before) / 1024:.0f} MiB"


def test_request_headers_and_idle_timeouts_close_connections(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "c.yaml").write_text(http_gateway(port))
    flags = ("--request-headers-timeout", "0.5", "--idle-timeout", "1")
    with isthmus_run(tmp_path, *flags):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
            started = time.monotonic()
            assert s.recv(100) == b""
            assert time.monotonic() - started < 8
        # silent connections, accepted at different times, each closed by the shared timer;
        # one that sends its request in time is answered
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as first,
            socket.create_connection(("127.0.0.1", port), timeout=10) as prompt,
        ):
            time.sleep(0.3)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as second:
                prompt.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(prompt).status == 404
                started = time.monotonic()
                assert first.recv(100) == b""
                assert second.recv(100) == b""
                assert time.monotonic() - started < 8
        # keep-alive: answered while in use (the one timer moves on), closed once idle
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            for _ in range(3):
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_response(s).status == 404
                time.sleep(0.4)
            started = time.monotonic()
            assert s.recv(100) == b""
            assert time.monotonic() - started < 8


def _silent_backend(conn: socket.socket) -> None:
    """Reads requests and never answers (until the gateway gives up on it)."""
    while conn.recv(65536):
        pass


def test_stream_idle_timeout_answers_504_on_new_and_reused_connections(tmp_path: Path) -> None:
    """A new connection's first request is watched by the gateway's shared timer, later ones
    by the connection's own: both end in Envoy's 504 once the stream idle timeout passes."""
    port = free_port()
    with thread_server(_silent_backend) as silent:
        (tmp_path / "c.yaml").write_text(
            http_gateway(port)
            + virtual_service("  - route: [{destination: {host: silent, port: {number: 80}}}]\n")
            + http_service("silent", [(silent.port, "v1")])
        )
        with (
            isthmus_run(tmp_path, "--stream-idle-timeout", "0.5"),
            socket.create_connection(("127.0.0.1", port), timeout=10) as first,
            socket.create_connection(("127.0.0.1", port), timeout=10) as second,
        ):
            started = time.monotonic()
            first.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.2)
            second.sendall(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
            for sock in (first, second):
                response = read_response(sock)
                assert (response.status, response.body) == (504, b"upstream request timeout")
            assert 0.45 <= time.monotonic() - started < 8
            again = time.monotonic()  # the same connection, now with a timer of its own
            first.sendall(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(first).status == 504
            assert 0.45 <= time.monotonic() - again < 8
