"""TCP routes, TLS termination and passthrough filter chains, gateway credentials."""

from __future__ import annotations

import base64

import pytest

from isthmus.snapshot import Call
from isthmus.snapshot.types import HttpConnectionManager
from tests.translate.util import build, codes, gateway, route, service, workload

TCP_ECHO = (
    service("tcp-echo", port=9000)
    + workload("v1", "127.0.0.1", "app: tcp-echo, version: v1")
    + workload("v2", "127.0.0.2", "app: tcp-echo, version: v2")
    + """
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo, namespace: default}
spec:
  host: tcp-echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
)


def tcp_vs(rules: str) -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: tcp-echo, namespace: default}}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  tcp:
{rules}
"""


def test_tcp_weighted_subsets() -> None:
    rules = """
  - match: [{port: 31400}]
    route:
    - destination: {host: tcp-echo, subset: v1, port: {number: 9000}}
      weight: 80
    - destination: {host: tcp-echo, subset: v2, port: {number: 9000}}
      weight: 20
"""
    result = route(gateway(port=31400, protocol="TCP") + tcp_vs(rules) + TCP_ECHO, Call(31400))
    assert [(d.cluster, d.share) for d in result.destinations] == [
        ("outbound|9000|v1|tcp-echo.default.svc.cluster.local", 0.8),
        ("outbound|9000|v2|tcp-echo.default.svc.cluster.local", 0.2),
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [("10.1.2.3", "v1"), ("192.168.0.1", "v2")],
)
def test_tcp_source_subnet_then_catch_all(source: str, expected: str) -> None:
    rules = """
  - match: [{sourceSubnet: 10.0.0.0/8}]
    route:
    - destination: {host: tcp-echo, subset: v1, port: {number: 9000}}
  - route:
    - destination: {host: tcp-echo, subset: v2, port: {number: 9000}}
"""
    yaml = gateway(port=31400, protocol="TCP") + tcp_vs(rules) + TCP_ECHO
    result = route(yaml, Call(31400, source_ip=source))
    assert result.cluster_names == (f"outbound|9000|{expected}|tcp-echo.default.svc.cluster.local",)


def test_tcp_match_on_another_port_never_matches() -> None:
    rules = """
  - match: [{port: 9999}]
    route:
    - destination: {host: tcp-echo, subset: v1, port: {number: 9000}}
"""
    result = route(gateway(port=31400, protocol="MONGO") + tcp_vs(rules) + TCP_ECHO, Call(31400))
    assert result.failed_stage == "route"
    assert "closed" in result.reason


def test_tls_passthrough_chains_by_sni() -> None:
    gw = gateway(
        port=443, protocol="TLS", hosts='["*.example.com"]', extra="    tls: {mode: PASSTHROUGH}"
    )
    vs = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sni, namespace: default}
spec:
  hosts: ["*.example.com"]
  gateways: [istio-system/gw]
  tls:
  - match: [{sniHosts: [a.example.com]}]
    route: [{destination: {host: tcp-echo, subset: v1, port: {number: 9000}}}]
  - match: [{sniHosts: ["*.example.com"]}]
    route: [{destination: {host: tcp-echo, subset: v2, port: {number: 9000}}}]
"""
    yaml = gw + vs + TCP_ECHO
    a = route(yaml, Call(443, tls=True, sni="a.example.com"))
    b = route(yaml, Call(443, tls=True, sni="b.example.com"))
    none = route(yaml, Call(443, tls=True, sni="other.org"))
    assert a.cluster_names == ("outbound|9000|v1|tcp-echo.default.svc.cluster.local",)
    assert b.cluster_names == ("outbound|9000|v2|tcp-echo.default.svc.cluster.local",)
    assert none.failed_stage == "filter_chain"


def secret(name: str, namespace: str) -> str:
    crt = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    return f"""
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {namespace}}}
type: kubernetes.io/tls
data: {{tls.crt: {crt}, tls.key: {crt}}}
"""


HTTPS = gateway(
    "bookinfo-gateway",
    "default",
    443,
    "HTTPS",
    '["bookinfo.example.com"]',
    extra="    tls: {mode: SIMPLE, credentialName: bookinfo-credential}",
)


def test_https_server_gets_its_own_chain_and_route_config() -> None:
    snap, diags = build(HTTPS + secret("bookinfo-credential", "istio-system"))
    assert diags == []
    (chain,) = snap.listeners[0].filter_chains
    assert chain.name == "https.443.p443.bookinfo-gateway.default"
    assert chain.server_names == ("bookinfo.example.com",)
    assert chain.tls is not None and chain.tls.min_protocol_version == "TLSV1_2"
    assert set(chain.tls.secrets["bookinfo-credential"]) == {"cert", "key"}
    assert isinstance(chain.application, HttpConnectionManager)


def test_credential_is_read_from_the_workload_namespace_only() -> None:
    snap, diags = build(HTTPS + secret("bookinfo-credential", "default"))
    assert codes(diags) == ["IST0101"]
    assert "read only from the gateway workload's namespace (istio-system)" in diags[0].message
    assert snap.listeners[0].filter_chains == ()


def test_kubernetes_prefix_and_mutual_needs_ca() -> None:
    mutual = HTTPS.replace(
        "mode: SIMPLE, credentialName: bookinfo-credential",
        "mode: MUTUAL, credentialName: kubernetes://bookinfo-credential",
    )
    _, diags = build(mutual + secret("bookinfo-credential", "istio-system"))
    assert codes(diags) == ["IST0161"]
    ca = """
---
apiVersion: v1
kind: Secret
metadata: {name: bookinfo-credential-cacert, namespace: istio-system}
stringData: {ca.crt: "-----BEGIN CERTIFICATE-----"}
"""
    snap, diags = build(mutual + secret("bookinfo-credential", "istio-system") + ca)
    assert diags == []
    tls = snap.listeners[0].filter_chains[0].tls
    assert tls is not None and "ca" in tls.secrets["bookinfo-credential"]
