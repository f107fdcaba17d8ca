"""Seed 002 without Kubernetes: the local explicit proxy (``--mesh-port``) reaches an
ExternalName Service and a selector-less Service's Endpoints, as a sidecar would."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus.samples.http_echo import start_http_echo
from isthmus.samples.tcp_echo import start_tcp_echo
from tests.e2e.harness import background, free_port, isthmus_run
from tests.e2e.http_util import read_response

DATA = Path(__file__).parent.parent / "data"


class Mesh:
    def __init__(self, mesh_port: int, http_port: int, tcp_port: int) -> None:
        self.port = mesh_port
        self.http_port = http_port
        self.tcp_port = tcp_port


def seed_002(http_port: int, tcp_port: int) -> str:
    """Seed 002's two Services, pointed at local backends instead of httpbin.org and
    Wikipedia (same kinds, same DestinationRules)."""
    httpbin = (DATA / "seeds" / "002" / "externalname.yaml").read_text()
    wikipedia = (DATA / "seeds" / "002" / "wikipedia.yaml").read_text()
    httpbin = httpbin.replace("externalName: httpbin.org", "externalName: localhost")
    httpbin = httpbin.replace("port: 80", f"port: {http_port}")
    wikipedia = wikipedia.replace("- ip: 198.35.26.96\n", "").replace(
        "- ip: 208.80.153.224", "- ip: 127.0.0.1"
    )
    wikipedia = wikipedia.replace("port: 443", f"port: {tcp_port}")
    return httpbin + "\n---\n" + wikipedia


@pytest.fixture(params=["REGISTRY_ONLY", "ALLOW_ANY"], scope="module")
def mesh(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mesh]:
    config = tmp_path_factory.mktemp("mesh")
    mesh_port = free_port()
    with background() as bg:
        http_port = bg.run(start_http_echo(0, "httpbin")).sockets[0].getsockname()[1]
        tcp_port = bg.run(start_tcp_echo(0, "wikipedia")).sockets[0].getsockname()[1]
        (config / "seed-002.yaml").write_text(seed_002(http_port, tcp_port))
        policy = request.param
        with isthmus_run(
            config, "--mesh-port", str(mesh_port), "--outbound-traffic-policy", policy
        ):
            yield Mesh(mesh_port, http_port, tcp_port)


def test_absolute_uri_reaches_the_external_name_target_with_host_kept(mesh: Mesh) -> None:
    host = f"my-httpbin.default.svc.cluster.local:{mesh.http_port}"
    with socket.create_connection(("127.0.0.1", mesh.port), timeout=10) as s:
        s.sendall(
            f"GET http://{host}/headers HTTP/1.1\r\nHost: {host}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        response = read_response(s)
    assert response.status == 200
    seen = response.json()
    assert seen["name"] == "httpbin" and seen["path"] == "/headers"
    assert seen["headers"]["host"] == host  # type: ignore[index]


def test_curl_through_http_proxy(mesh: Mesh) -> None:
    url = f"http://my-httpbin.default.svc.cluster.local:{mesh.http_port}/headers"
    # curl reads only the lower-case http_proxy (it ignores HTTP_PROXY on purpose).
    env = {**os.environ, "http_proxy": f"http://127.0.0.1:{mesh.port}", "no_proxy": ""}
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "10", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert '"name": "httpbin"' in out.stdout


def test_connect_tunnels_to_the_selector_less_service_endpoints(mesh: Mesh) -> None:
    target = f"my-wikipedia.default.svc.cluster.local:{mesh.tcp_port}"
    with socket.create_connection(("127.0.0.1", mesh.port), timeout=10) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 200")
        s.sendall(b"hello\n")
        assert s.recv(64) == b"wikipedia hello\n"


def test_unknown_host_follows_the_outbound_traffic_policy(
    mesh: Mesh, request: pytest.FixtureRequest
) -> None:
    host = f"localhost:{mesh.http_port}"  # not in the registry
    with socket.create_connection(("127.0.0.1", mesh.port), timeout=10) as s:
        s.sendall(
            f"GET http://{host}/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        )
        response = read_response(s)
    if "ALLOW_ANY" in request.node.callspec.id:
        assert response.status == 200 and response.json()["path"] == "/x"
    else:
        assert response.status == 502


def test_mesh_port_binds_loopback_only(mesh: Mesh) -> None:
    out = Path("/proc/net/tcp").read_text()
    port_hex = f"{mesh.port:04X}"
    lines = [
        line
        for line in out.splitlines()[1:]
        if line.split()[1].endswith(f":{port_hex}") and line.split()[3] == "0A"
    ]
    assert lines and all(line.split()[1].startswith("0100007F:") for line in lines)
