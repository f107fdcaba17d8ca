"""Every HTTP action and local reply through a real gateway process."""

from __future__ import annotations

import collections
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.samples.http_echo import start_http_echo
from tests.e2e.harness import background, closed_port, free_port, isthmus_run, thread_server
from tests.e2e.http_util import (
    build_request,
    http_gateway,
    http_service,
    read_response,
    request,
    virtual_service,
)

RULES = """
  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: new.example.com, redirectCode: 308}
  - match: [{uri: {exact: /direct}}]
    directResponse: {status: 418, body: {string: "short and stout"}}
  - match: [{uri: {prefix: /abort}}]
    fault: {abort: {httpStatus: 429, percentage: {value: 100}}}
    route: [{destination: {host: echo, port: {number: 80}}}]
  - match: [{uri: {prefix: /delay}}]
    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}
    route: [{destination: {host: echo, port: {number: 80}}}]
  - match: [{uri: {prefix: /v1/api}}]
    rewrite: {uri: /api, authority: internal.example.com}
    route: [{destination: {host: echo, port: {number: 80}}}]
  - match: [{uri: {prefix: /regex}}]
    rewrite: {uriRegexRewrite: {match: '^/regex/([a-z]+)/(\\d+)$', rewrite: '/items/\\2/\\1'}}
    route: [{destination: {host: echo, port: {number: 80}}}]
  - match: [{uri: {prefix: /headers}}]
    headers:
      request: {set: {x-env: prod}, add: {x-added: "1"}, remove: [x-drop]}
      response: {set: {x-served-by: isthmus}, remove: [content-type]}
    route:
    - destination: {host: echo, port: {number: 80}}
      headers: {request: {set: {x-dest: echo}}}
  - match: [{uri: {prefix: /chatty}}]
    headers: {response: {remove: [x-remove-me], add: {x-route: chatty}}}
    route: [{destination: {host: chatty, port: {number: 80}}}]
  - match: [{uri: {prefix: /cors}}]
    corsPolicy:
      allowOrigins: [{exact: "https://app.example.com"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token]
      exposeHeaders: [x-trace]
      maxAge: 1h
    route: [{destination: {host: echo, port: {number: 80}}}]
  - match: [{uri: {prefix: /split}}]
    route:
    - destination: {host: echo, subset: a, port: {number: 80}}
      weight: 75
    - destination: {host: echo, subset: b, port: {number: 80}}
      weight: 25
  - match: [{uri: {prefix: /slow}}]
    timeout: 500ms
    route: [{destination: {host: slow, port: {number: 80}}}]
  - match: [{uri: {prefix: /nobody}}]
    route: [{destination: {host: empty, port: {number: 80}}}]
  - match: [{uri: {prefix: /refused}}]
    retries: {attempts: 0}
    route: [{destination: {host: refused, port: {number: 80}}}]
  - match: [{uri: {prefix: /missing}}]
    route: [{destination: {host: echo, subset: nope, port: {number: 80}}}]
  - match: [{uri: {prefix: /flaky}}]
    retries: {attempts: 2, retryOn: "reset,5xx"}
    route: [{destination: {host: flaky, port: {number: 80}}}]
  - match: [{uri: {prefix: /unavailable}}]
    retries: {attempts: 2, retryOn: "5xx"}
    route: [{destination: {host: unavailable, port: {number: 80}}}]
  - match:
    - headers: {x-user: {exact: jason}}
      queryParams: {v: {exact: "2"}}
      method: {exact: POST}
    route: [{destination: {host: echo, subset: b, port: {number: 80}}}]
  - route: [{destination: {host: echo, subset: a, port: {number: 80}}}]
"""

SUBSETS = """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets:
  - {name: a, labels: {version: a}}
  - {name: b, labels: {version: b}}
"""


def slow_backend(conn: socket.socket) -> None:
    conn.recv(65536)
    time.sleep(3)


def answer_each_request(conn: socket.socket, response: bytes) -> None:
    """``response`` to every request (heads only, no bodies) on a keep-alive connection."""
    reader = conn.makefile("rb")
    while True:
        while (line := reader.readline()) not in (b"\r\n", b""):
            pass
        if not line:
            return
        conn.sendall(response)


