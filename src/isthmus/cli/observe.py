"""Wiring of the obs layer for ``isthmus run``: metrics, access log, admin/status/metrics
ports, from the flags."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from isthmus.control.reload import ConfigState
from isthmus.dataplane.server import Gateway
from isthmus.dataplane.telemetry import Telemetry
from isthmus.obs import admin
from isthmus.obs.accesslog import AccessLog
from isthmus.obs.exposition import MetricsState
from isthmus.obs.gauges import Sources
from isthmus.obs.metrics import Metrics
from isthmus.obs.views import ClusterView
from isthmus.obs.workerstate import WorkerState, endpoint_samples
from isthmus.snapshot.types import Snapshot
from isthmus.translate.identity import GatewayIdentity


def add_observe_args(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("observability")
    group.add_argument(
        "--admin-port",
        type=int,
        default=15000,
        help="admin API: /config_dump, /clusters, /stats ... (0 = off)",
    )
    group.add_argument("--admin-bind", default="127.0.0.1", metavar="ADDR")
    group.add_argument("--status-port", type=int, default=15021, help="/healthz/ready (0 = off)")
    group.add_argument(
        "--metrics-port",
        type=int,
        default=15090,
        help="/stats/prometheus (0 = off; with --admin-port 0 too, no metrics are counted)",
    )
    group.add_argument(
        "--access-log",
        default="stdout",
        choices=("stdout", "off"),
        help="Envoy's access log to stdout (default) or off",
    )
    group.add_argument("--access-log-format", default="text", choices=("text", "json"))


@dataclass
class GatewayProvider:
    """What the admin API reads from a running gateway."""

    gateway: Gateway
    config_state: ConfigState
    identity_: GatewayIdentity
    metrics: Metrics | None
    started_: float = field(default_factory=time.time)

    @property
    def snapshot(self) -> Snapshot | None:
        return self.gateway.snapshot

    @property
    def config(self) -> ConfigState:
        return self.config_state

    @property
    def identity(self) -> GatewayIdentity:
        return self.identity_

    @property
    def ready(self) -> bool:
        return self.gateway.ready and not self.gateway.draining

    @property
    def draining(self) -> bool:
        return self.gateway.draining

    @property
    def started(self) -> float:
        return self.started_

    def cluster_state(self, name: str) -> ClusterView | None:
        cluster = self.gateway.snapshot.clusters.get(name)
        if cluster is None or name not in self.gateway.clusters:
            return None
        return self.gateway.clusters.get(cluster)

    def listener_addresses(self) -> Mapping[str, tuple[str, int]]:
        return self.gateway.addresses()

    def listener_connections(self) -> Mapping[str, int]:
        return self.gateway.connections_by_listener()

    def metrics_state(self) -> MetricsState | None:
        return self.metrics.state() if self.metrics is not None else None


def telemetry_for(
    args: argparse.Namespace,
    identity: GatewayIdentity,
    config: ConfigState,
    gateway_ref: list[Gateway],
) -> Telemetry:
    # alone on stdout unless a worker or a takeover: then whole batches per write
    alone = args.worker_fds is None and not args.takeover
    log = (
        None
        if args.access_log == "off"
        else AccessLog(args.access_log_format, sys.stdout, exclusive=alone)
    )

    def clusters() -> list[ClusterView]:
        if not gateway_ref:
            return []
        gw = gateway_ref[0]
        return [gw.clusters.get(c) for n, c in gw.snapshot.clusters.items() if n in gw.clusters]

    sources = Sources(
        config=lambda: config,
        listener_connections=lambda: (
            gateway_ref[0].connections_by_listener() if gateway_ref else {}
        ),
        clusters=clusters,
        access_log_dropped=(lambda: log.dropped) if log is not None else None,
    )
    if not (args.metrics_port or args.admin_port or args.metrics_state):
        return Telemetry(None, log)  # nothing could ever read the metrics: count none
    workload = identity.labels.get("app") or "istio-ingressgateway"
    metrics = Metrics(
        workload=workload,
        namespace=identity.namespace,
        labels=identity.workload_labels,
        sources=sources,
    )
    return Telemetry(metrics, log)


async def start_ports(
    args: argparse.Namespace, provider: admin.AdminProvider
) -> list[asyncio.Server]:
    """Bind the admin/status/metrics ports; a port that is taken only warns (during a
    takeover the old process still holds them)."""
    servers: list[asyncio.Server] = []
    for kind, port, host in (
        ("admin", args.admin_port, args.admin_bind),
        ("status", args.status_port, "0.0.0.0"),
        ("metrics", args.metrics_port, "0.0.0.0"),
    ):
        if not port:
            continue
        try:
            servers += await admin.start(
                provider,
                admin=(host, port) if kind == "admin" else None,
                status=(args.bind or host, port) if kind == "status" else None,
                metrics=(args.bind or host, port) if kind == "metrics" else None,
            )
        except OSError as exc:
            print(
                f"isthmus: {kind} port {port} not served: {exc.strerror or exc}",
                file=sys.stderr,
                flush=True,
            )
    return servers


def worker_state(metrics: Metrics) -> WorkerState:
    """What a worker publishes for its supervisor (``--metrics-state``): its metrics, the
    config version it serves and its endpoints' live state."""
    state = cast(WorkerState, metrics.state())
    sources = metrics.sources
    config = sources.config() if sources.config is not None else None
    if config is not None:
        state["config_version"] = config.version
    if sources.clusters is not None:
        state["endpoints"] = endpoint_samples(sources.clusters())
    return state
