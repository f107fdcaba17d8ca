"""Config rewritten 50 times under load loses nothing; 50 broken updates change nothing."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from pathlib import Path

from isthmus.samples.http_echo import start_http_echo
from isthmus.samples.tcp_echo import start_tcp_echo
from tests.e2e.harness import background, free_port, isthmus_run

REWRITES = 50
SECONDS = 40.0


def config(
    http_port: int,
    tcp_port: int,
    extra_port: int | None,
    step: int,
    http_backends: tuple[int, int],
    tcp_backends: tuple[int, int],
) -> str:
    w = (step * 37) % 101
    extra = ""
    if extra_port is not None:
        extra = f"""
  - port: {{number: {extra_port}, name: extra, protocol: TCP}}
    hosts: ["*"]"""
    route_path = "/api" if step % 2 else "/v1"
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {http_port}, name: http, protocol: HTTP}}
    hosts: ["*"]
  - port: {{number: {tcp_port}, name: tcp, protocol: TCP}}
    hosts: ["*"]{extra}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: web, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - match: [{{uri: {{prefix: {route_path}}}}}]
    route: [{{destination: {{host: web, subset: b, port: {{number: 80}}}}}}]
  - route:
    - destination: {{host: web, subset: a, port: {{number: 80}}}}
      weight: {w}
    - destination: {{host: web, subset: b, port: {{number: 80}}}}
      weight: {101 - w}
  tcp:
  - route:
    - destination: {{host: echo, subset: a, port: {{number: 9000}}}}
      weight: {101 - w}
    - destination: {{host: echo, subset: b, port: {{number: 9000}}}}
      weight: {w}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: web, namespace: default}}
spec:
  host: web
  subsets: [{{name: a, labels: {{v: a}}}}, {{name: b, labels: {{v: b}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: echo, namespace: default}}
spec:
  host: echo
  subsets: [{{name: a, labels: {{v: a}}}}, {{name: b, labels: {{v: b}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: default}}
spec: {{selector: {{app: web}}, ports: [{{name: http, port: 80}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec: {{selector: {{app: echo}}, ports: [{{name: tcp, port: 9000}}]}}
""" + "".join(
        f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {app}-{v}, namespace: default}}
spec: {{address: 127.0.0.1, labels: {{app: {app}, v: {v}}}, ports: {{{name}: {port}}}}}
"""
        for app, name, ports in (("web", "http", http_backends), ("echo", "tcp", tcp_backends))
        for v, port in zip("ab", ports, strict=True)
    )


class Clients:
    """Keep-alive HTTP, new-connection HTTP, new-connection TCP; failures recorded."""

    def __init__(self, http_port: int, tcp_port: int) -> None:
        self.http_port, self.tcp_port = http_port, tcp_port
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.deadline = time.monotonic() + SECONDS
        self.threads = [
            threading.Thread(target=t, daemon=True)
            for t in (self.keep_alive, self.new_http, self.new_tcp)
        ]

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def keep_alive(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        while self.running():
            try:
                conn.request("GET", "/page")
                response = conn.getresponse()
                response.read()
                self._check(response.status == 200, f"keep-alive {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"keep-alive {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
            time.sleep(0.002)
        conn.close()

    def new_http(self) -> None:
        while self.running():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
                conn.request("GET", "/api/x", headers={"Connection": "close"})
                response = conn.getresponse()
                response.read()
                conn.close()
                self._check(response.status == 200, f"new-http {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"new-http {exc!r}")
            time.sleep(0.002)

    def new_tcp(self) -> None:
        while self.running():
            try:
                with socket.create_connection(("127.0.0.1", self.tcp_port), timeout=10) as s:
                    s.sendall(b"ping\n")
                    line = s.makefile("rb").readline()
                self._check(line.endswith(b" ping\n"), f"tcp {line!r}")
            except OSError as exc:
                self.failures.append(f"tcp {exc!r}")
            time.sleep(0.002)

    def _check(self, good: bool, what: str) -> None:
        if good:
            self.ok += 1
        else:
            self.failures.append(what)

    def __enter__(self) -> Clients:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def long_lived(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"hello\n")
    assert s.makefile("rb").readline().endswith(b" hello\n")
    return s


def still_open(s: socket.socket) -> bool:
    s.sendall(b"again\n")
    return s.makefile("rb").readline().endswith(b" again\n")


def test_fifty_rewrites_under_load_lose_nothing(tmp_path: Path) -> None:
    http_port, tcp_port, extra_port = free_port(), free_port(), free_port()
    with background() as bg:
        web = tuple(bg.run(start_http_echo(0, n)).sockets[0].getsockname()[1] for n in "ab")
        echo = tuple(bg.run(start_tcp_echo(0, n)).sockets[0].getsockname()[1] for n in "ab")
        path = tmp_path / "c.yaml"

        def write(step: int, extra: bool) -> None:
            path.write_text(
                config(http_port, tcp_port, extra_port if extra else None, step, web, echo)
            )  # type: ignore[arg-type]

        write(0, True)
        with isthmus_run(
            tmp_path,
            "--drain-seconds",
            "60",
            "--reload-quiet-ms",
            "50",
            "--reload-max-delay-ms",
            "200",
        ) as gw:
            before = [long_lived(tcp_port) for _ in range(5)]
            on_extra = long_lived(extra_port)
            with Clients(http_port, tcp_port) as clients:
                for step in range(1, REWRITES + 1):
                    write(step, extra=step % 10 < 5)  # the extra listener comes and goes
                    time.sleep(0.35)
            reloads = sum("reloaded" in line for line in gw.output)
            assert clients.failures == [], clients.failures[:10]
            assert clients.ok > 500
            assert reloads >= REWRITES // 2, reloads
            assert all(still_open(s) for s in before)
            assert still_open(on_extra)  # its listener was removed: drained, not cut
            for s in [*before, on_extra]:
                s.close()


def test_fifty_broken_updates_change_nothing(tmp_path: Path) -> None:
    http_port, tcp_port = free_port(), free_port()
    with background() as bg:
        web = tuple(bg.run(start_http_echo(0, n)).sockets[0].getsockname()[1] for n in "ab")
        echo = tuple(bg.run(start_tcp_echo(0, n)).sockets[0].getsockname()[1] for n in "ab")
        path = tmp_path / "c.yaml"
        good = config(http_port, tcp_port, None, 0, web, echo)  # type: ignore[arg-type]
        path.write_text(good)
        with isthmus_run(tmp_path, "--reload-quiet-ms", "50", "--reload-max-delay-ms", "200") as gw:
            with Clients(http_port, tcp_port) as clients:
                for i in range(REWRITES):
                    broken = good.replace("weight: ", "weight: -") if i % 2 else good + "\n: ["
                    path.write_text(broken)
                    time.sleep(0.3)
            rejected = sum("rejected update" in line for line in gw.output)
            assert clients.failures == [], clients.failures[:10]
            assert rejected >= REWRITES // 2, rejected
            assert not any("reloaded" in line for line in gw.output)
