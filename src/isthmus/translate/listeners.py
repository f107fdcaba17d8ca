"""Port groups of Gateway servers → listeners with filter chains and route configurations."""

from __future__ import annotations

from dataclasses import dataclass, field

from isthmus.model import ResourceSet, VirtualService
from isthmus.refs import ResourceRef
from isthmus.snapshot.types import (
    FilterChain,
    HttpConnectionManager,
    Listener,
    Route,
    RouteConfiguration,
    TcpProxy,
    TcpRoute,
    VirtualHost,
)
from isthmus.translate import diagnostics as d
from isthmus.translate.binding import bound_domains, virtual_services, vs_gateways
from isthmus.translate.credentials import downstream_tls
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.gateways import BoundServer, PortGroup
from isthmus.translate.identity import GatewayIdentity
from isthmus.translate.routes import RouteBuilder


@dataclass
class _Domain:
    routes: list[Route] = field(default_factory=list)
    origins: list[ResourceRef] = field(default_factory=list)
    require_tls: bool = False
    bound: set[str] = field(default_factory=set)


@dataclass
class ListenerBuilder:
    resources: ResourceSet
    identity: GatewayIdentity
    routes: RouteBuilder
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def build(self, group: PortGroup) -> Listener:
        if group.family == "http":
            chains = [self._http_chain(group)]
            protocol = "HTTP"
        elif group.family == "tcp":
            chains = [self._tcp_chain(group)]
            protocol = "TCP"
        else:
            chains = self._tls_chains(group)
            protocol = "TLS"
        origins = tuple(dict.fromkeys(s.gateway.ref for s in group.servers))
        return Listener(
            name=f"{group.address}_{group.bind_port}",
            address=group.address,
            port=group.bind_port,
            gateway_port=group.gateway_port,
            protocol=protocol,
            filter_chains=tuple(chains),
            origins=origins,
        )

    # --- HTTP --------------------------------------------------------------------------------

    def route_configuration(self, name: str, servers: list[BoundServer]) -> RouteConfiguration:
        """Virtual hosts for every VirtualService bound to ``servers``; merged VirtualServices
        for one host keep their order, with catch-all routes moved last (Istio's
        SortVHostRoutes)."""
        domains: dict[str, _Domain] = {}
        vss = virtual_services(self.resources)
        for server in servers:
            redirect = bool(server.server.tls and server.server.tls.https_redirect)
            for vs in vss:
                if not vs.spec.http:
                    continue
                for domain in bound_domains(vs, server):
                    acc = domains.setdefault(domain, _Domain())
                    acc.require_tls |= redirect
                    vs_key = f"{vs.namespace}/{vs.name}"
                    if vs_key in acc.bound:
                        continue
                    acc.bound.add(vs_key)
                    acc.origins.append(vs.ref)
                    acc.routes.extend(self.routes.http_routes(vs, server.key))
            if redirect:
                for _ns, host in server.hosts:
                    domains.setdefault(host, _Domain()).require_tls = True
        port = servers[0].gateway_port
        vhosts = []
        for domain, acc in domains.items():
            ordered = [r for r in acc.routes if not r.match.is_catch_all] + [
                r for r in acc.routes if r.match.is_catch_all
            ]
            vhosts.append(
                VirtualHost(
                    f"{domain}:{port}",
                    (domain,),
                    tuple(ordered),
                    acc.require_tls,
                    tuple(acc.origins),
                )
            )
        return RouteConfiguration(name, tuple(vhosts))

    def _http_chain(self, group: PortGroup) -> FilterChain:
        name = f"http.{group.gateway_port}"
        config = self.route_configuration(name, group.servers)
        return FilterChain(
            name,
            HttpConnectionManager(config),
            origins=tuple(dict.fromkeys(s.gateway.ref for s in group.servers)),
        )

    # --- TCP ---------------------------------------------------------------------------------

    def _tcp_routes(self, server: BoundServer) -> list[TcpRoute]:
        out: list[TcpRoute] = []
        for vs in self._bound(server):
            out.extend(self.routes.tcp_routes(vs, server.key, server.gateway_port))
        return out

    def _bound(self, server: BoundServer) -> list[VirtualService]:
        return [vs for vs in virtual_services(self.resources) if bound_domains(vs, server)]

    def _tcp_chain(self, group: PortGroup) -> FilterChain:
        routes: list[TcpRoute] = []
        for server in group.servers:
            routes.extend(self._tcp_routes(server))
        return FilterChain(
            f"tcp.{group.gateway_port}",
            TcpProxy(tuple(routes)),
            origins=tuple(dict.fromkeys(s.gateway.ref for s in group.servers)),
        )

    # --- TLS ---------------------------------------------------------------------------------

    def _tls_chains(self, group: PortGroup) -> list[FilterChain]:
        chains: list[FilterChain] = []
        taken: dict[tuple[str, ...], ResourceRef] = {}

        def add(chain: FilterChain, server: BoundServer) -> None:
            key = tuple(sorted(chain.server_names))
            if key in taken:
                self.diagnostics.append(
                    d.warning(
                        d.CONFLICTING_GATEWAYS,
                        server.gateway.ref,
                        f"{server.path}.hosts",
                        f"SNI {', '.join(key) or '*'} on port {group.bind_port} is already served "
                        f"by {taken[key]}; this server is ignored",
                    )
                )
                return
            taken[key] = server.gateway.ref
            chains.append(chain)

        for server in group.servers:
            if server.kind == "passthrough":
                for chain in self._passthrough_chains(server):
                    add(chain, server)
                continue
            if server.kind == "auto_passthrough":
                self.routes.clusters.all_services()
                chain = FilterChain(
                    f"auto_passthrough.{server.gateway_port}",
                    TcpProxy(()),
                    (),
                    "tls",
                    origins=(server.gateway.ref,),
                    auto_passthrough=True,
                )
                add(chain, server)
                continue
            tls, diags = downstream_tls(server, self.resources, self.identity)
            self.diagnostics.extend(diags)
            if tls is None:
                continue
            names = tuple(h for _ns, h in server.hosts if h != "*")
            origins = (server.gateway.ref,)
            if server.kind == "https":
                port_name = server.server.port.name or str(server.gateway_port)
                rname = (
                    f"https.{server.gateway_port}.{port_name}."
                    f"{server.gateway.name}.{server.gateway.namespace}"
                )
                config = self.route_configuration(rname, [server])
                add(
                    FilterChain(
                        rname, HttpConnectionManager(config), names, "tls", tls, origins=origins
                    ),
                    server,
                )
            else:
                routes = tuple(self._tcp_routes(server))
                add(
                    FilterChain(
                        f"tls.{server.gateway_port}.{server.gateway.name}",
                        TcpProxy(routes),
                        names,
                        "tls",
                        tls,
                        origins=origins,
                    ),
                    server,
                )
        return chains

    def _passthrough_chains(self, server: BoundServer) -> list[FilterChain]:
        by_sni: dict[tuple[str, ...], list[TcpRoute]] = {}
        for vs in virtual_services(self.resources):
            if server.key not in vs_gateways(vs):
                continue
            hosts = server.admits(vs.namespace)
            for route in self.routes.tls_routes(vs, server.key, server.gateway_port, hosts):
                by_sni.setdefault(route.match.sni_hosts, []).append(route)
        return [
            FilterChain(
                f"sni.{','.join(snis)}",
                TcpProxy(tuple(routes)),
                snis,
                "tls",
                origins=tuple(dict.fromkeys(r.origin for r in routes)),
            )
            for snis, routes in by_sni.items()
        ]
