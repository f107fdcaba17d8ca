"""The mesh's outbound routes, for the local explicit proxy (``isthmus run --mesh-port``).

Seed 002 shows workloads *inside* the mesh calling ExternalName and selector-less Services.
Outside Kubernetes there is no sidecar, so isthmus offers the same routing as an explicit
HTTP proxy: every registry host gets a virtual host whose default route goes to its cluster,
and VirtualServices bound to ``mesh`` (the default when ``gateways`` is empty) replace it.
"""

from __future__ import annotations

from isthmus.model import ResourceSet
from isthmus.model.virtualservice import Destination, PortSelector
from isthmus.snapshot.match import RouteMatch, StringMatcher
from isthmus.snapshot.types import (
    ForwardAction,
    MeshOutbound,
    Route,
    RouteConfiguration,
    TcpRoute,
    VirtualHost,
    WeightedCluster,
)
from isthmus.translate.binding import virtual_services, vs_gateways, vs_hosts
from isthmus.translate.clusters import ClusterBuilder
from isthmus.translate.hosts import CLUSTER_DOMAIN, MESH_GATEWAY
from isthmus.translate.registry import Registry
from isthmus.translate.routes import RouteBuilder

CATCH_ALL = RouteMatch(uri=StringMatcher("prefix", "/"))


def _domains(host: str, port: int) -> list[str]:
    """``host:port``, plus ``host`` for port 80 and the short names Kubernetes DNS resolves."""
    names = [host]
    suffix = f".{CLUSTER_DOMAIN}"
    if host.endswith(suffix):
        short = host[: -len(suffix)]  # name.ns
        names += [short, f"{short}.svc"]
    out = [f"{n}:{port}" for n in names]
    if port == 80:
        out += names
    return out


def build_mesh(
    resources: ResourceSet, registry: Registry, clusters: ClusterBuilder, routes: RouteBuilder
) -> MeshOutbound:
    mesh_vs = [vs for vs in virtual_services(resources) if MESH_GATEWAY in vs_gateways(vs)]
    overrides: dict[str, list[Route]] = {}
    origins: dict[str, list[object]] = {}
    tcp_overrides: dict[str, list[TcpRoute]] = {}
    for vs in mesh_vs:
        http = routes.http_routes(vs, MESH_GATEWAY)
        tcp = routes.tcp_routes(vs, MESH_GATEWAY, None)
        for host in vs_hosts(vs):
            if http:
                overrides.setdefault(host, []).extend(http)
                origins.setdefault(host, []).append(vs.ref)
            if tcp:
                tcp_overrides.setdefault(host, []).extend(tcp)
    vhosts: list[VirtualHost] = []
    tcp_table: dict[str, tuple[WeightedCluster, ...]] = {}
    for host, info in sorted(registry.services.items()):
        if host.startswith("*"):
            continue
        for port in info.ports:
            dest = Destination(host=host, port=PortSelector(number=port.port))
            name = clusters.destination(dest, info.namespace, info.origin, "spec.ports")
            if name is None:
                continue
            default: tuple[WeightedCluster, ...] = (WeightedCluster(name, 100, 1.0),)
            route_list = overrides.get(host) or [
                Route(
                    f"{host}:{port.port}",
                    CATCH_ALL,
                    ForwardAction(default),
                    info.origin,
                    "spec.ports",
                )
            ]
            vhosts.append(
                VirtualHost(
                    f"{host}:{port.port}",
                    tuple(_domains(host, port.port)),
                    tuple(route_list),
                    origins=tuple(origins.get(host, [info.origin])),  # type: ignore[arg-type]
                )
            )
            chosen = default
            for route in tcp_overrides.get(host, []):
                if route.match.port in (None, port.port):
                    chosen = route.clusters
                    break
            tcp_table[f"{host}:{port.port}"] = chosen
    return MeshOutbound(RouteConfiguration("mesh", tuple(vhosts)), tcp_table)
