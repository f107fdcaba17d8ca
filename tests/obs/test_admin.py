"""The admin and status ports over real sockets, on a fake gateway with real snapshots."""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from isthmus.control.build import build
from isthmus.control.reload import ConfigState, Rejection
from isthmus.obs.configdump import to_json
from isthmus.obs.metrics import Metrics
from isthmus.snapshot.types import Snapshot
from isthmus.translate.identity import GatewayIdentity
from tests.obs.conftest import Running, Serve
from tests.obs.fakes import (
    PRODUCTPAGE,
    FakeProvider,
    bookinfo_https_snapshot,
    tcp_echo_snapshot,
)
from tests.tls_certs import CertAuthority

V1 = "outbound|9000|v1|tcp-echo.default.svc.cluster.local"


def get(address: str, path: str) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of ``GET http://address/path``."""
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as r:
            return r.status, r.headers["content-type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read()


def get_json(address: str, path: str) -> Any:
    status, ctype, body = get(address, path)
    assert status == 200 and ctype == "application/json", (status, body)
    return json.loads(body)


@pytest.fixture
def tcp_echo(serve: Serve) -> Running:
    snapshot = tcp_echo_snapshot()
    config = ConfigState(snapshot.version, reloads_ok=1, reloads_rejected=1)
    config.rejections.append(
        Rejection(1700000000.5, ("Error [IST0101] bad gateway",), snapshot.version)
    )
    metrics = Metrics()
    metrics.set_snapshot(snapshot)
    provider = FakeProvider(
        snapshot,
        config=config,
        metrics=metrics,
        connections={"0.0.0.0_31400": 2},
        addresses={"0.0.0.0_31400": ("127.0.0.1", 41400)},
    )
    return serve(provider)


@pytest.fixture
def bookinfo(serve: Serve, tmp_path: Path) -> Running:
    ca = CertAuthority.create(tmp_path / "ca")
    snapshot, _leaf = bookinfo_https_snapshot(tmp_path / "config", ca)
    return serve(FakeProvider(snapshot))


def test_config_dump_has_names_sources_and_version(tcp_echo: Running) -> None:
    dump = get_json(tcp_echo.admin, "/config_dump")
    snapshot = tcp_echo.provider.snapshot
    assert snapshot is not None
    assert dump["version"] == snapshot.version
    assert dump["state"] == "LIVE"
    assert dump["identity"]["namespace"] == "istio-system"
    assert dump["gateways"][0]["name"] == "tcp-echo-gateway"
    (listener,) = dump["listeners"]
    assert listener["name"] == "0.0.0.0_31400"
    (chain,) = listener["filter_chains"]
    app = chain["application"]
    assert app["type"] == "tcp_proxy"
    (route,) = app["routes"]
    assert [c["cluster"] for c in route["clusters"]] == [
        V1,
        "outbound|9000|v2|tcp-echo.default.svc.cluster.local",
    ]
    assert route["origin"]["kind"] == "VirtualService"
    assert route["origin"]["location"].endswith("examples/tcp-echo/tcp-echo.yaml:43")
    assert route["match"]["description"] == "port 31400"
    clusters = {c["name"]: c for c in dump["clusters"]}
    endpoint = clusters[V1]["endpoints"][0]
    assert (endpoint["address"], endpoint["port"]) == ("127.0.0.1", 9001)
    assert endpoint["origin"]["name"] == "tcp-echo-v1"
    assert clusters[V1]["policy_origin"]["kind"] == "DestinationRule"


def test_config_dump_shows_the_last_rejected_update(tcp_echo: Running) -> None:
    dump = get_json(tcp_echo.admin, "/config_dump")
    assert dump["config"]["reloads_rejected"] == 1
    rejected = dump["last_rejected"]
    assert rejected["problems"] == ["Error [IST0101] bad gateway"]
    assert rejected["serving_version"] == dump["version"]
    assert rejected["time_iso"] == "2023-11-14T22:13:20.500000Z"


def test_config_dump_routes_and_secrets_without_key_material(
    bookinfo: Running, tmp_path: Path
) -> None:
    status, _, body = get(bookinfo.admin, "/config_dump")
    assert status == 200
    dump = json.loads(body)
    https = next(lst for lst in dump["listeners"] if lst["port"] == 443)
    (chain,) = https["filter_chains"]
    assert chain["server_names"] == ["bookinfo.example.com"]
    assert chain["tls"]["credentials"] == {"bookinfo-credential": ["ca", "cert", "key"]}
    vhost = chain["application"]["route_config"]["virtual_hosts"][0]
    assert vhost["name"] == "bookinfo.example.com:443"
    assert vhost["routes"][0]["match"]["uri"] == {
        "kind": "exact",
        "value": "/productpage",
        "ignore_case": False,
        "pattern": None,
    }
    secrets = {s["name"]: s for s in dump["secrets"]}
    cert = secrets["kubernetes://bookinfo-credential"]
    assert cert["type"] == "Cert Chain" and cert["status"] == "ACTIVE" and cert["valid"]
    assert cert["sans"] == ["bookinfo.example.com"]
    assert secrets["kubernetes://bookinfo-credential-cacert"]["type"] == "CA"
    assert b"PRIVATE KEY" not in body and b"BEGIN" not in body
    key_files = list((tmp_path / "ca").glob("*.key"))
    for key in key_files:
        assert base64.b64encode(key.read_bytes())[:40] not in body


def test_regexes_are_shown_by_pattern(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        PRODUCTPAGE
        + """---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {regex: "/api/v[0-9]+/.*"}}]
    rewrite: {uriRegexRewrite: {match: "^/api/v[0-9]+", rewrite: "/v"}}
    route: [{destination: {host: productpage, port: {number: 9080}}}]
"""
    )
    built = build([str(tmp_path)], GatewayIdentity())
    assert built.snapshot is not None, built.problems()
    dumped = json.loads(json.dumps(to_json(built.snapshot.listeners[0])))
    route = dumped["filter_chains"][0]["application"]["route_config"]["virtual_hosts"][0]["routes"][
        0
    ]
    assert route["match"]["uri"]["pattern"] == "/api/v[0-9]+/.*"
    assert route["action"]["type"] == "forward"
    assert route["action"]["rewrite"]["regex"] == "^/api/v[0-9]+"


def eject_first_endpoint(provider: FakeProvider) -> str:
    snapshot = provider.snapshot
    assert snapshot is not None
    state = provider.states.get(snapshot.clusters[V1])
    endpoint = state.endpoints[0]
    state.acquire(endpoint)
    state.http_status(endpoint, 503)
    assert state.is_ejected(endpoint)
    return endpoint.key


def test_clusters_show_health_and_outlier_state(tcp_echo: Running) -> None:
    key = eject_first_endpoint(tcp_echo.provider)
    statuses = get_json(tcp_echo.admin, "/clusters?format=json")["cluster_statuses"]
    by_name = {c["name"]: c for c in statuses}
    (host,) = by_name[V1]["host_statuses"]
    assert host["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9001}
    assert host["health_status"] == {"eds_health_status": "HEALTHY", "failed_outlier_check": True}
    assert host["outlier"]["times_ejected"] == 1
    assert {s["name"]: s["value"] for s in host["stats"]} == {"cx_active": 0, "rq_active": 1}
    other = by_name["outbound|9000|v2|tcp-echo.default.svc.cluster.local"]["host_statuses"][0]
    assert other["health_status"]["failed_outlier_check"] is False
    _, ctype, text = get(tcp_echo.admin, "/clusters")
    assert ctype.startswith("text/plain")
    assert f"{V1}::{key}::health_flags::/failed_outlier_check\n".encode() in text
    assert f"{V1}::{key}::rq_active::1\n".encode() in text


def test_listeners(tcp_echo: Running) -> None:
    assert get(tcp_echo.admin, "/listeners")[2] == b"0.0.0.0_31400::127.0.0.1:41400\n"
    statuses = get_json(tcp_echo.admin, "/listeners?format=json")["listener_statuses"]
    assert statuses == [
        {
            "name": "0.0.0.0_31400",
            "local_address": {"socket_address": {"address": "127.0.0.1", "port_value": 41400}},
        }
    ]


def test_stats_text_and_filter(tcp_echo: Running) -> None:
    eject_first_endpoint(tcp_echo.provider)
    metrics = tcp_echo.provider.metrics
    assert metrics is not None
    metrics.http(V1, "127.0.0.1:9001", 200, "-", 1.0, 1, 1)
    _, _, body = get(tcp_echo.admin, "/stats")
    lines = body.decode().splitlines()
    assert "server.live: 1" in lines
    assert "listener.0.0.0.0_31400.downstream_cx_active: 2" in lines
    assert f"cluster.{V1}.outlier_detection.ejections_active: 1" in lines
    assert f"cluster.{V1}.upstream_rq_active: 1" in lines
    assert "isthmus.config.reloads_rejected: 1" in lines
    assert any(x.startswith("istio_requests_total{") and x.endswith(": 1") for x in lines)
    _, _, filtered = get(tcp_echo.admin, "/stats?filter=%5Eserver%5C.")
    assert sorted(filtered.decode().splitlines()) == [
        "server.live: 1",
        "server.state: 0",
        f"server.uptime: {int(time.time() - tcp_echo.provider.started)}",
    ]
    assert get(tcp_echo.admin, "/stats?filter=%28")[0] == 400


def test_prometheus_on_admin_and_metrics_ports(tcp_echo: Running) -> None:
    metrics = tcp_echo.provider.metrics
    assert metrics is not None
    metrics.http(V1, "127.0.0.1:9001", 200, "-", 1.0, 1, 1)
    for address in (tcp_echo.admin, tcp_echo.metrics):
        status, ctype, body = get(address, "/stats/prometheus")
        assert status == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8"
        names = {f.name for f in text_string_to_metric_families(body.decode())}
        assert {"istio_requests", "istio_request_duration_milliseconds"} <= names
    assert get(tcp_echo.metrics, "/config_dump")[0] == 404


def test_server_info(tcp_echo: Running) -> None:
    info = get_json(tcp_echo.admin, "/server_info")
    assert info["state"] == "LIVE"
    assert info["version"].startswith("isthmus/")
    assert info["node"]["metadata"]["NAMESPACE"] == "istio-system"
    assert info["config_version"] == get_json(tcp_echo.admin, "/config_dump")["version"]


def test_ready_and_healthz_follow_the_gateway_state(serve: Serve) -> None:
    provider = FakeProvider(None, ready=False)
    running = serve(provider)
    assert get(running.admin, "/ready") == (503, "text/plain; charset=utf-8", b"PRE_INITIALIZING\n")
    assert get(running.status, "/healthz/ready")[0] == 503
    snapshot: Snapshot = tcp_echo_snapshot()
    provider.snapshot = snapshot
    provider.ready = True
    assert get(running.admin, "/ready")[:3:2] == (200, b"LIVE\n")
    assert get(running.status, "/healthz/ready")[:3:2] == (200, b"")
    provider.draining = True
    assert get(running.admin, "/ready")[:3:2] == (503, b"DRAINING\n")
    assert get(running.status, "/healthz/ready")[:3:2] == (503, b"not ready: draining\n")
    assert get_json(running.admin, "/config_dump")["state"] == "DRAINING"


def test_config_dump_before_the_first_snapshot(serve: Serve) -> None:
    running = serve(FakeProvider(None, ready=False))
    dump = get_json(running.admin, "/config_dump")
    assert dump["version"] is None and dump["state"] == "PRE_INITIALIZING"
    assert get_json(running.admin, "/clusters?format=json") == {"cluster_statuses": []}


def test_unknown_paths_methods_and_head(tcp_echo: Running) -> None:
    status, _, body = get(tcp_echo.admin, "/nope")
    assert status == 404 and b"/config_dump" in body
    assert get(tcp_echo.status, "/config_dump")[0] == 404
    host, port = tcp_echo.admin.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/ready", body=b"x")
    assert conn.getresponse().status == 405
    conn.close()
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("HEAD", "/ready")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""
    assert response.headers["content-length"] == "5"
    conn.close()


def test_a_failing_provider_gives_500_not_a_dead_server(tcp_echo: Running) -> None:
    provider = tcp_echo.provider

    def broken() -> None:
        raise RuntimeError("boom")

    provider.metrics_state = broken  # type: ignore[method-assign]
    status, _, body = get(tcp_echo.admin, "/stats/prometheus")
    assert status == 500 and b"RuntimeError: boom" in body
    assert get(tcp_echo.admin, "/ready")[0] == 200
