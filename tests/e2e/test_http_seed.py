"""Seed 004 (bookinfo) served end to end, and the headers as Envoy at a gateway sets them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from isthmus.samples.http_echo import start_http_echo
from tests.e2e.harness import background, free_port, isthmus_run
from tests.e2e.http_util import http_service, request

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def bookinfo(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    config = tmp_path_factory.mktemp("bookinfo")
    port = free_port()
    with background() as bg:
        backend = bg.run(start_http_echo(0, "productpage"))
        backend_port = backend.sockets[0].getsockname()[1]
        seed = (DATA / "seeds" / "004" / "v2-host" / "bookinfo.yaml").read_text()
        (config / "bookinfo.yaml").write_text(seed.replace("number: 80\n", f"number: {port}\n"))
        (config / "productpage.yaml").write_text(
            http_service("productpage", [(backend_port, "v1")], port=9080)
        )
        with isthmus_run(config):
            yield port


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/productpage", 200),
        ("/static/css/app.css", 200),
        ("/login", 200),
        ("/logout", 200),
        ("/api/v1/products/1/reviews", 200),
        ("/productpage/extra", 404),
        ("/", 404),
        ("/admin", 404),
    ],
)
def test_bookinfo_routes(bookinfo: int, path: str, status: int) -> None:
    response = request(bookinfo, path, host="bookinfo.example.com")
    assert response.status == status
    assert response.headers["server"] == "istio-envoy"
    if status == 200:
        assert response.json()["path"] == path
    else:
        assert response.body == b""


def test_other_host_is_404(bookinfo: int) -> None:
    assert request(bookinfo, "/productpage", host="other.example.com").status == 404


def test_headers_the_backend_sees(bookinfo: int) -> None:
    response = request(
        bookinfo,
        "/productpage?x=1",
        host="bookinfo.example.com",
        headers={
            "X-Forwarded-For": "203.0.113.9",
            "X-Envoy-Retry-On": "5xx",
            "Keep-Alive": "timeout=5",
            "Connection": "close, X-Secret",
            "X-Secret": "hop",
            "User-Agent": "test",
        },
    )
    assert response.status == 200
    seen = response.json()["headers"]
    assert isinstance(seen, dict)
    assert seen["host"] == "bookinfo.example.com"
    assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["x-envoy-external-address"] == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f-]{36}", seen["x-request-id"])
    assert seen["x-envoy-attempt-count"] == "1"
    assert seen["user-agent"] == "test"
    for gone in ("x-envoy-retry-on", "keep-alive", "x-secret", "connection"):
        assert gone not in seen
    assert response.json()["query"] == "x=1"
    assert int(response.headers["x-envoy-upstream-service-time"]) >= 0
