"""HTTP route matching and actions as compiled into the snapshot."""

from __future__ import annotations

import pytest

from isthmus.snapshot import Call
from isthmus.snapshot.match import literal_prefix
from isthmus.snapshot.types import ForwardAction, RedirectAction
from tests.translate.util import build, codes, gateway, http_vs, route, service, workload

BACKENDS = (
    service("productpage")
    + workload("pp", "127.0.0.1", "app: productpage")
    + service("reviews")
    + workload("r1", "127.0.0.11", "app: reviews, version: v1")
    + workload("r2", "127.0.0.12", "app: reviews, version: v2")
    + """
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""
)

MATCHES = """
- match:
  - uri: {exact: /productpage}
  - uri: {prefix: /static}
  route:
  - destination: {host: productpage, port: {number: 9080}}
- match:
  - uri: {regex: '/api/v[0-9]+/reviews'}
    method: {exact: POST}
  route:
  - destination: {host: reviews, subset: v2, port: {number: 9080}}
- match:
  - headers:
      end-user: {exact: jason}
    queryParams:
      debug: {exact: "1"}
  route:
  - destination: {host: reviews, subset: v1, port: {number: 9080}}
- match:
  - headers: {x-canary: {}}
    withoutHeaders: {x-block: {}}
  route:
  - destination: {host: reviews, subset: v2, port: {number: 9080}}
- match:
  - uri: {prefix: /CaseLess}
    ignoreUriCase: true
  - authority: {prefix: admin.}
  - scheme: {exact: https}
  directResponse: {status: 202, body: {string: matched}}
"""


@pytest.mark.parametrize(
    ("path", "method", "headers", "host", "expected"),
    [
        ("/productpage", "GET", {}, "x", "outbound|9080||productpage.default.svc.cluster.local"),
        ("/productpage/x", "GET", {}, "x", None),  # exact does not match a longer path
        ("/static/app.js", "GET", {}, "x", "outbound|9080||productpage.default.svc.cluster.local"),
        ("/api/v1/reviews", "POST", {}, "x", "outbound|9080|v2|reviews.default.svc.cluster.local"),
        ("/api/v1/reviews", "GET", {}, "x", None),  # AND inside one match block
        ("/api/v1/reviews/1", "POST", {}, "x", None),  # regex must match the whole path
        (
            "/p?debug=1",
            "GET",
            {"end-user": "jason"},
            "x",
            "outbound|9080|v1|reviews.default.svc.cluster.local",
        ),
        ("/p?debug=0", "GET", {"end-user": "jason"}, "x", None),
        (
            "/p",
            "GET",
            {"x-canary": "yes"},
            "x",
            "outbound|9080|v2|reviews.default.svc.cluster.local",
        ),
        ("/p", "GET", {"x-canary": "yes", "x-block": "1"}, "x", None),
        ("/caseless/A", "GET", {}, "x", "direct"),
        ("/", "GET", {}, "admin.example.com", "direct"),
    ],
)
def test_match_table(
    path: str, method: str, headers: dict[str, str], host: str, expected: str | None
) -> None:
    yaml = gateway() + http_vs(rules=MATCHES) + BACKENDS
    result = route(yaml, Call(80, host=host, path=path, method=method, headers=headers))
    if expected is None:
        assert result.failed_stage == "route", result.reason
    elif expected == "direct":
        assert result.outcome == "direct_response"
    else:
        assert result.cluster_names == (expected,), result.reason


def test_first_matching_rule_wins() -> None:
    rules = """
- match: [{uri: {prefix: /a}}]
  directResponse: {status: 201}
- match: [{uri: {prefix: /a/b}}]
  directResponse: {status: 202}
"""
    result = route(gateway() + http_vs(rules=rules), Call(80, host="x", path="/a/b"))
    assert result.route is not None and result.route.field_path == "spec.http[0].match[0]"


@pytest.mark.parametrize(
    ("weights", "shares"),
    [
        ([80, 20], [0.8, 0.2]),
        ([1, 3], [0.25, 0.75]),  # weights need not sum to 100 since Istio 1.15
        ([None], [1.0]),  # a single destination without weight takes everything
        ([0, 5], [0.0, 1.0]),
    ],
)
def test_weights_are_weight_over_sum(weights: list[int | None], shares: list[float]) -> None:
    dests = []
    for i, w in enumerate(weights):
        weight = f"\n    weight: {w}" if w is not None else ""
        dests.append(
            f"  - destination: {{host: reviews, subset: v{i + 1}, port: {{number: 9080}}}}{weight}"
        )
    rules = "- route:\n" + "\n".join(dests)
    result = route(gateway() + http_vs(rules=rules) + BACKENDS, Call(80, host="x"))
    assert [d.share for d in result.destinations] == shares


def test_all_zero_weights_are_invalid() -> None:
    rules = """
- route:
  - destination: {host: reviews, subset: v1, port: {number: 9080}}
    weight: 0
  - destination: {host: reviews, subset: v2, port: {number: 9080}}
    weight: 0
"""
    _snap, diags = build(gateway() + http_vs(rules=rules) + BACKENDS)
    (diag,) = diags
    assert diag.invalid and diag.field_path == "spec.http[0].route"
    assert "weight is 0" in diag.message


def test_regex_that_is_not_re2_is_invalid() -> None:
    rules = """
- match: [{uri: {regex: '/(?=lookahead)'}}]
  directResponse: {status: 200}
"""
    _, diags = build(gateway() + http_vs(rules=rules))
    assert [(d.code, d.field_path) for d in diags] == [
        ("IST0002", "spec.http[0].match[0].uri.regex")
    ]


def test_destination_port_must_be_a_service_port() -> None:
    rules = """
- route:
  - destination: {host: productpage, port: {number: 8080}}
"""
    snap, diags = build(gateway() + http_vs(rules=rules) + BACKENDS)
    assert codes(diags) == ["IST0101"]
    assert "not a port of Service default/productpage" in diags[0].message
    assert snap.clusters == {}


def test_unknown_subset_is_reported_and_has_no_cluster() -> None:
    rules = """
- route:
  - destination: {host: reviews, subset: v9, port: {number: 9080}}
"""
    _snap, diags = build(gateway() + http_vs(rules=rules) + BACKENDS)
    assert codes(diags) == ["IST0101"]
    assert '"reviews.default.svc.cluster.local+v9"' in diags[0].message
    result = route(gateway() + http_vs(rules=rules) + BACKENDS, Call(80, host="x"))
    assert result.failed_stage == "cluster"


def test_actions_compile() -> None:
    rules = """
- match: [{uri: {prefix: /old}}]
  redirect: {uri: /new, authority: new.example.com, redirectCode: 308}
- match: [{uri: {prefix: /}}]
  rewrite: {uri: /v2/}
  timeout: 2.5s
  retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,connect-failure,503"}
  fault:
    delay: {fixedDelay: 1s, percentage: {value: 10}}
    abort: {httpStatus: 503, percentage: {value: 5}}
  mirror: {host: reviews, subset: v1, port: {number: 9080}}
  mirrorPercentage: {value: 25}
  headers:
    request: {set: {X-Env: prod}, remove: [x-debug]}
    response: {add: {X-Served-By: isthmus}}
  corsPolicy:
    allowOrigins: [{exact: "https://example.com"}]
    allowMethods: [GET, POST]
    maxAge: 24h
  route:
  - destination: {host: productpage, port: {number: 9080}}
    headers: {request: {set: {x-dest: pp}}}
"""
    snap, diags = build(gateway() + http_vs(rules=rules) + BACKENDS)
    assert diags == []
    vhost = snap.listeners[0].filter_chains[0].application.route_config.virtual_hosts[0]  # type: ignore[union-attr]
    redirect, forward = (r.action for r in vhost.routes)
    assert isinstance(redirect, RedirectAction)
    assert (redirect.uri, redirect.authority, redirect.code) == ("/new", "new.example.com", 308)
    assert isinstance(forward, ForwardAction)
    assert forward.timeout == 2.5
    assert forward.retries.attempts == 3 and forward.retries.per_try_timeout == 0.5
    assert forward.retries.retry_on == ("5xx", "connect-failure", "retriable-status-codes")
    assert forward.retries.retriable_status_codes == (503,)
    assert forward.fault is not None
    assert (forward.fault.delay, forward.fault.delay_percent) == (1.0, 10.0)
    assert (forward.fault.abort_status, forward.fault.abort_percent) == (503, 5.0)
    assert [(m.cluster, m.percent) for m in forward.mirrors] == [
        ("outbound|9080|v1|reviews.default.svc.cluster.local", 25.0)
    ]
    assert forward.request_headers.set == (("x-env", "prod"),)
    assert forward.request_headers.remove == ("x-debug",)
    assert forward.response_headers.add == (("x-served-by", "isthmus"),)
    assert forward.clusters[0].request_headers.set == (("x-dest", "pp"),)
    assert forward.cors is not None and forward.cors.max_age == 86400.0
    assert forward.rewrite is not None and forward.rewrite.uri == "/v2/"


def test_default_retry_policy_is_istios() -> None:
    rules = "- route:\n  - destination: {host: productpage, port: {number: 9080}}"
    snap, _ = build(gateway() + http_vs(rules=rules) + BACKENDS)
    vhost = snap.listeners[0].filter_chains[0].application.route_config.virtual_hosts[0]  # type: ignore[union-attr]
    action = vhost.routes[0].action
    assert isinstance(action, ForwardAction)
    assert action.timeout is None
    assert action.retries.attempts == 2
    assert "connect-failure" in action.retries.retry_on


def test_delegate_one_level() -> None:
    root = http_vs(
        "root",
        rules="""
- match: [{uri: {prefix: /reviews}}]
  delegate: {name: reviews-routes, namespace: default}
""",
    )
    delegate = """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-routes, namespace: default}
