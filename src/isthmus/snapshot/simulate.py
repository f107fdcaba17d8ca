"""Offline routing: which listener, filter chain, virtual host, route and cluster a call reaches.

The data plane uses the same selection functions (``select_filter_chain``, ``select_route``,
``select_tcp_route``), so what ``explain`` prints is what traffic does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from isthmus.refs import ResourceRef
from isthmus.snapshot.match import Request, RequestView, host_matches
from isthmus.snapshot.types import (
    Cluster,
    DirectResponseAction,
    FilterChain,
    ForwardAction,
    HttpConnectionManager,
    Listener,
    RedirectAction,
    Route,
    Snapshot,
    TcpProxy,
    TcpRoute,
    VirtualHost,
    WeightedCluster,
)


@dataclass(frozen=True)
class Call:
    """A connection or request to simulate; ``port`` is the port the client connects to."""

    port: int
    host: str | None = None
    path: str = "/"
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    sni: str | None = None
    tls: bool = False
    source_ip: str = "127.0.0.1"
    destination_ip: str = "127.0.0.1"


@dataclass(frozen=True)
class Step:
    stage: str
    name: str
    origins: tuple[ResourceRef, ...] = ()
    detail: str = ""


@dataclass(frozen=True)
class Result:
    """``outcome`` is routed, redirect, direct_response or no_match (then ``failed_stage``)."""

    steps: tuple[Step, ...]
    outcome: str
    failed_stage: str | None = None
    reason: str = ""
    listener: Listener | None = None
    filter_chain: FilterChain | None = None
    virtual_host: VirtualHost | None = None
    route: Route | TcpRoute | None = None
    destinations: tuple[WeightedCluster, ...] = ()
    clusters: tuple[Cluster, ...] = ()

    @property
    def cluster_names(self) -> tuple[str, ...]:
        return tuple(d.cluster for d in self.destinations)


def select_filter_chain(listener: Listener, tls: bool, sni: str | None) -> FilterChain | None:
    """Envoy's order: transport protocol, then SNI exact > longest wildcard > no server names."""
    wanted = "tls" if tls else "raw_buffer"
    chains = [fc for fc in listener.filter_chains if fc.transport == wanted]
    if sni:
        name = sni.lower()
        for fc in chains:
            if name in (s.lower() for s in fc.server_names):
                return fc
        best: tuple[int, FilterChain] | None = None
        for fc in chains:
            for pattern in fc.server_names:
                wins = best is None or len(pattern) > best[0]
                if wins and pattern.startswith("*") and host_matches(pattern, name):
                    best = (len(pattern), fc)
        if best is not None:
            return best[1]
    for fc in chains:
        if not fc.server_names:
            return fc
    return None


def select_route(vhost: VirtualHost, request: Request) -> Route | None:
    return vhost.select(request)


def select_tcp_route(
    proxy: TcpProxy, port: int, source_ip: str, destination_ip: str, sni: str | None
) -> TcpRoute | None:
    for route in proxy.routes:
        if route.match.matches(port, source_ip, destination_ip, sni):
            return route
    return None


def simulate(snapshot: Snapshot, call: Call) -> Result:
    steps: list[Step] = []

    def fail(stage: str, reason: str, **found: object) -> Result:
        return Result(tuple(steps), "no_match", stage, reason, **found)  # type: ignore[arg-type]

    listener = snapshot.listener_for_port(call.port)
    if listener is None:
        ports = ", ".join(str(lst.port) for lst in snapshot.listeners) or "none"
        return fail("listener", f"no listener on port {call.port} (listening: {ports})")
    steps.append(
        Step(
            "listener",
            listener.name,
            listener.origins,
            f"{listener.protocol} gateway port {listener.gateway_port}",
        )
    )
    chain = select_filter_chain(listener, call.tls, call.sni)
    if chain is None:
        want = f"TLS with SNI {call.sni!r}" if call.tls else "plain text"
        return fail(
            "filter_chain", f"no filter chain of {listener.name} accepts {want}", listener=listener
        )
    sni_detail = ",".join(chain.server_names) or "any SNI"
    tls_detail = f"terminate TLS ({chain.tls.mode})" if chain.tls else chain.transport
    steps.append(Step("filter_chain", chain.name, chain.origins, f"{tls_detail}, {sni_detail}"))
    app = chain.application
    if isinstance(app, TcpProxy):
        return _simulate_tcp(snapshot, call, listener, chain, app, steps)
    return _simulate_http(snapshot, call, listener, chain, app, steps)


