"""``isthmus proxy-config``: a running gateway's config, in ``istioctl proxy-config`` tables.

Reads the admin API (``/config_dump``, ``/clusters?format=json``, ``/listeners?format=json``)
and prints the columns istioctl prints, filled the way istioctl fills them
(istio/istio ``istioctl/pkg/writer/envoy/configdump``, ``.../clusters``, ``.../compare/sds``):
listener destinations ``Route: http.8080`` / ``Cluster: outbound|...``, routes' ``VIRTUAL
SERVICE`` as ``name.namespace``, clusters ``outbound`` with ``-`` for no subset, endpoints'
``OUTLIER CHECK`` ``OK``/``FAILED``, secrets' 32-digit hex serial and RFC 3339 dates.
``-o json`` prints the admin API's JSON for that part instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

DEFAULT_ADMIN = "127.0.0.1:15000"
KINDS = ("listeners", "routes", "clusters", "endpoints", "secrets")
_ALIASES = {
    "listener": "listeners",
    "l": "listeners",
    "route": "routes",
    "r": "routes",
    "cluster": "clusters",
    "c": "clusters",
    "endpoint": "endpoints",
    "ep": "endpoints",
    "secret": "secrets",
    "s": "secrets",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "proxy-config",
        aliases=["pc"],
        help="show a running gateway's listeners, routes, clusters, endpoints or secrets",
    )
    p.add_argument("kind", choices=[*KINDS, *_ALIASES], metavar="|".join(KINDS))
    p.add_argument(
        "--admin",
        default=DEFAULT_ADMIN,
        metavar="HOST:PORT",
        help=f"the gateway's admin address (default {DEFAULT_ADMIN})",
    )
    p.add_argument("-o", "--output", choices=("short", "json"), default="short")
    p.set_defaults(func=run)


class AdminError(Exception):
    """The admin API could not be read; the message says where and why."""


def fetch(admin: str, path: str, timeout: float = 10.0) -> Any:
    url = f"http://{admin}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AdminError(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AdminError(f"cannot reach the admin API at {admin}: {reason}") from exc
    except ValueError as exc:
        raise AdminError(f"{url}: not JSON ({exc})") from exc


def run(args: argparse.Namespace) -> int:
    kind = _ALIASES.get(args.kind, args.kind)
    try:
        text = render(kind, args.admin, args.output)
    except AdminError as exc:
        print(f"isthmus: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


def render(kind: str, admin: str, output: str = "short") -> str:
    """What ``isthmus proxy-config KIND`` prints for the gateway at ``admin``."""
    if kind == "endpoints":
        statuses = fetch(admin, "/clusters?format=json")["cluster_statuses"]
        if output == "json":
            return json.dumps(statuses, indent=2) + "\n"
        return endpoints_table(statuses)
    dump = fetch(admin, "/config_dump")
    if kind == "listeners":
        bound = fetch(admin, "/listeners?format=json")["listener_statuses"]
        if output == "json":
            return json.dumps(dump.get("listeners", []), indent=2) + "\n"
        return listeners_table(dump, bound)
    if kind == "routes":
        configs = route_configs(dump)
        return json.dumps(configs, indent=2) + "\n" if output == "json" else routes_table(configs)
    if kind == "clusters":
        clusters = dump.get("clusters", [])
        return (
            json.dumps(clusters, indent=2) + "\n" if output == "json" else clusters_table(clusters)
        )
    if kind == "secrets":
        secrets = dump.get("secrets", [])
        return json.dumps(secrets, indent=2) + "\n" if output == "json" else secrets_table(secrets)
    raise ValueError(f"unknown kind {kind!r}")


def tabulate(rows: list[list[str]], padding: int) -> str:
    """Go's ``text/tabwriter`` as istioctl uses it (minwidth 0, pad with spaces): every cell
    but a line's last is padded to its column's widest cell plus ``padding``."""
    columns = max((len(r) for r in rows), default=0)
    widths = [0] * columns
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell) + padding)
    out = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        out.append("".join(cells) + (row[-1] if row else ""))
    return "".join(line + "\n" for line in out)


# --- listeners -------------------------------------------------------------------------------


def _chain_rows(chain: dict[str, Any]) -> list[tuple[str, str]]:
    """``(MATCH, DESTINATION)`` of one filter chain."""
    match = f"SNI: {','.join(chain['server_names'])}" if chain.get("server_names") else "ALL"
    app = chain["application"]
    if chain.get("auto_passthrough"):
        return [("SNI: outbound_.PORT_.SUBSET_.HOST", "Cluster: named by SNI")]
    if app["type"] == "http_connection_manager":
        return [(match, f"Route: {app['route_config']['name']}")]
    routes = app.get("routes", [])
    rows = []
    for route in routes:
        clusters = ",".join(c["cluster"] for c in route["clusters"])
        route_match = match
        if len(routes) > 1:
            described = route["match"]["description"]
            route_match = described if match == "ALL" else f"{match}; {described}"
        rows.append((route_match, f"Cluster: {clusters}"))
    return rows or [(match, "Non-HTTP/Non-TCP")]


def listeners_table(dump: dict[str, Any], bound: Iterable[dict[str, Any]] = ()) -> str:
    addresses = {
        b["name"]: (b["local_address"]["socket_address"]["address"],
                    b["local_address"]["socket_address"]["port_value"])
        for b in bound
    }  # fmt: skip
    listeners = []
    for listener in dump.get("listeners", []):
        address, port = addresses.get(listener["name"], (listener["address"], listener["port"]))
        listeners.append((int(port), address, listener))
    listeners.sort(key=lambda item: (item[0], item[1]))
    rows = [["ADDRESSES", "PORT", "MATCH", "DESTINATION"]]
    for port, address, listener in listeners:
        matches = [row for chain in listener["filter_chains"] for row in _chain_rows(chain)]
        if not listener["filter_chains"]:
            matches = [("ALL", "Non-HTTP/Non-TCP")]
        matches.sort(key=lambda m: m[1], reverse=True)
        for match, destination in matches:
            rows.append([address, str(port), match, destination])
    return tabulate(rows, 1)


# --- routes ----------------------------------------------------------------------------------


def route_configs(dump: dict[str, Any]) -> list[dict[str, Any]]:
    """The route configurations of every HTTP filter chain, once each, in listener order."""
    seen: dict[str, dict[str, Any]] = {}
    for listener in dump.get("listeners", []):
        for chain in listener["filter_chains"]:
            app = chain["application"]
            if app["type"] == "http_connection_manager":
                seen.setdefault(app["route_config"]["name"], app["route_config"])
    return list(seen.values())


def _domains(domains: list[str]) -> str:
    """istioctl's ``describeRouteDomains``: one domain as is, else the ones without a port."""
    if len(domains) <= 1:
        return domains[0] if domains else ""
    plain = [d for d in domains if ":" not in d or (d.count(":") > 2 and d.endswith("]"))]
    unique = set(plain)
    plain = [
        d
        for d in plain
        if not (
            (d.endswith(".svc.cluster.local") and d.removesuffix(".svc.cluster.local") in unique)
            or (d.endswith(".svc") and d.removesuffix(".svc") in unique)
        )
    ]
    if len(plain) > 2:
        return f"{', '.join(plain[:2])} + {len(plain) - 2} more..."
    return ", ".join(plain)


