"""Which Gateways this workload serves, on which ports, and how servers share a port."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from isthmus.model import Gateway, ResourceSet, Service
from isthmus.model.gateway import Server
from isthmus.translate import diagnostics as d
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.hosts import split_server_host
from isthmus.translate.identity import GatewayIdentity, selects

ServerKind = Literal["http", "https", "tcp", "tls", "passthrough", "auto_passthrough"]
Family = Literal["http", "tcp", "tls"]
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
FAMILY: dict[ServerKind, Family] = {
    "http": "http",
    "tcp": "tcp",
    "https": "tls",
    "tls": "tls",
    "passthrough": "tls",
    "auto_passthrough": "tls",
}


@dataclass(frozen=True)
class BoundServer:
    """A Gateway server placed on a bind port of this workload."""

    gateway: Gateway
    index: int
    server: Server
    kind: ServerKind
    gateway_port: int
    bind_port: int
    address: str
    hosts: tuple[tuple[str, str], ...]

    @property
    def key(self) -> str:
        return f"{self.gateway.namespace}/{self.gateway.name}"

    @property
    def path(self) -> str:
        return f"spec.servers[{self.index}]"

    def admits(self, namespace: str) -> list[str]:
        """The server hosts a VirtualService from ``namespace`` may bind to."""
        return [h for ns, h in self.hosts if ns in ("*", namespace)]


@dataclass
class PortGroup:
    """Every server bound at one address and port: one listener."""

    address: str
    bind_port: int
    family: Family
    servers: list[BoundServer] = field(default_factory=list)

    @property
    def gateway_port(self) -> int:
        return self.servers[0].gateway_port


def selected_gateways(resources: ResourceSet, identity: GatewayIdentity) -> list[Gateway]:
    """Gateways whose selector matches this workload's labels, in any namespace (Istio's
    default, PILOT_SCOPE_GATEWAY_TO_NAMESPACE=false), oldest first."""
    labels = identity.workload_labels
    return sorted(
        (g for g in resources.gateways if selects(g.spec.selector, labels)),
        key=lambda g: g.order,
    )


def gateway_services(resources: ResourceSet, identity: GatewayIdentity) -> list[Service]:
    """Services in the workload's namespace whose selector picks the workload."""
    labels = identity.workload_labels
    return [
        s
        for s in resources.services
        if s.namespace == identity.namespace
        and s.spec.selector
        and selects(s.spec.selector, labels)
    ]


def resolve_bind_ports(number: int, services: list[Service]) -> list[int] | None:
    """Where a Gateway port listens: the ``targetPort`` of the gateway Service port with that
    number (Istio's resolvePorts).  Without any gateway Service the number is used as is.
    A port that is already a targetPort is accepted as written (as Istio's analyzer does).
    None means the port is not exposed by the gateway's Service.
    """
    if not services:
        return [number]
    found: set[int] = set()
    targets: set[int] = set()
    for svc in services:
        for sp in svc.spec.ports:
            target = sp.target_port if isinstance(sp.target_port, int) else sp.port
            targets.add(target)
            if sp.port == number:
                found.add(target)
    if found:
        return sorted(found)
    if number in targets:
        return [number]
    return None


def server_kind(server: Server) -> ServerKind:
    protocol = server.port.protocol
    mode = server.tls.mode if server.tls else None
    if protocol in ("HTTPS", "TLS"):
        if mode == "PASSTHROUGH" or (mode is None and protocol == "TLS"):
            return "passthrough"
        if mode == "AUTO_PASSTHROUGH":
            return "auto_passthrough"
        return "https" if protocol == "HTTPS" else "tls"
    if protocol in HTTP_PROTOCOLS:
        return "http"
    return "tcp"


def place_servers(
    gateways: list[Gateway], services: list[Service], identity: GatewayIdentity
) -> tuple[list[PortGroup], list[Diagnostic]]:
    groups: dict[tuple[str, int], PortGroup] = {}
    diags: list[Diagnostic] = []
    for gw in gateways:
        if not gw.spec.servers:
            diags.append(d.invalid(gw.ref, "spec.servers", "gateway must have at least one server"))
        for i, server in enumerate(gw.spec.servers):
            path = f"spec.servers[{i}]"
            if not server.hosts:
                diags.append(
                    d.invalid(gw.ref, f"{path}.hosts", "server must have at least one host")
                )
                continue
            kind = server_kind(server)
            if kind == "https" and (server.tls is None):
                diags.append(
                    d.invalid(
                        gw.ref,
                        f"{path}.tls",
                        "server must have TLS settings for HTTPS/TLS protocols",
                    )
                )
                continue
            ports = resolve_bind_ports(server.port.number, services)
            if ports is None:
                names = ", ".join(f"{s.ref}" for s in services)
                diags.append(
                    d.error(
                        d.GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                        gw.ref,
                        f"{path}.port.number",
                        f"The gateway is listening on a target port (port {server.port.number}) "
                        f"that is not defined in the Service associated with its workload "
                        f"({names}); this server is not served",
                    )
                )
                continue
            hosts = tuple(split_server_host(h, gw.namespace) for h in server.hosts)
            address = server.bind or "0.0.0.0"
            for bind_port in ports:
                bound = BoundServer(
                    gw, i, server, kind, server.port.number, bind_port, address, hosts
                )
                group = groups.get((address, bind_port))
                if group is None:
                    group = PortGroup(address, bind_port, FAMILY[kind])
                    groups[(address, bind_port)] = group
                elif group.family != FAMILY[kind]:
                    first = group.servers[0]
                    diags.append(
                        d.error(
                            d.CONFLICTING_GATEWAYS,
                            gw.ref,
                            f"{path}.port",
                            f"port {bind_port} already serves {first.server.port.protocol} for "
                            f"{first.gateway.ref}; a {server.port.protocol} server cannot share "
                            "it, so this server is not served",
                        )
                    )
                    continue
                group.servers.append(bound)
    return sorted(groups.values(), key=lambda g: (g.bind_port, g.address)), diags
