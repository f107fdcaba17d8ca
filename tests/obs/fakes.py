"""Real snapshots and a fake gateway for the admin API and proxy-config tests."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from isthmus.control.build import build
from isthmus.control.reload import ConfigState
from isthmus.dataplane.balancer import ClusterState, ClusterStates
from isthmus.obs.exposition import MetricsState
from isthmus.obs.metrics import Metrics
from isthmus.snapshot.types import OutlierDetection, Snapshot
from isthmus.translate.identity import GatewayIdentity
from tests.tls_certs import CertAuthority, Leaf, tls_secret

ROOT = Path(__file__).parent.parent.parent
SEED = ROOT / "tests" / "data" / "seeds" / "004" / "v3-https" / "bookinfo.yaml"

PRODUCTPAGE = """---
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: 19080}
  labels: {app: productpage, version: v1}
"""


def tcp_echo_snapshot() -> Snapshot:
    """``examples/tcp-echo`` with outlier detection that ejects after one 5xx."""
    built = build([str(ROOT / "examples" / "tcp-echo")], GatewayIdentity())
    assert built.snapshot is not None, built.problems()
    outlier = OutlierDetection(consecutive_5xx=1, max_ejection_percent=100)
    clusters = {
        name: dataclasses.replace(c, outlier_detection=outlier)
        for name, c in built.snapshot.clusters.items()
    }
    return dataclasses.replace(built.snapshot, clusters=clusters)


def bookinfo_https_snapshot(directory: Path, ca: CertAuthority) -> tuple[Snapshot, Leaf]:
    """Seed 004/v3-https with its ``bookinfo-credential`` Secret and a productpage backend."""
    leaf = ca.issue("bookinfo", dns=["bookinfo.example.com"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bookinfo.yaml").write_text(SEED.read_text())
    (directory / "backend.yaml").write_text(
        PRODUCTPAGE + tls_secret("bookinfo-credential", "istio-system", leaf, ca.pem)
    )
    built = build([str(directory)], GatewayIdentity())
    assert built.snapshot is not None, built.problems()
    return built.snapshot, leaf


@dataclass
class FakeProvider:
    """An :class:`isthmus.obs.admin.AdminProvider` over a real snapshot and real cluster
    states, the way the gateway's wiring provides one."""

    snapshot: Snapshot | None
    identity: GatewayIdentity = field(default_factory=GatewayIdentity)
    config: ConfigState | None = None
    ready: bool = True
    draining: bool = False
    started: float = field(default_factory=time.time)
    states: ClusterStates = field(default_factory=ClusterStates)
    metrics: Metrics | None = None
    connections: dict[str, int] = field(default_factory=dict)
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)

    def cluster_state(self, name: str) -> ClusterState | None:
        if self.snapshot is None or name not in self.states:
            return None
        return self.states.get(self.snapshot.clusters[name])

    def listener_addresses(self) -> Mapping[str, tuple[str, int]]:
        return self.addresses

    def listener_connections(self) -> Mapping[str, int]:
        return self.connections

    def metrics_state(self) -> MetricsState | None:
        return self.metrics.state() if self.metrics is not None else None
