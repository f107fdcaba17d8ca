"""The admin, status and metrics ports of a ``--workers N`` supervisor.

The supervisor serves them for the whole gateway (its workers serve none): the config it
accepted and its reload bookkeeping (``/config_dump``, ``/listeners``, rejected updates
included), the workers' upstream state merged (``/clusters``: :mod:`isthmus.obs.workerstate`),
their metrics summed (``/stats``, ``/stats/prometheus``), and readiness: ``LIVE`` once a
worker serves, ``DRAINING`` from SIGTERM on.  Workers publish their state to files in
``Supervisor.metrics_dir`` once a second (``run --metrics-state``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from isthmus.cli.observe import start_ports
from isthmus.cli.supervisor import Supervisor
from isthmus.control.reload import ConfigState
from isthmus.obs.exposition import MetricsState, merge_states, read_states
from isthmus.obs.gauges import Sources, sample
from isthmus.obs.views import ClusterView
from isthmus.obs.workerstate import WorkerState, merge_clusters
from isthmus.snapshot.types import Snapshot
from isthmus.translate.identity import GatewayIdentity

MAX_STATE_AGE = 5.0
"""A worker's state older than this (seconds) no longer counts as live (its gauges, its
endpoints' active counts); its counters still add to the totals."""
READ_EVERY = 0.2
"""One admin request reads the workers' files once, not once per cluster."""


@dataclass
class SupervisorProvider:
    """An :class:`isthmus.obs.admin.AdminProvider` over a supervisor and its workers."""

    sup: Supervisor
    identity_: GatewayIdentity
    started_: float = field(default_factory=time.time)
    _read_at: float = -1.0
    _states: list[WorkerState] = field(default_factory=list)

    def worker_states(self) -> list[WorkerState]:
        """The states of the workers alive now, fresh ones only (newest read, cached briefly)."""
        now = time.monotonic()
        if now - self._read_at >= READ_EVERY:
            self._states = self._read()
            self._read_at = now
        return self._states

    def _read(self) -> list[WorkerState]:
        if self.sup.metrics_dir is None:
            return []
        live = {w.proc.pid for w in self.sup.workers if w.proc.poll() is None}
        wall = time.time()
        return [
            cast(WorkerState, s)
            for s in read_states(self.sup.metrics_dir)
            if s["pid"] in live and wall - s["time"] <= MAX_STATE_AGE
        ]

    @property
    def snapshot(self) -> Snapshot | None:
        return self.sup.snapshot

    @property
    def config(self) -> ConfigState:
        return self.sup.config

    @property
    def identity(self) -> GatewayIdentity:
        return self.identity_

    @property
    def ready(self) -> bool:
        return not self.sup.stopping and bool(self.worker_states())

    @property
    def draining(self) -> bool:
        return self.sup.stopping

    @property
    def started(self) -> float:
        return self.started_

    def cluster_state(self, name: str) -> ClusterView | None:
        return merge_clusters(self.sup.snapshot, self.worker_states()).get(name)

    def listener_addresses(self) -> Mapping[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        for name, sock in self.sup.registry.sockets.items():
            host, port = sock.getsockname()[:2]
            out[name] = (host, port)
        return out

    def listener_connections(self) -> Mapping[str, int]:
        merged = merge_states(self.worker_states())
        family = merged["gauges"].get("isthmus_listener_active_connections")
        if family is None:
            return {}
        return {labels[0]: int(value) for labels, value in family["samples"]}

    def metrics_state(self) -> MetricsState | None:
        """The workers' metrics summed (those of workers gone included: totals never go
        back), with the config facts the supervisor's own: it alone sees rejected updates."""
        if self.sup.metrics_dir is None:
            return None
        merged = merge_states(read_states(self.sup.metrics_dir), max_gauge_age=MAX_STATE_AGE)
        own = sample(Sources(config=lambda: self.sup.config), self.sup.snapshot, time.time())
        merged["gauges"].update(own)
        return merged


async def start_supervisor_ports(
    args: argparse.Namespace, sup: Supervisor, identity: GatewayIdentity
) -> list[asyncio.Server]:
    """Bind the supervisor's ports (call before spawning workers: they are told where to
    publish their state)."""
    if not (args.admin_port or args.status_port or args.metrics_port):
        return []
    sup.metrics_dir = tempfile.mkdtemp(prefix=f"isthmus-{os.getpid()}-")
    return await start_ports(args, SupervisorProvider(sup, identity))
