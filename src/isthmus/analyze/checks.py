"""Checks over the whole config, beyond what translating for one gateway finds.

Each check is a function ``(resources, registry, identity) -> list[Diagnostic]`` so a table test
can run one alone.  Messages follow ``istioctl analyze``'s wording where Istio has the check.
"""

from __future__ import annotations

from collections.abc import Callable

from isthmus.model import Gateway, ResourceSet
from isthmus.model.virtualservice import HTTPMatchRequest
from isthmus.translate import diagnostics as d
from isthmus.translate.binding import vs_gateways, vs_hosts
from isthmus.translate.clusters import ClusterBuilder
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.gateways import gateway_services
from isthmus.translate.hosts import fqdn, overlap, resolve_gateway_ref, split_server_host
from isthmus.translate.identity import GatewayIdentity, selects
from isthmus.translate.registry import Registry
from isthmus.translate.routes import RouteBuilder

Check = Callable[[ResourceSet, Registry, GatewayIdentity], list[Diagnostic]]
MISSING_GATEWAY_SERVICE = "ISM0002"
VIRTUAL_SERVICE_MESH_ONLY = "ISM0003"


def _gateway_index(resources: ResourceSet) -> dict[str, Gateway]:
    return {f"{g.namespace}/{g.name}": g for g in resources.gateways}


def referenced_gateways(
    resources: ResourceSet, registry: Registry, identity: GatewayIdentity
) -> list[Diagnostic]:
    """IST0101 for a VirtualService naming a Gateway that does not exist, with the fix when a
    Gateway of that name lives in another namespace."""
    gateways = _gateway_index(resources)
    out: list[Diagnostic] = []
    for vs in resources.virtual_services:
        refs: list[tuple[str, str]] = [
            (f"spec.gateways[{i}]", g) for i, g in enumerate(vs_gateways(vs)) if vs.spec.gateways
        ]
        for kind in ("http", "tls", "tcp"):
            for i, rule in enumerate(getattr(vs.spec, kind)):
                for j, match in enumerate(rule.match):
                    for k, g in enumerate(match.gateways):
                        path = f"spec.{kind}[{i}].match[{j}].gateways[{k}]"
                        refs.append((path, resolve_gateway_ref(g, vs.namespace)))
        for path, key in refs:
            if key == "mesh" or key in gateways:
                continue
            name = key.split("/", 1)[1]
            others = [k for k, g in gateways.items() if g.name == name]
            hint = f' (a Gateway of that name exists: write "{others[0]}")' if others else ""
            out.append(
                d.error(
                    d.REFERENCED_RESOURCE_NOT_FOUND,
                    vs.ref,
                    path,
                    f'Referenced gateway not found: "{key}"{hint}',
                )
            )
    return out


def destinations(
    resources: ResourceSet, registry: Registry, identity: GatewayIdentity
) -> list[Diagnostic]:
    """Every destination of every VirtualService: host, port, subset, weights, regexes."""
    clusters = ClusterBuilder(registry, identity.namespace)
    routes = RouteBuilder(resources, clusters)
    for vs in resources.virtual_services:
        if not vs.spec.hosts:
            continue
        routes.http_routes(vs, None)
        routes.tcp_routes(vs, None, None)
        routes.tls_routes(vs, None, None, ["*"])
    return [*routes.diagnostics, *clusters.diagnostics]


def hosts_in_gateways(
    resources: ResourceSet, registry: Registry, identity: GatewayIdentity
) -> list[Diagnostic]:
    """IST0132: a VirtualService host that no server of its Gateway serves."""
    gateways = _gateway_index(resources)
    out: list[Diagnostic] = []
    for vs in resources.virtual_services:
        for key in vs_gateways(vs):
            gw = gateways.get(key)
            if gw is None:
                continue
            servers = [split_server_host(h, gw.namespace) for s in gw.spec.servers for h in s.hosts]
            allowed = [h for ns, h in servers if ns in ("*", vs.namespace)]
            missing = [h for h in vs_hosts(vs) if not any(overlap(h, a) for a in allowed)]
            if missing:
                out.append(
                    d.warning(
                        d.VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY,
                        vs.ref,
                        "spec.hosts",
                        f"one or more host(s) [{', '.join(missing)}] defined in VirtualService "
                        f"{vs.namespace}/{vs.name} not found in Gateway {key}.",
                    )
                )
    return out