def unavailable_backend(conn: socket.socket) -> None:
    """503 to every request on a keep-alive connection."""
    answer_each_request(conn, b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\ndown")


CHATTY = (
    b"HTTP/1.1 200 OK\r\nServer: chatty/1.0\r\nConnection: keep-alive, X-Private\r\n"
    b"Keep-Alive: timeout=5\r\nX-Private: secret\r\nProxy-Connection: keep-alive\r\n"
    b"Trailer: X-Sum\r\nX-Remove-Me: 1\r\nX-Mixed-Case: Kept As Sent\r\n"
    b"Content-Length: 5\r\n\r\nhello"
)


def chatty_backend(conn: socket.socket) -> None:
    """Keep-alive answers full of fields a proxy must not pass on."""
    answer_each_request(conn, CHATTY)


def reset_backend(conn: socket.socket) -> None:
    import struct

    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    config: Path = tmp_path_factory.mktemp("actions")
    port = free_port()
    with background() as bg:
        a = bg.run(start_http_echo(0, "a")).sockets[0].getsockname()[1]
        b = bg.run(start_http_echo(0, "b")).sockets[0].getsockname()[1]
        good = bg.run(start_http_echo(0, "flaky-good")).sockets[0].getsockname()[1]
        with (
            thread_server(slow_backend) as slow,
            thread_server(reset_backend) as bad,
            thread_server(unavailable_backend) as down,
            thread_server(chatty_backend) as chatty,
        ):
            text = (
                http_gateway(port)
                + virtual_service(RULES)
                + http_service("echo", [(a, "a"), (b, "b")])
                + SUBSETS
                + http_service("slow", [(slow.port, "v1")])
                + http_service("empty", [])
                + http_service("refused", [(closed_port(), "v1")])
                + http_service("flaky", [(bad.port, "v1"), (good, "v2")])
                + http_service("unavailable", [(down.port, "v1"), (good, "v2")])
                + http_service("chatty", [(chatty.port, "v1")])
            )
            (config / "config.yaml").write_text(text)
            with isthmus_run(config):
                yield port


def test_redirect(gateway: int) -> None:
    r = request(gateway, "/old/path?q=1")
    assert r.status == 308
    assert r.headers["location"] == "http://new.example.com/new?q=1"


def test_direct_response(gateway: int) -> None:
    r = request(gateway, "/direct")
    assert (r.status, r.body) == (418, b"short and stout")


def test_fault_abort_and_delay(gateway: int) -> None:
    assert request(gateway, "/abort").status == 429
    assert request(gateway, "/abort").body == b"fault filter abort"
    started = time.monotonic()
    assert request(gateway, "/delay").status == 200
    assert time.monotonic() - started >= 0.25


def test_rewrite_prefix_and_authority(gateway: int) -> None:
    seen = request(gateway, "/v1/api/users?id=3").json()
    assert seen["url"] == "/api/users?id=3"
    assert seen["headers"]["host"] == "internal.example.com"  # type: ignore[index]


def test_regex_rewrite(gateway: int) -> None:
    assert request(gateway, "/regex/book/42").json()["path"] == "/items/42/book"


def test_header_operations(gateway: int) -> None:
    r = request(gateway, "/headers", headers={"x-drop": "1", "x-env": "dev"})
    seen = r.json()["headers"]
    assert isinstance(seen, dict)
    assert seen["x-env"] == "prod" and seen["x-added"] == "1" and seen["x-dest"] == "echo"
    assert "x-drop" not in seen
    assert r.headers["x-served-by"] == "isthmus"
    assert "content-type" not in r.headers


def test_response_fields_the_proxy_drops_and_keeps(gateway: int) -> None:
    """Hop-by-hop fields, those the upstream's Connection names and its Server go; the route's
    ``remove`` too; every other field reaches the client byte for byte, twice in a row on
    the same pooled upstream connection."""
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", gateway), timeout=5) as sock:
            sock.sendall(b"GET /chatty HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK" and body == b"hello"
        names = [line.split(b":")[0].lower() for line in lines[1:]]
        for gone in (b"keep-alive", b"x-private", b"proxy-connection", b"trailer", b"x-remove-me"):
            assert gone not in names, head
        assert b"X-Mixed-Case: Kept As Sent" in lines
        assert b"Content-Length: 5" in lines
        assert names.count(b"server") == 1 and b"server: istio-envoy" in lines
        assert b"x-route: chatty" in lines
        assert b"connection: close" in lines
        assert names.count(b"connection") == 1


def test_cors_preflight_answered_at_the_gateway(gateway: int) -> None:
    r = request(
        gateway,
        "/cors",
        method="OPTIONS",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert r.status == 200
    assert r.headers["access-control-allow-origin"] == "https://app.example.com"
    assert r.headers["access-control-allow-methods"] == "GET,POST"
    assert r.headers["access-control-max-age"] == "3600"
    actual = request(gateway, "/cors", headers={"Origin": "https://app.example.com"})
    assert actual.headers["access-control-expose-headers"] == "x-trace"
    other = request(gateway, "/cors", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers


def test_weighted_split(gateway: int) -> None:
    counts = collections.Counter(request(gateway, "/split").json()["name"] for _ in range(400))
    assert abs(counts["a"] / 400 - 0.75) < 0.08, counts


def test_match_on_headers_query_and_method(gateway: int) -> None:
    hit = request(gateway, "/x?v=2", method="POST", headers={"x-user": "jason"}, body=b"{}")
    miss = request(gateway, "/x?v=1", method="POST", headers={"x-user": "jason"}, body=b"{}")
    assert hit.json()["name"] == "b" and miss.json()["name"] == "a"
    assert hit.json()["body"] == "{}"


def test_upstream_timeout_is_504(gateway: int) -> None:
    r = request(gateway, "/slow")
    assert (r.status, r.body) == (504, b"upstream request timeout")


def test_no_healthy_upstream_is_503(gateway: int) -> None:
    r = request(gateway, "/nobody")
    assert (r.status, r.body) == (503, b"no healthy upstream")


def test_connect_failure_is_503_with_envoys_text(gateway: int) -> None:
    r = request(gateway, "/refused")
    assert r.status == 503
    assert r.body.startswith(
        b"upstream connect error or disconnect/reset before headers. reset reason: "
        b"connection failure"
    )


def test_missing_cluster_is_500(gateway: int) -> None:
    r = request(gateway, "/missing")
    assert (r.status, r.body) == (500, b"")


def test_retry_lands_on_the_second_endpoint_after_a_reset(gateway: int) -> None:
    for _ in range(10):
        r = request(gateway, "/flaky")
        assert r.status == 200
        assert r.json()["name"] == "flaky-good"


def test_a_5xx_is_retried_on_another_endpoint(gateway: int) -> None:
    names = collections.Counter()
    for _ in range(10):
        r = request(gateway, "/unavailable")
        assert r.status == 200
        names[r.json()["name"]] += 1
    assert names == {"flaky-good": 10}


def test_keep_alive_and_pipelining_answer_in_order(gateway: int) -> None:
    with socket.create_connection(("127.0.0.1", gateway), timeout=10) as s:
        s.sendall(b"".join(build_request(f"/p{i}", close=(i == 4)) for i in range(5)))
        paths = [read_response(s).json()["path"] for _ in range(5)]
    assert paths == [f"/p{i}" for i in range(5)]


def test_concurrent_clients(gateway: int) -> None:
    errors: list[str] = []

    def client(n: int) -> None:
        for i in range(20):
            r = request(gateway, f"/c{n}/{i}")
            if r.status != 200 or r.json()["path"] != f"/c{n}/{i}":
                errors.append(f"{n}/{i}: {r.status}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []


def test_pipelined_local_replies_all_arrive_before_close(gateway: int) -> None:
    """Replies written in one loop pass wait in the gateway's write batch; a ``Connection:
    close`` among them flushes the batch before closing."""
    with socket.create_connection(("127.0.0.1", gateway), timeout=10) as s:
        s.sendall(b"".join(build_request("/direct", close=(i == 3)) for i in range(4)))
        replies = [read_response(s) for _ in range(4)]
        assert s.recv(1) == b""
    assert [(r.status, r.body) for r in replies] == [(418, b"short and stout")] * 4
