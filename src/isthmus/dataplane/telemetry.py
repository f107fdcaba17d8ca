"""What the data plane reports per request and connection: Istio's metrics and Envoy's
access log.  Either may be absent (``--access-log off``); then nothing is recorded."""

from __future__ import annotations

from dataclasses import dataclass

from isthmus.obs.accesslog import AccessLog
from isthmus.obs.metrics import Metrics


@dataclass
class Telemetry:
    metrics: Metrics | None = None
    log: AccessLog | None = None
