"""Helpers for HTTP end-to-end tests: configs, a raw HTTP/1.1 client, echo backends."""

from __future__ import annotations

import json
import socket
import weakref
from dataclasses import dataclass
from typing import BinaryIO


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        result: dict[str, object] = json.loads(self.body)
        return result


_READERS: weakref.WeakKeyDictionary[socket.socket, BinaryIO] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket, method: str = "GET") -> Response:
    """Read one HTTP/1.1 response (content-length, chunked or until close).

    One buffered reader per socket: a fresh ``makefile`` per response would read ahead into
    the next pipelined response and lose it with the reader.
    """
    reader = _READERS.get(sock)
    if reader is None:
        reader = _READERS[sock] = sock.makefile("rb")
    status_line = reader.readline()
    if not status_line:
        raise ConnectionError("closed before a response")
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    body = b""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return Response(status, headers, body)
    if "content-length" in headers:
        body = reader.read(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int(reader.readline().split(b";")[0], 16)
            if size == 0:
                reader.readline()
                break
            body += reader.read(size)
            reader.readline()
    else:
        body = reader.read()
    return Response(status, headers, body)


def request(
    port: int,
    path: str = "/",
    *,
    host: str = "example.com",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    timeout: float = 15,
) -> Response:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(build_request(path, host=host, method=method, headers=headers, body=body))
        return read_response(sock, method)


def build_request(
    path: str,
    *,
    host: str = "example.com",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    close: bool = True,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def http_service(
    name: str, endpoints: list[tuple[int, str]], namespace: str = "default", port: int = 80
) -> str:
    """A Service ``name`` with WorkloadEntries at 127.0.0.1:PORT labelled ``version``."""
    out = f"""---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: {port}}}]
"""
    for i, (backend_port, version) in enumerate(endpoints):
        out += f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}-{i}, namespace: {namespace}}}
spec:
  address: 127.0.0.1
  ports: {{http: {backend_port}}}
  labels: {{app: {name}, version: {version}}}
"""
    return out


def http_gateway(port: int, hosts: str = '["*"]') -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: {hosts}
"""


def virtual_service(http: str, hosts: str = '["*"]', name: str = "vs") -> str:
    return f"""---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: {hosts}
  gateways: [istio-system/gw]
  http:
{http}"""
