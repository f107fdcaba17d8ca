"""Which VirtualServices reach a Gateway: `gateways` resolution, hosts, namespaces."""

from __future__ import annotations

import pytest

from isthmus.snapshot import Call
from tests.translate.util import build, gateway, http_vs, route, service, workload

BACKEND = service("productpage") + workload("pp", "127.0.0.1", "app: productpage")
BACKEND_APPS = service("productpage", "apps") + workload(
    "pp", "127.0.0.2", "app: productpage", "apps"
)
ROUTE = """
- route:
  - destination: {host: productpage, port: {number: 9080}}
"""


@pytest.mark.parametrize(
    ("vs_namespace", "gateways", "bound"),
    [
        ("istio-system", '["gw"]', True),  # bare name: the VirtualService's namespace
        ("default", '["gw"]', False),  # the trap: bare name from another namespace
        ("default", '["istio-system/gw"]', True),
        ("istio-system", '["./gw"]', True),
        ("default", '["./gw"]', False),
        ("default", '["gw.istio-system.svc.cluster.local"]', True),  # legacy FQDN form
        ("default", '["mesh"]', False),
        ("default", None, False),  # no gateways field: mesh only
        ("default", '["istio-system/other"]', False),
    ],
)
def test_gateways_field_resolution(vs_namespace: str, gateways: str | None, bound: bool) -> None:
    backend = BACKEND if vs_namespace == "default" else BACKEND.replace("default", vs_namespace)
    yaml = gateway() + http_vs(namespace=vs_namespace, gateways=gateways, rules=ROUTE) + backend
    result = route(yaml, Call(80, host="anything"))
    if bound:
        assert result.outcome == "routed", result.reason
    else:
        assert result.failed_stage == "virtual_host"


@pytest.mark.parametrize(
    ("vs_host", "server_host", "request_host", "domain"),
    [
        ("bookinfo.example.com", "*", "bookinfo.example.com", "bookinfo.example.com"),
        ("*", "bookinfo.example.com", "bookinfo.example.com", "bookinfo.example.com"),
        ("*.example.com", "foo.example.com", "foo.example.com", "foo.example.com"),
        ("foo.example.com", "*.example.com", "foo.example.com", "foo.example.com"),
        ("*.example.com", "*", "x.example.com", "*.example.com"),
        ("bookinfo.example.com", "*", "BookInfo.Example.COM:80", "bookinfo.example.com"),
    ],
)
def test_host_overlap_either_side_wildcard(
    vs_host: str, server_host: str, request_host: str, domain: str
) -> None:
    yaml = gateway(hosts=f'["{server_host}"]') + http_vs(hosts=f'["{vs_host}"]', rules=ROUTE)
    result = route(yaml + BACKEND, Call(80, host=request_host))
    assert result.outcome == "routed", result.reason
    assert result.virtual_host is not None and result.virtual_host.domains == (domain,)


def test_hosts_that_do_not_overlap_do_not_bind() -> None:
    yaml = gateway(hosts='["a.example.com"]') + http_vs(hosts='["b.example.com"]', rules=ROUTE)
    snap, _ = build(yaml + BACKEND)
    config = snap.listeners[0].filter_chains[0].application.route_config  # type: ignore[union-attr]
    assert config.virtual_hosts == ()


@pytest.mark.parametrize(
    ("server_host", "vs_namespace", "bound"),
    [
        ("apps/*", "apps", True),
        ("apps/*", "default", False),
        ("*/*", "default", True),
        ("./*", "istio-system", True),
        ("./*", "apps", False),
    ],
)
def test_server_host_namespace_prefix(server_host: str, vs_namespace: str, bound: bool) -> None:
    backend = BACKEND_APPS if vs_namespace == "apps" else BACKEND.replace("default", vs_namespace)
    yaml = gateway(hosts=f'["{server_host}"]') + http_vs(namespace=vs_namespace, rules=ROUTE)
    result = route(yaml + backend, Call(80, host="x"))
    assert (result.outcome == "routed") == bound, result.reason


def test_short_destination_resolves_in_the_virtual_service_namespace() -> None:
    yaml = gateway() + http_vs(namespace="apps", rules=ROUTE) + BACKEND + BACKEND_APPS
    result = route(yaml, Call(80, host="x"))
    assert result.cluster_names == ("outbound|9080||productpage.apps.svc.cluster.local",)
    assert [e.address for e in result.clusters[0].endpoints] == ["127.0.0.2"]


def test_short_virtual_service_host_resolves_to_a_service_name() -> None:
    yaml = gateway(hosts='["productpage.default.svc.cluster.local"]') + http_vs(
        hosts='["productpage"]', rules=ROUTE
    )
    result = route(yaml + BACKEND, Call(80, host="productpage.default.svc.cluster.local"))
    assert result.outcome == "routed"


def test_per_match_gateways_narrow_a_rule() -> None:
    rules = """
- match:
  - uri: {prefix: /only-other}
    gateways: [istio-system/other]
  route:
  - destination: {host: productpage, port: {number: 9080}}
- match:
  - uri: {prefix: /}
  directResponse: {status: 204}
"""
    yaml = (
        gateway()
        + gateway("other", port=81)
        + http_vs(gateways='["istio-system/gw", "istio-system/other"]', rules=rules)
    )
    on_gw = route(yaml + BACKEND, Call(80, host="x", path="/only-other"))
    on_other = route(yaml + BACKEND, Call(81, host="x", path="/only-other"))
    assert on_gw.outcome == "direct_response"
    assert on_other.outcome == "routed"


def test_two_virtual_services_for_one_host_merge_with_catch_all_last() -> None:
    first = http_vs(
        "first",
        hosts='["shop.example.com"]',
        rules="""
- route:
  - destination: {host: productpage, port: {number: 9080}}
""",
    )
    second = http_vs(
        "second",
        hosts='["shop.example.com"]',
        rules="""
- match:
  - uri: {prefix: /api}
  directResponse: {status: 418}
""",
    )
    yaml = gateway() + first + second + BACKEND
    api = route(yaml, Call(80, host="shop.example.com", path="/api/x"))
    other = route(yaml, Call(80, host="shop.example.com", path="/other"))
    assert api.outcome == "direct_response"  # the later VS's specific route wins over catch-all
    assert other.outcome == "routed"
    assert api.virtual_host is not None and [str(o) for o in api.virtual_host.origins] == [
        "VirtualService default/first",
        "VirtualService default/second",
    ]