def _match(match: dict[str, Any]) -> str:
    """istioctl's ``describeMatch``: the path condition only (headers are not shown)."""
    uri = match.get("uri")
    if uri is None:
        return "/*"
    if uri["kind"] == "prefix":
        return f"{uri['value']}*"
    if uri["kind"] == "exact":
        return str(uri["value"])
    if uri["kind"] == "regex":
        return f"regex {uri['value']}"
    return "/*"


def _virtual_service(origin: dict[str, Any] | None) -> str:
    if origin is None or origin.get("kind") != "VirtualService":
        return ""
    return f"{origin['name']}.{origin['namespace']}"


def routes_table(configs: list[dict[str, Any]]) -> str:
    rows = [["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]]
    for config in configs:
        for vhost in config["virtual_hosts"]:
            domains = _domains(vhost["domains"])
            for route in vhost["routes"]:
                origin = route.get("origin")
                rows.append(
                    [config["name"], vhost["name"], domains, _match(route["match"]),
                     _virtual_service(origin)]
                )  # fmt: skip
            if not vhost["routes"]:
                rows.append([config["name"], vhost["name"], domains, "/*", "404"])
    return tabulate(rows, 5)


# --- clusters and endpoints ------------------------------------------------------------------


def _destination_rule(origin: dict[str, Any] | None) -> str:
    if origin is None or origin.get("kind") != "DestinationRule":
        return ""
    return f"{origin['name']}.{origin['namespace']}"


def clusters_table(clusters: list[dict[str, Any]]) -> str:
    def key(c: dict[str, Any]) -> tuple[str, str, int, str]:
        parts = c["name"].split("|")
        if len(parts) == 4:
            return parts[3], parts[2], int(parts[1] or 0), parts[0]
        return c["name"], "", 0, ""

    rows = [["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]]
    for cluster in sorted(clusters, key=key):
        parts = cluster["name"].split("|")
        rule = _destination_rule(cluster.get("policy_origin"))
        if len(parts) == 4:
            direction, port, subset, fqdn = parts
            rows.append([fqdn, port, subset or "-", direction, cluster["type"], rule])
        else:
            rows.append([cluster["name"], "-", "-", "-", cluster["type"], rule])
    return tabulate(rows, 5)


def endpoints_table(statuses: list[dict[str, Any]]) -> str:
    found = []
    for cluster in statuses:
        for host in cluster["host_statuses"]:
            sa = host["address"]["socket_address"]
            health = host.get("health_status", {})
            found.append(
                (
                    sa["address"],
                    int(sa.get("port_value", 0)),
                    cluster["name"],
                    health.get("eds_health_status", "HEALTHY"),
                    "FAILED" if health.get("failed_outlier_check") else "OK",
                )
            )
    found.sort(key=lambda e: (e[0], e[1], e[2]))
    rows = [["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]]
    for address, port, cluster, status, outlier in found:
        endpoint = f"{address}:{port}" if port else address
        rows.append([endpoint, status, outlier, cluster])
    return tabulate(rows, 5)


# --- secrets ---------------------------------------------------------------------------------


def secrets_table(secrets: list[dict[str, Any]]) -> str:
    if not secrets:
        return "No active or warming secrets found.\n"
    rows = [
        ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER",
         "NOT BEFORE"]
    ]  # fmt: skip
    for s in secrets:
        rows.append(
            [
                s["name"],
                s.get("type", "") if s.get("status") == "ACTIVE" else "",
                s.get("status", ""),
                "true" if s.get("valid") else "false",
                s.get("serial_number", ""),
                s.get("not_after", ""),
                s.get("not_before", ""),
            ]
        )
    return tabulate(rows, 5)
