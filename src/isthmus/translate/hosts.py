"""Host names as Istio reads them: short names, FQDNs, wildcards, ``ns/host`` and gateway refs."""

from __future__ import annotations

from isthmus.snapshot.match import host_matches

CLUSTER_DOMAIN = "svc.cluster.local"
MESH_GATEWAY = "mesh"


def fqdn(host: str, namespace: str) -> str:
    """``reviews`` in namespace ``default`` → ``reviews.default.svc.cluster.local``.

    Istio (pilot/pkg/model ResolveShortnameToFQDN) expands names without a dot; names with a
    dot and wildcards are kept as written.
    """
    host = host.lower()
    if host == "*" or host.startswith("*") or "." in host:
        return host
    return f"{host}.{namespace}.{CLUSTER_DOMAIN}"


def service_fqdn(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.{CLUSTER_DOMAIN}"


def overlap(a: str, b: str) -> bool:
    """Istio's host intersection: either side may be a wildcard."""
    return host_matches(a, b) or host_matches(b, a)


def narrower(a: str, b: str) -> str:
    """Of two overlapping hosts, the more specific one (what a virtual host should serve)."""
    if host_matches(a, b):
        return b
    return a


def split_server_host(host: str, gateway_namespace: str) -> tuple[str, str]:
    """``ns/host`` → (namespace or ``*``, host); ``./host`` means the Gateway's namespace."""
    if "/" in host:
        ns, _, name = host.partition("/")
        if ns == ".":
            ns = gateway_namespace
        return ns, name.lower()
    return "*", host.lower()


def resolve_gateway_ref(ref: str, vs_namespace: str) -> str:
    """A VirtualService ``gateways`` entry as ``namespace/name`` (or ``mesh``).

    Istio (pilot/pkg/model/config.go): ``name`` is in the VirtualService's namespace,
    ``ns/name`` is explicit, ``./name`` is the VirtualService's own namespace and the legacy
    ``name.ns.svc.cluster.local`` (or ``name.ns``) means ``ns/name``.
    """
    if ref == MESH_GATEWAY:
        return ref
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return f"{vs_namespace if ns == '.' else ns}/{name}"
    if "." in ref:
        parts = ref.split(".")
        return f"{parts[1]}/{parts[0]}"
    return f"{vs_namespace}/{ref}"
