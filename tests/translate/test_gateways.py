"""Gateway selection and port placement (Istio's rules, one row each)."""

from __future__ import annotations

from isthmus.snapshot import Call
from isthmus.translate.identity import GatewayIdentity
from tests.translate.util import build, codes, gateway, http_vs, route, service

PRODUCTPAGE = (
    service("productpage")
    + """
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: pp-1, namespace: default}
spec: {address: 127.0.0.1, labels: {app: productpage}}
"""
)
ROUTE_ALL = """
- route:
  - destination: {host: productpage, port: {number: 9080}}
"""


def test_selector_matches_labels_in_any_namespace() -> None:
    snap, _ = build(
        gateway(namespace="apps") + http_vs(gateways='["apps/gw"]', rules=ROUTE_ALL) + PRODUCTPAGE
    )
    assert [lst.name for lst in snap.listeners] == ["0.0.0.0_80"]
    assert [str(g) for g in snap.gateways] == ["Gateway apps/gw"]


def test_selector_not_matching_selects_nothing() -> None:
    snap, _ = build(gateway(selector="istio: egressgateway"))
    assert snap.listeners == ()


def test_empty_selector_selects_every_gateway() -> None:
    snap, _ = build(gateway(selector=""))
    assert [lst.port for lst in snap.listeners] == [80]


def test_custom_identity_labels() -> None:
    ident = GatewayIdentity("apps", {"app": "my-gw"})
    assert build(gateway(selector="app: my-gw"), ident)[0].listeners
    assert not build(gateway(), ident)[0].listeners


def test_revision_label_is_part_of_the_workload_labels() -> None:
    yaml = gateway(selector="istio: ingressgateway, istio.io/rev: canary")
    assert not build(yaml)[0].listeners
    assert build(yaml, GatewayIdentity(revision="canary"))[0].listeners


GATEWAY_SERVICE = """
---
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  type: LoadBalancer
  selector: {istio: ingressgateway}
  ports:
  - {name: http2, port: 80, targetPort: 8080}
  - {name: https, port: 443, targetPort: 8443}
  - {name: tcp, port: 31400}
"""


def test_port_binds_at_the_gateway_service_target_port() -> None:
    snap, diags = build(GATEWAY_SERVICE + gateway() + http_vs(rules=ROUTE_ALL) + PRODUCTPAGE)
    (listener,) = snap.listeners
    assert (listener.name, listener.port, listener.gateway_port) == ("0.0.0.0_8080", 8080, 80)
    assert listener.filter_chains[0].name == "http.80"
    assert "IST0162" not in codes(diags)


def test_target_port_defaults_to_port() -> None:
    snap, _ = build(GATEWAY_SERVICE + gateway(port=31400, protocol="TCP"))
    assert [lst.name for lst in snap.listeners] == ["0.0.0.0_31400"]


def test_gateway_port_missing_from_gateway_service_is_not_served() -> None:
    snap, diags = build(GATEWAY_SERVICE + gateway(port=9999))
    assert snap.listeners == ()
    (diag,) = [d for d in diags if d.code == "IST0162"]
    assert diag.level == "Error" and diag.field_path == "spec.servers[0].port.number"
    assert "port 9999" in diag.message


def test_gateway_port_given_as_target_port_is_accepted() -> None:
    snap, diags = build(GATEWAY_SERVICE + gateway(port=8080))
    assert [lst.port for lst in snap.listeners] == [8080]
    assert "IST0162" not in codes(diags)


def test_without_gateway_service_the_port_binds_as_written() -> None:
    snap, _ = build(gateway(port=8081))
    assert [lst.name for lst in snap.listeners] == ["0.0.0.0_8081"]


def test_service_in_another_namespace_does_not_front_the_gateway() -> None:
    other = GATEWAY_SERVICE.replace("namespace: istio-system", "namespace: elsewhere")
    snap, _ = build(other + gateway(port=9999))
    assert [lst.port for lst in snap.listeners] == [9999]


def test_servers_on_one_port_merge_into_one_route_configuration() -> None:
    yaml = (
        gateway("a", hosts='["a.example.com"]')
        + gateway("b", hosts='["b.example.com"]')
        + http_vs("va", hosts='["a.example.com"]', gateways='["istio-system/a"]', rules=ROUTE_ALL)
        + http_vs("vb", hosts='["b.example.com"]', gateways='["istio-system/b"]', rules=ROUTE_ALL)
        + PRODUCTPAGE
    )
    snap, _ = build(yaml)
    (listener,) = snap.listeners
    (chain,) = listener.filter_chains
    config = chain.application.route_config  # type: ignore[union-attr]
    assert config.name == "http.80"
    assert sorted(v.name for v in config.virtual_hosts) == [
        "a.example.com:80",
        "b.example.com:80",
    ]


def test_tcp_and_http_on_one_port_conflict() -> None:
    snap, diags = build(gateway("a") + gateway("b", protocol="TCP"))
    assert snap.listeners[0].protocol == "HTTP"
    assert "IST0145" in codes(diags)


def test_bind_address_names_the_listener() -> None:
    extra = "    bind: 127.0.0.1\n"
    yaml = gateway(hosts='["*"]\n' + extra.rstrip("\n"))
    snap, _ = build(yaml)
    assert snap.listeners[0].name == "127.0.0.1_80"


def test_gateway_without_servers_is_invalid() -> None:
    yaml = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
"""
    _, diags = build(yaml)
    assert [(d.code, d.invalid) for d in diags] == [("IST0002", True)]


def test_explain_matches_bound_port_or_gateway_port() -> None:
    yaml = GATEWAY_SERVICE + gateway() + http_vs(rules=ROUTE_ALL) + PRODUCTPAGE
    for port in (80, 8080):
        result = route(yaml, Call(port, host="x"))
        assert result.outcome == "routed"
        assert result.listener is not None and result.listener.name == "0.0.0.0_8080"


def test_revision_labelled_config_is_only_for_that_revision() -> None:
    canary_vs = http_vs(
        "canary-only", hosts='["canary.example.com"]', rules="- directResponse: {status: 299}"
    ).replace("namespace: default}", "namespace: default, labels: {istio.io/rev: canary}}")
    shared_vs = http_vs(
        "shared", hosts='["shared.example.com"]', rules="- directResponse: {status: 200}"
    )
    yaml = gateway(selector="istio: ingressgateway") + canary_vs + shared_vs
    canary = GatewayIdentity(revision="canary")
    stable = GatewayIdentity(revision="stable")
    assert route(yaml, Call(80, host="canary.example.com"), canary).outcome == "direct_response"
    assert route(yaml, Call(80, host="canary.example.com"), stable).failed_stage == "virtual_host"
    assert route(yaml, Call(80, host="shared.example.com"), stable).outcome == "direct_response"
    # no revision: like an istiod without one, every object applies
    assert route(yaml, Call(80, host="canary.example.com")).outcome == "direct_response"
