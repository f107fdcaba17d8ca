"""Who this gateway process is: the workload that Gateways select and Services front."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_NAMESPACE = "istio-system"
DEFAULT_LABELS: Mapping[str, str] = {"istio": "ingressgateway"}
REVISION_LABEL = "istio.io/rev"


@dataclass(frozen=True)
class GatewayIdentity:
    namespace: str = DEFAULT_NAMESPACE
    labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))
    revision: str | None = None

    @property
    def workload_labels(self) -> dict[str, str]:
        """The pod labels: the given labels plus ``istio.io/rev`` for a revisioned gateway."""
        labels = dict(self.labels)
        if self.revision:
            labels.setdefault(REVISION_LABEL, self.revision)
        return labels


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes equality selection; an empty or missing selector selects everything."""
    if not selector:
        return True
    return all(labels.get(k) == v for k, v in selector.items())
