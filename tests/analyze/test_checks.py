"""One row per analyzer check: YAML in, findings (code, level, resource, field) out."""

from __future__ import annotations

import pytest

from isthmus.analyze import analyze
from isthmus.translate.identity import GatewayIdentity
from tests.translate.util import gateway, http_vs, resources, service, workload

BACKEND = service("productpage") + workload("pp", "127.0.0.1", "app: productpage")
ROUTE = "- route:\n  - destination: {host: productpage, port: {number: 9080}}"


def findings(yaml: str, identity: GatewayIdentity | None = None) -> list[tuple[str, str, str, str]]:
    return [
        (f.code, f.level, str(f.ref), f.field_path)
        for f in analyze(resources(yaml), identity or GatewayIdentity())
    ]


def test_clean_config_has_no_findings() -> None:
    assert findings(gateway() + http_vs(rules=ROUTE) + BACKEND) == []


def test_gateway_in_another_namespace_named_without_namespace() -> None:
    result = analyze(resources(gateway() + http_vs(gateways='["gw"]', rules=ROUTE) + BACKEND))
    (finding,) = result
    assert (finding.code, finding.field_path) == ("IST0101", "spec.gateways[0]")
    assert finding.message == (
        'Referenced gateway not found: "default/gw" (a Gateway of that name exists: '
        'write "istio-system/gw")'
    )


def test_per_match_gateway_not_found() -> None:
    rules = """
- match: [{uri: {prefix: /}, gateways: [nope]}]
  route:
  - destination: {host: productpage, port: {number: 9080}}
"""
    assert findings(gateway() + http_vs(rules=rules) + BACKEND) == [
        ("IST0101", "Error", "VirtualService default/vs", "spec.http[0].match[0].gateways[0]")
    ]


def test_virtual_service_without_gateways_is_mesh_only() -> None:
    assert findings(gateway() + http_vs(gateways=None, rules=ROUTE) + BACKEND) == [
        ("ISM0003", "Warning", "VirtualService default/vs", "spec.gateways")
    ]


def test_host_not_in_gateway() -> None:
    yaml = gateway(hosts='["a.example.com"]') + http_vs(hosts='["b.example.com"]', rules=ROUTE)
    assert findings(yaml + BACKEND) == [
        ("IST0132", "Warning", "VirtualService default/vs", "spec.hosts")
    ]


def test_conflicting_gateways() -> None:
    yaml = gateway("a", hosts='["x.example.com"]') + gateway("b", hosts='["*.example.com"]')
    assert findings(yaml) == [("IST0145", "Error", "Gateway istio-system/b", "spec.servers")]


def test_gateway_port_not_on_service() -> None:
    svc = """
---
apiVersion: v1
kind: Service
metadata: {name: istio-ingressgateway, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  ports: [{name: http2, port: 80, targetPort: 8080}]
"""
    assert findings(svc + gateway(port=31400, protocol="TCP")) == [
        ("IST0162", "Error", "Gateway istio-system/gw", "spec.servers[0].port.number")
    ]


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        (
            "- directResponse: {status: 200}\n- directResponse: {status: 201}",
            [("IST0130", "Error", "VirtualService default/vs", "spec.http[1]")],
        ),
        (
            "- match: [{uri: {prefix: /a}}]\n  directResponse: {status: 200}\n"
            "- match: [{uri: {prefix: /a}}]\n  directResponse: {status: 201}",
            [("IST0131", "Warning", "VirtualService default/vs", "spec.http[1].match[0]")],
        ),
        (
            "- match: [{uri: {prefix: /api}}]\n  directResponse: {status: 200}\n"
            "- match: [{uri: {exact: /api/v1}, method: {exact: GET}}]\n"
            "  directResponse: {status: 201}",
            [("IST0131", "Warning", "VirtualService default/vs", "spec.http[1].match[0]")],
        ),
        (
            "- match: [{uri: {prefix: /api}, method: {exact: POST}}]\n"
            "  directResponse: {status: 200}\n"
            "- match: [{uri: {prefix: /api}}]\n  directResponse: {status: 201}",
            [],
        ),
    ],
)
def test_unreachable_and_shadowed_matches(
    rules: str, expected: list[tuple[str, str, str, str]]
) -> None:
    assert findings(gateway() + http_vs(rules=rules)) == expected


def test_destination_port_not_a_service_port() -> None:
    rules = "- route:\n  - destination: {host: productpage, port: {number: 8080}}"
    assert findings(gateway() + http_vs(rules=rules) + BACKEND) == [
        (
            "IST0101",
            "Error",
            "VirtualService default/vs",
            "spec.http[0].route[0].destination.port.number",
        )
    ]


def test_destination_checked_even_when_not_bound_to_this_gateway() -> None:
    rules = "- route:\n  - destination: {host: ghost, port: {number: 80}}"
    yaml = gateway(selector="istio: other") + http_vs(rules=rules)
    assert (
        "IST0101",
        "Error",
        "VirtualService default/vs",
        "spec.http[0].route[0].destination.host",
    ) in findings(yaml)


def test_subset_selects_no_endpoint_and_unknown_host() -> None:
    dr = """
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: pp, namespace: default}
spec:
  host: productpage
  subsets:
  - {name: v1, labels: {version: v1}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost, namespace: default}
spec: {host: ghost}
"""
    assert findings(BACKEND + dr) == [
        ("IST0173", "Warning", "DestinationRule default/pp", "spec.subsets[0]"),
        ("IST0174", "Warning", "DestinationRule default/ghost", "spec.host"),
    ]


def test_all_zero_weights_and_bad_regex() -> None:
    rules = """
- match: [{uri: {regex: '(a'}}]
  route:
  - destination: {host: productpage, port: {number: 9080}}
    weight: 0
  - destination: {host: productpage, port: {number: 9080}}
    weight: 0
"""
    assert findings(gateway() + http_vs(rules=rules) + BACKEND) == [
        ("IST0002", "Error", "VirtualService default/vs", "spec.http[0].match[0].uri.regex"),
        ("IST0002", "Error", "VirtualService default/vs", "spec.http[0].route"),
    ]


def test_credential_secret_outside_the_workload_namespace() -> None:
    gw = gateway(
        port=443,
        protocol="HTTPS",
        namespace="default",
        extra="    tls: {mode: SIMPLE, credentialName: cred}",
    )
    secret = """
---
apiVersion: v1
kind: Secret
metadata: {name: cred, namespace: default}
type: kubernetes.io/tls
stringData: {tls.crt: x, tls.key: y}
"""
    result = analyze(resources(gw + secret))
    (finding,) = result
    assert (finding.code, finding.field_path) == ("IST0101", "spec.servers[0].tls.credentialName")
    assert "read only from the gateway workload's namespace (istio-system)" in finding.message


def test_external_name_port_name() -> None:
    yaml = """
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  type: ExternalName
  externalName: example.com
  ports: [{name: web, port: 80}]
"""
    assert findings(yaml) == [("IST0150", "Warning", "Service default/ext", "spec.ports[0].name")]