def conflicting_gateways(
    resources: ResourceSet, registry: Registry, identity: GatewayIdentity
) -> list[Diagnostic]:
    """IST0145: two Gateways with the same selector claim one port and an overlapping host."""
    out: list[Diagnostic] = []
    gws = sorted(resources.gateways, key=lambda g: g.order)
    for i, a in enumerate(gws):
        for b in gws[:i]:
            if (a.spec.selector or {}) != (b.spec.selector or {}):
                continue
            for sa in a.spec.servers:
                for sb in b.spec.servers:
                    if sa.port.number != sb.port.number:
                        continue
                    ha = [split_server_host(h, a.namespace)[1] for h in sa.hosts]
                    hb = [split_server_host(h, b.namespace)[1] for h in sb.hosts]
                    common = sorted({x for x in ha for y in hb if overlap(x, y)})
                    if not common:
                        continue
                    selector = ",".join(f"{k}={v}" for k, v in (a.spec.selector or {}).items())
                    out.append(
                        d.error(
                            d.CONFLICTING_GATEWAYS,
                            a.ref,
                            "spec.servers",
                            f"Conflict with gateways {b.namespace}/{b.name} (workload selector "
                            f"{selector}, port {sa.port.number}, hosts {', '.join(common)}).",
                        )
                    )
    return out


def _match_key(m: HTTPMatchRequest) -> str:
    return m.model_dump_json(exclude={"name", "stat_prefix"}, exclude_defaults=True)


def _shadows(earlier: HTTPMatchRequest, later: HTTPMatchRequest) -> bool:
    """``earlier`` matches everything ``later`` does: identical, or a bare uri prefix
    (nothing else set) that ``later``'s uri starts with."""
    if _match_key(earlier) == _match_key(later):
        return True
    only_uri = _match_key(earlier.model_copy(update={"uri": None})) == "{}"
    if not only_uri or earlier.uri is None or earlier.uri.prefix is None:
        return False
    if earlier.ignore_uri_case != later.ignore_uri_case or later.uri is None:
        return False
    value = later.uri.exact if later.uri.exact is not None else later.uri.prefix
    return value is not None and value.startswith(earlier.uri.prefix)


def unreachable_matches(
    resources: ResourceSet, registry: Registry, identity: GatewayIdentity
) -> list[Diagnostic]:
    """IST0130 rules after a catch-all; IST0131 matches an earlier match already covers."""
    out: list[Diagnostic] = []
    for vs in resources.virtual_services:
        for kind in ("http", "tcp", "tls"):
            rules = getattr(vs.spec, kind)
            for i, rule in enumerate(rules[:-1]):
                if not rule.match:
                    out.append(
                        d.error(
                            d.VIRTUAL_SERVICE_UNREACHABLE_RULE,
                            vs.ref,
                            f"spec.{kind}[{i + 1}]",
                            f"VirtualService rule #{i + 1} not used (only the last rule can "
                            f"have no matches; rule #{i} matches everything).",
                        )
                    )
                    break
        seen: list[tuple[int, int, HTTPMatchRequest]] = []
        for i, rule in enumerate(vs.spec.http):
            for j, m in enumerate(rule.match):
                for pi, pj, prior in seen:
                    if _shadows(prior, m):
                        out.append(
                            d.warning(
                                d.VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
                                vs.ref,
                                f"spec.http[{i}].match[{j}]",
                                f"VirtualService rule #{i} match #{j} is not used "
                                f"(it is covered by rule #{pi} match #{pj}).",
                            )
                        )
                        break
                seen.append((i, j, m))
    return out