spec:
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route:
    - destination: {host: reviews, subset: v2, port: {number: 9080}}
  - route:
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
"""
    yaml = gateway() + root + delegate + BACKENDS
    jason = route(yaml, Call(80, host="x", path="/reviews/1", headers={"end-user": "jason"}))
    anyone = route(yaml, Call(80, host="x", path="/reviews/1"))
    outside = route(yaml, Call(80, host="x", path="/other"))
    assert jason.cluster_names == ("outbound|9080|v2|reviews.default.svc.cluster.local",)
    assert anyone.cluster_names == ("outbound|9080|v1|reviews.default.svc.cluster.local",)
    assert outside.failed_stage == "route"
    assert (
        jason.route is not None
        and str(jason.route.origin) == "VirtualService default/reviews-routes"
    )


def test_https_redirect_on_plain_http_server() -> None:
    extra = "    tls: {httpsRedirect: true}"
    yaml = gateway(hosts='["bookinfo.example.com"]\n' + extra) + http_vs(
        hosts='["bookinfo.example.com"]', rules="- directResponse: {status: 200}"
    )
    result = route(yaml, Call(80, host="bookinfo.example.com"))
    assert result.outcome == "redirect" and result.reason == "httpsRedirect"


@pytest.mark.parametrize(
    ("regex", "prefix"),
    [
        ("/v[0-9]+/orders/.*", "/v"),
        ("/api/v1", "/api/v1"),
        ("/ab*c", "/a"),
        ("/ab?", "/a"),
        ("/a{2}", "/"),
        ("a|b", ""),
        ("/x/(a|b)", ""),  # any alternation: no prefix claimed
        ("(?i:/Api)", ""),
        ("^/x", ""),
        (r"\d+", ""),
        (".*", ""),
    ],
)
def test_regex_literal_prefix(regex: str, prefix: str) -> None:
    assert literal_prefix(regex) == prefix


def test_regex_routes_match_with_their_prefix_check() -> None:
    rules = """
- match: [{uri: {regex: '/v[0-9]+/orders/.*'}}]
  directResponse: {status: 201}
- match: [{uri: {regex: '/Any/.*'}, ignoreUriCase: true}]
  directResponse: {status: 202}
- match: [{uri: {regex: 'x*/y'}}]
  directResponse: {status: 203}
"""
    config = gateway() + http_vs(rules=rules)
    for path, status in [
        ("/v2/orders/7", 201),
        ("/v/orders/7", None),
        ("/any/thing", 202),
        ("/ANY/thing", 202),
        ("/y", 203),
    ]:
        result = route(config, Call(port=80, host="h", path=path))
        action = result.route.action if result.route is not None else None
        assert getattr(action, "status", None) == status, path
