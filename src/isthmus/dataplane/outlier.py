"""Passive health checking: Envoy's consecutive-error outlier detection, as Istio configures it.

Istio's ``outlierDetection`` maps onto Envoy's detector (pilot ``applyOutlierDetection``); this
module keeps Envoy's rules so a DestinationRule behaves here as it does in a mesh:

* **What counts.**  With ``split_external_local_origin_errors`` false (the default) a connect
  failure is charged as an HTTP 503 and a connect timeout as a 504: both count towards
  ``consecutive_5xx`` *and*, being gateway errors, ``consecutive_gateway_errors``.  With the
  split on, they count only towards ``consecutive_local_origin_failures`` (Envoy's default 5 when
  unset) and HTTP statuses alone feed the 5xx counters.  A final success resets the counters.
  ``consecutive_5xx`` 0 and an unset ``consecutive_gateway_errors`` disable those detectors
  (Istio leaves Envoy's enforcement at 0 for them).
* **Ejection time** is ``base_ejection_time × backoff``, capped at Envoy's
  ``max_ejection_time`` default (max of 300 s and the base).  The backoff grows by one per
  ejection and shrinks by one per ``interval`` the host stays healthy, so an endpoint failing
  again and again is ejected for ``base × times ejected``.
* **max_ejection_percent** follows Envoy ≥ 1.31: a host is ejected only if
  ``(ejected + 1) / hosts`` stays within the percentage.  Istio cannot set Envoy's
  ``always_eject_one_host``, so with the default 10 % a cluster of fewer than ten endpoints
  ejects nothing — a surprise Envoy users meet too; set ``maxEjectionPercent`` to allow it.
* **Return** is exact: an endpoint is usable again as soon as its time has passed (Envoy waits
  for the next ``interval`` sweep).  Counters are reset on return, as Envoy does.

State is per endpoint (:class:`OutlierStatus`) and survives snapshot swaps: the cluster state in
:mod:`isthmus.dataplane.balancer` keeps it by endpoint key while the endpoint remains.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from isthmus.snapshot.types import OutlierDetection

Clock = Callable[[], float]

DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES = 5
DEFAULT_MAX_EJECTION_TIME = 300.0
_GATEWAY_ERRORS = frozenset((502, 503, 504))


@dataclass(slots=True, eq=False)
class OutlierStatus:
    """One endpoint's counters and ejection state."""

    consecutive_5xx: int = 0
    consecutive_gateway_errors: int = 0
    consecutive_local_origin_failures: int = 0
    ejected_at: float | None = None
    ejected_until: float | None = None
    times_ejected: int = 0
    backoff: int = 0
    last_unejected: float | None = None

    def reset_counters(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway_errors = 0
        self.consecutive_local_origin_failures = 0


class OutlierDetector:
    """The detector of one cluster; ``hosts`` are the statuses of its current endpoints."""

    def __init__(
        self,
        config: OutlierDetection,
        hosts: Iterable[OutlierStatus] = (),
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.clock = clock
        self.config = config
        self.hosts: tuple[OutlierStatus, ...] = tuple(hosts)
        self._ejected = {h for h in self.hosts if h.ejected_until is not None}
        self.ejections_total = 0
        self.ejections_overflow = 0

    def configure(self, config: OutlierDetection, hosts: Iterable[OutlierStatus]) -> None:
        """Take a new config and endpoint set, keeping the state of endpoints that remain."""
        self.config = config
        self.hosts = tuple(hosts)
        self._ejected = {h for h in self.hosts if h.ejected_until is not None}

    # --- queries ---------------------------------------------------------------------------

    def is_ejected(self, host: OutlierStatus) -> bool:
        until = host.ejected_until
        if until is None:
            return False
        now = self.clock()
        if now < until:
            return True
        self._uneject(host, now)
        return False

    def ejected_count(self) -> int:
        """Endpoints ejected now (returning those whose time has passed)."""
        if self._ejected:
            now = self.clock()
            for host in list(self._ejected):
                if host.ejected_until is None or now >= host.ejected_until:
                    self._uneject(host, now)
        return len(self._ejected)

    # --- results -----------------------------------------------------------------------------

    def connect_failed(self, host: OutlierStatus, *, timeout: bool = False) -> None:
        """A local-origin failure: connection refused/reset/unreachable, or a connect timeout."""
        if self.config.split_external_local_origin_errors:
            host.consecutive_local_origin_failures += 1
            limit = self.config.consecutive_local_origin_failures
            if limit is None:
                limit = DEFAULT_CONSECUTIVE_LOCAL_ORIGIN_FAILURES
            if limit > 0 and host.consecutive_local_origin_failures >= limit:
                host.consecutive_local_origin_failures = 0
                self._eject(host)
        else:
            self.http_status(host, 504 if timeout else 503)

    def connect_succeeded(self, host: OutlierStatus, *, final: bool = True) -> None:
        """A connection was made.  ``final`` means nothing else will judge it (TCP proxying);
        HTTP passes ``final=False`` and reports the response status later, as Envoy does."""
        if self.config.split_external_local_origin_errors:
            host.consecutive_local_origin_failures = 0
        elif final:
            host.consecutive_5xx = 0
            host.consecutive_gateway_errors = 0

    def http_status(self, host: OutlierStatus, status: int) -> None:
        """An upstream response (or a local reply standing in for one)."""
        config = self.config
        if status < 500:
            host.consecutive_5xx = 0
            host.consecutive_gateway_errors = 0
            return
        eject = False
        if status in _GATEWAY_ERRORS:
            host.consecutive_gateway_errors += 1
            limit = config.consecutive_gateway_errors
            if limit and host.consecutive_gateway_errors >= limit:
                host.consecutive_gateway_errors = 0
                eject = True
        else:
            host.consecutive_gateway_errors = 0
        host.consecutive_5xx += 1
        if config.consecutive_5xx and host.consecutive_5xx >= config.consecutive_5xx:
            host.consecutive_5xx = 0
            eject = True
        if eject:
            self._eject(host)

    # --- ejection ----------------------------------------------------------------------------

    def _eject(self, host: OutlierStatus) -> None:
        if self.is_ejected(host) or host not in self.hosts:
            return
        percent = min(100, self.config.max_ejection_percent)
        if 100.0 * (self.ejected_count() + 1) / len(self.hosts) > percent:
            self.ejections_overflow += 1
            return
        now = self.clock()
        base = self.config.base_ejection_time
        cap = max(DEFAULT_MAX_EJECTION_TIME, base)
        if host.last_unejected is not None and self.config.interval > 0:
            healthy_intervals = int((now - host.last_unejected) // self.config.interval)
            host.backoff = max(0, host.backoff - healthy_intervals)
        if host.backoff * base < cap + base:
            host.backoff += 1
        host.times_ejected += 1
        host.ejected_at = now
        host.ejected_until = now + min(base * host.backoff, cap)
        self._ejected.add(host)
        self.ejections_total += 1

    def _uneject(self, host: OutlierStatus, now: float) -> None:
        host.ejected_until = None
        host.last_unejected = now
        host.reset_counters()
        self._ejected.discard(host)