def subsets_select_endpoints(
    resources: ResourceSet, registry: Registry, identity: GatewayIdentity
) -> list[Diagnostic]:
    """IST0173 for subsets that pick no endpoint; IST0174 for rules naming unknown hosts."""
    out: list[Diagnostic] = []
    for dr in resources.destination_rules:
        host = fqdn(dr.spec.host, dr.namespace)
        info = registry.lookup(host)
        if info is None:
            if not host.startswith("*"):
                out.append(
                    d.warning(
                        d.UNKNOWN_DESTINATION_RULE_HOST,
                        dr.ref,
                        "spec.host",
                        f"DestinationRule refers to unknown host {host}.",
                    )
                )
            continue
        endpoints = [e for p in info.ports for e in registry.endpoints(info, p)]
        if info.cluster_type in ("STRICT_DNS", "LOGICAL_DNS", "ORIGINAL_DST"):
            continue
        for k, subset in enumerate(dr.spec.subsets):
            if not any(selects(subset.labels, e.labels) for e in endpoints):
                labels = ",".join(f"{a}={b}" for a, b in subset.labels.items())
                out.append(
                    d.warning(
                        d.SUBSET_SELECTS_NO_PODS,
                        dr.ref,
                        f"spec.subsets[{k}]",
                        f"The Subset {subset.name} defined in the DestinationRule does not select "
                        f"any endpoint of {host} (labels {labels}); add Pods, WorkloadEntries or "
                        "Endpoints that carry these labels.",
                    )
                )
    return out


def external_name_ports(
    resources: ResourceSet, registry: Registry, identity: GatewayIdentity
) -> list[Diagnostic]:
    """IST0150: Istio derives an ExternalName Service's protocol from its port names."""
    prefixes = (
        "http",
        "http2",
        "https",
        "grpc",
        "grpc-web",
        "tcp",
        "tls",
        "mongo",
        "redis",
        "mysql",
        "udp",
    )
    out: list[Diagnostic] = []
    for svc in resources.services:
        if svc.spec.type != "ExternalName":
            continue
        for k, port in enumerate(svc.spec.ports):
            base = port.name.split("-", 1)[0].lower()
            if base not in prefixes and not port.app_protocol:
                out.append(
                    d.warning(
                        d.EXTERNAL_NAME_INVALID_PORT_NAME,
                        svc.ref,
                        f"spec.ports[{k}].name",
                        f'Port name "{port.name}" of ExternalName service is invalid: name it '
                        "with a protocol prefix (http, https, tcp, tls, ...).",
                    )
                )
    return out


def gateway_service(
    resources: ResourceSet, registry: Registry, identity: GatewayIdentity
) -> list[Diagnostic]:
    """A Service in the gateway namespace meant to front the gateway but selecting nothing."""
    if gateway_services(resources, identity):
        return []
    labels = ",".join(f"{k}={v}" for k, v in identity.workload_labels.items())
    return [
        d.warning(
            MISSING_GATEWAY_SERVICE,
            svc.ref,
            "spec.selector",
            f"this Service has no selector, so it does not front the gateway workload "
            f"({labels}); Gateway ports are bound as written. Add `selector: "
            f"{{{labels.replace('=', ': ')}}}` to make its ports (and targetPorts) apply.",
        )
        for svc in resources.services
        if svc.namespace == identity.namespace
        and not svc.spec.selector
        and svc.spec.type != "ExternalName"
        and "gateway" in svc.name
    ]


def mesh_only_virtual_services(
    resources: ResourceSet, registry: Registry, identity: GatewayIdentity
) -> list[Diagnostic]:
    """A VirtualService with no ``gateways`` applies to sidecars only, never an ingress."""
    out: list[Diagnostic] = []
    for vs in resources.virtual_services:
        if vs.spec.gateways or not vs.spec.hosts:
            continue
        for gw in resources.gateways:
            hosts = [split_server_host(h, gw.namespace) for s in gw.spec.servers for h in s.hosts]
            if any(
                ns in ("*", vs.namespace) and overlap(h, sh)
                for h in vs_hosts(vs)
                for ns, sh in hosts
            ):
                out.append(
                    d.warning(
                        VIRTUAL_SERVICE_MESH_ONLY,
                        vs.ref,
                        "spec.gateways",
                        f"no gateways listed, so this VirtualService applies to the mesh only and "
                        f"not to Gateway {gw.namespace}/{gw.name} whose hosts match; add "
                        f'gateways: ["{gw.namespace}/{gw.name}"]',
                    )
                )
                break
    return out


ALL_CHECKS: tuple[Check, ...] = (
    referenced_gateways,
    destinations,
    hosts_in_gateways,
    conflicting_gateways,
    unreachable_matches,
    subsets_select_endpoints,
    external_name_ports,
    gateway_service,
    mesh_only_virtual_services,
)