def _simulate_tcp(
    snapshot: Snapshot,
    call: Call,
    listener: Listener,
    chain: FilterChain,
    proxy: TcpProxy,
    steps: list[Step],
) -> Result:
    route = select_tcp_route(
        proxy, listener.gateway_port, call.source_ip, call.destination_ip, call.sni
    )
    if route is None:
        return Result(
            tuple(steps),
            "no_match",
            "route",
            f"no TCP/TLS route of {chain.name} matches; the connection is closed (NR)",
            listener,
            chain,
        )
    steps.append(Step("route", route.field_path, (route.origin,), route.match.describe()))
    return _destinations(snapshot, steps, listener, chain, None, route, route.clusters)


def _simulate_http(
    snapshot: Snapshot,
    call: Call,
    listener: Listener,
    chain: FilterChain,
    hcm: HttpConnectionManager,
    steps: list[Step],
) -> Result:
    config = hcm.route_config
    authority = call.host or call.headers.get("host") or ""
    vhost = config.find_virtual_host(authority)
    if vhost is None:
        domains = sorted({d for v in config.virtual_hosts for d in v.domains})
        return Result(
            tuple(steps),
            "no_match",
            "virtual_host",
            f"no virtual host of route {config.name} serves host {authority!r} "
            f"(domains: {', '.join(domains) or 'none'}): 404 NR",
            listener,
            chain,
        )
    steps.append(Step("virtual_host", vhost.name, vhost.origins, f"route {config.name}"))
    if (chain.https_redirect or vhost.require_tls) and not call.tls:
        steps.append(Step("route", "https_redirect", vhost.origins, "301 to https"))
        return Result(tuple(steps), "redirect", None, "httpsRedirect", listener, chain, vhost)
    path, _, query = call.path.partition("?")
    headers = {k.lower(): v for k, v in call.headers.items()}
    headers.setdefault("host", authority)
    request = RequestView(
        path=path,
        method=call.method.upper(),
        authority=authority,
        scheme="https" if call.tls else "http",
        port=listener.gateway_port,
        headers=headers,
        query=dict(parse_qsl(query, keep_blank_values=True)),
    )
    route = select_route(vhost, request)
    if route is None:
        return Result(
            tuple(steps),
            "no_match",
            "route",
            f"no route of virtual host {vhost.name} matches {call.method} {call.path}: 404 NR",
            listener,
            chain,
            vhost,
        )
    steps.append(
        Step("route", route.name, (route.origin,), f"{route.field_path}: {route.match.describe()}")
    )
    action = route.action
    if isinstance(action, RedirectAction):
        return Result(
            tuple(steps), "redirect", None, f"redirect {action.code}", listener, chain, vhost, route
        )
    if isinstance(action, DirectResponseAction):
        return Result(
            tuple(steps),
            "direct_response",
            None,
            f"direct response {action.status}",
            listener,
            chain,
            vhost,
            route,
        )
    assert isinstance(action, ForwardAction)
    return _destinations(snapshot, steps, listener, chain, vhost, route, action.clusters)


def _destinations(
    snapshot: Snapshot,
    steps: list[Step],
    listener: Listener,
    chain: FilterChain,
    vhost: VirtualHost | None,
    route: Route | TcpRoute,
    destinations: tuple[WeightedCluster, ...],
) -> Result:
    clusters: list[Cluster] = []
    for dest in destinations:
        cluster = snapshot.clusters.get(dest.cluster)
        if cluster is None:
            return Result(
                tuple(steps),
                "no_match",
                "cluster",
                f"cluster {dest.cluster} does not exist (500 NC)",
                listener,
                chain,
                vhost,
                route,
                destinations,
            )
        origins = tuple(o for o in (cluster.service_origin, cluster.policy_origin) if o)
        steps.append(
            Step(
                "cluster",
                cluster.name,
                origins,
                f"weight {dest.weight} ({dest.share:.0%}), {cluster.type}, "
                f"lb {cluster.load_balancer.simple}",
            )
        )
        eps = ", ".join(e.key for e in cluster.endpoints) or (
            "none: no healthy upstream (HTTP 503 UH; TCP connection closed)"
        )
        steps.append(
            Step(
                "endpoints",
                cluster.name,
                tuple(dict.fromkeys(e.origin for e in cluster.endpoints if e.origin)),
                eps,
            )
        )
        clusters.append(cluster)
    return Result(
        tuple(steps),
        "routed",
        None,
        "",
        listener,
        chain,
        vhost,
        route,
        destinations,
        tuple(clusters),
    )
