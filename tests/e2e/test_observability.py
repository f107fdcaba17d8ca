"""Metrics, access log, admin API, status port and proxy-config against a running gateway."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from isthmus.samples.http_echo import start_http_echo
from isthmus.samples.tcp_echo import start_tcp_echo
from tests.e2e.harness import background, free_port, isthmus_run, tcp_gateway
from tests.e2e.http_util import http_gateway, http_service, request, virtual_service


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_http_and_tcp_metrics_admin_and_access_log(tmp_path: Path) -> None:
    http_port, tcp_port = free_port(), free_port()
    admin, status, metrics_port = free_port(), free_port(), free_port()
    with background() as bg:
        web = bg.run(start_http_echo(0, "web")).sockets[0].getsockname()[1]
        echo = bg.run(start_tcp_echo(0, "echo")).sockets[0].getsockname()[1]
        (tmp_path / "c.yaml").write_text(
            http_gateway(http_port)
            + virtual_service(
                "  - match: [{uri: {prefix: /ok}}]\n"
                "    route: [{destination: {host: web, port: {number: 80}}}]\n"
            )
            + http_service("web", [(web, "v1")])
            + "---\n"
            + tcp_gateway(tcp_port, [("v1", echo, "127.0.0.1")])
            .replace("name: gw,", "name: tcp-gw,")
            .replace("gateways: [gw]", "gateways: [tcp-gw]")
        )
        with isthmus_run(
            tmp_path,
            "--admin-port",
            str(admin),
            "--status-port",
            str(status),
            "--metrics-port",
            str(metrics_port),
        ) as gw:
            assert get(status, "/healthz/ready")[0] == 200
            seen_ids = []
            for _ in range(3):
                r = request(http_port, "/ok/1", headers={"x-request-id": "sent-by-the-client"})
                assert r.status == 200
                seen_ids.append(r.json()["headers"]["x-request-id"])
            assert request(http_port, "/missing").status == 404
            for _ in range(2):
                with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as s:
                    s.sendall(b"hi\n")
                    assert s.makefile("rb").readline() == b"echo hi\n"
            time.sleep(0.3)
            code, text = get(metrics_port, "/stats/prometheus")
            assert code == 200
            svc = "web.default.svc.cluster.local"
            assert (
                metric(
                    text,
                    "istio_requests_total",
                    response_code="200",
                    destination_service=svc,
                    reporter="source",
                )
                == 3
            )
            assert (
                metric(text, "istio_requests_total", response_code="404", response_flags="NR") == 1
            )
            assert (
                metric(text, "istio_request_duration_milliseconds_count", response_code="200") == 3
            )
            assert (
                metric(
                    text,
                    "istio_tcp_connections_opened_total",
                    destination_service="app.default.svc.cluster.local",
                )
                == 2
            )
            assert metric(text, "istio_tcp_connections_closed_total") == 2
            assert metric(text, "istio_tcp_received_bytes_total") == 6
            assert metric(text, "istio_tcp_sent_bytes_total") == 16
            code, dump = get(admin, "/config_dump")
            assert code == 200
            assert f"0.0.0.0_{http_port}" in dump and "outbound|80||web" in dump
            json.loads(dump)
            listeners = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "isthmus",
                    "proxy-config",
                    "listeners",
                    "--admin",
                    f"127.0.0.1:{admin}",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert listeners.returncode == 0, listeners.stderr
            assert listeners.stdout.splitlines()[0].split() == [
                "ADDRESSES",
                "PORT",
                "MATCH",
                "DESTINATION",
            ]
            assert str(tcp_port) in listeners.stdout
        output = "".join(gw.output)
        lines = [line for line in output.splitlines() if line.startswith("[")]
        http_lines = [line for line in lines if '"GET /ok/1 HTTP/1.1" 200' in line]
        assert len(http_lines) == 3
        # the downstream local and remote addresses (the listener is bound to 127.0.0.1)
        assert all(f" 127.0.0.1:{http_port} 127.0.0.1:" in line for line in http_lines)
        # x-request-id: the id the gateway generated and sent upstream, not the client's
        assert "sent-by-the-client" not in output
        assert all(f'"{rid}"' in line for rid, line in zip(seen_ids, http_lines, strict=True))
        missing = re.search(r'"GET /missing HTTP/1.1" 404 NR .*', output)
        assert missing is not None
        uuid = r'"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"'
        assert re.search(uuid, missing.group(0))  # a local reply's request has one too
        assert sum(" outbound|9000||app.default.svc.cluster.local " in line for line in lines) == 2


def test_readiness_goes_false_while_draining(tmp_path: Path) -> None:
    import signal

    port, status = free_port(), free_port()
    with background() as bg:
        echo = bg.run(start_tcp_echo(0, "echo")).sockets[0].getsockname()[1]
        (tmp_path / "c.yaml").write_text(tcp_gateway(port, [("v1", echo, "127.0.0.1")]))
        with isthmus_run(tmp_path, "--status-port", str(status), "--drain-seconds", "20") as gw:
            assert get(status, "/healthz/ready")[0] == 200
            held = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.sendall(b"x\n")
            assert held.makefile("rb").readline() == b"echo x\n"
            gw.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            code = 200
            while code == 200 and time.monotonic() < deadline:
                time.sleep(0.1)
                code = get(status, "/healthz/ready")[0]
            assert code == 503  # draining: not ready, still finishing the held connection
            held.close()  # the last connection ends: the process exits 0
            assert gw.proc.wait(timeout=30) == 0
