"""Live status documents: clusters with their endpoints' health, and Envoy-style stat lines.

``cluster_statuses`` has the shape of Envoy's ``/clusters?format=json`` (``ClusterStatuses``:
``host_statuses[].address.socket_address``, ``stats``, ``health_status.eds_health_status`` and
``failed_outlier_check``), which is what ``istioctl proxy-config endpoint`` reads, plus each
endpoint's labels, origin and outlier counters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from isthmus.obs.configdump import to_json
from isthmus.obs.exposition import MetricsState
from isthmus.obs.labels import HTTP_LABELS, TCP_LABELS
from isthmus.obs.views import ClusterView, ConfigView, EndpointView
from isthmus.snapshot.types import Cluster, Snapshot

SERVER_STATES = ("LIVE", "DRAINING", "PRE_INITIALIZING")


def host_statuses(cluster: Cluster, state: ClusterView | None) -> list[dict[str, Any]]:
    """Each endpoint of ``cluster`` with its live counters (zeros before any traffic)."""
    live: dict[str, EndpointView] = {}
    if state is not None:
        live = {ep.key: ep for ep in state.endpoints}
    out = []
    for endpoint in cluster.endpoints:
        ep = live.get(endpoint.key)
        ejected = bool(state is not None and ep is not None and state.is_ejected(ep))
        outlier = ep.outlier if ep is not None else None
        out.append(
            {
                "address": {
                    "socket_address": {"address": endpoint.address, "port_value": endpoint.port}
                },
                "stats": [
                    {
                        "name": "cx_active",
                        "type": "GAUGE",
                        "value": ep.active_connections if ep else 0,
                    },
                    {
                        "name": "rq_active",
                        "type": "GAUGE",
                        "value": ep.active_requests if ep else 0,
                    },
                ],
                "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": ejected},
                "weight": endpoint.weight,
                "labels": dict(endpoint.labels),
                "origin": to_json(endpoint.origin),
                "outlier": {
                    "ejected": ejected,
                    "ejected_until_monotonic": outlier.ejected_until if outlier else None,
                    "times_ejected": outlier.times_ejected if outlier else 0,
                    "consecutive_5xx": outlier.consecutive_5xx if outlier else 0,
                    "consecutive_gateway_errors": (
                        outlier.consecutive_gateway_errors if outlier else 0
                    ),
                    "consecutive_local_origin_failures": (
                        outlier.consecutive_local_origin_failures if outlier else 0
                    ),
                },
            }
        )
    return out


def cluster_statuses(
    snapshot: Snapshot | None, lookup: Callable[[str], ClusterView | None]
) -> list[dict[str, Any]]:
    """Every cluster of ``snapshot``, sorted by name, with :func:`host_statuses`."""
    if snapshot is None:
        return []
    return [
        {
            "name": name,
            "service": snapshot.clusters[name].service,
            "host_statuses": host_statuses(snapshot.clusters[name], lookup(name)),
        }
        for name in sorted(snapshot.clusters)
    ]


def clusters_text(statuses: list[dict[str, Any]]) -> str:
    """Envoy's plain ``/clusters`` output: ``cluster::host:port::stat::value`` lines."""
    lines: list[str] = []
    for cluster in statuses:
        name = cluster["name"]
        lines.append(f"{name}::observability_name::{name}")
        for host in cluster["host_statuses"]:
            sa = host["address"]["socket_address"]
            prefix = f"{name}::{sa['address']}:{sa['port_value']}"
            for stat in host["stats"]:
                lines.append(f"{prefix}::{stat['name']}::{stat['value']}")
            failed = host["health_status"]["failed_outlier_check"]
            lines.append(
                f"{prefix}::health_flags::{'/failed_outlier_check' if failed else 'healthy'}"
            )
            lines.append(f"{prefix}::weight::{host['weight']}")
    return "".join(line + "\n" for line in lines)


def stat_lines(
    *,
    state: str,
    uptime: float,
    config: ConfigView | None,
    listener_connections: Mapping[str, int],
    clusters: list[dict[str, Any]],
    metrics: MetricsState | None,
) -> list[str]:
    """Envoy-style ``name: value`` lines (server, listener, cluster, isthmus and istio stats)."""
    lines = [
        f"server.live: {int(state == 'LIVE')}",
        f"server.state: {SERVER_STATES.index(state)}",
        f"server.uptime: {int(uptime)}",
    ]
    if config is not None:
        lines.append(f"isthmus.config.reloads_ok: {config.reloads_ok}")
        lines.append(f"isthmus.config.reloads_rejected: {config.reloads_rejected}")
    for name, count in listener_connections.items():
        lines.append(f"listener.{name}.downstream_cx_active: {count}")
    for cluster in clusters:
        lines.extend(_cluster_lines(cluster))
    if metrics is not None:
        lines.extend(_istio_lines(metrics))
    return sorted(lines)


def _cluster_lines(cluster: dict[str, Any]) -> list[str]:
    prefix = f"cluster.{cluster['name']}"
    hosts = cluster["host_statuses"]
    ejected = sum(1 for h in hosts if h["health_status"]["failed_outlier_check"])
    totals = {"cx_active": 0, "rq_active": 0}
    for host in hosts:
        for stat in host["stats"]:
            totals[stat["name"]] = totals.get(stat["name"], 0) + int(stat["value"])
    ejections = sum(h["outlier"]["times_ejected"] for h in hosts)
    return [
        f"{prefix}.membership_total: {len(hosts)}",
        f"{prefix}.membership_healthy: {len(hosts) - ejected}",
        f"{prefix}.outlier_detection.ejections_active: {ejected}",
        f"{prefix}.outlier_detection.ejections_enforced_total: {ejections}",
        f"{prefix}.upstream_cx_active: {totals['cx_active']}",
        f"{prefix}.upstream_rq_active: {totals['rq_active']}",
    ]


_TCP_NAMES = (
    "istio_tcp_connections_opened_total",
    "istio_tcp_connections_closed_total",
    "istio_tcp_sent_bytes_total",
    "istio_tcp_received_bytes_total",
)


def _istio_lines(state: MetricsState) -> list[str]:
    """Istio counters as ``name{labels}: value`` (histograms: ``/stats/prometheus``)."""
    lines = []
    for labels, cell in state["http"]:
        tags = ",".join(f'{k}="{v}"' for k, v in zip(HTTP_LABELS, labels, strict=True))
        lines.append(f"istio_requests_total{{{tags}}}: {int(cell[0])}")
    for labels, counts in state["tcp"]:
        tags = ",".join(f'{k}="{v}"' for k, v in zip(TCP_LABELS, labels, strict=True))
        for name, value in zip(_TCP_NAMES, counts, strict=True):
            lines.append(f"{name}{{{tags}}}: {int(value)}")
    return lines
