"""Metric states as data: merged across workers and rendered as Prometheus text.

A state (:class:`MetricsState`) is what :meth:`isthmus.obs.metrics.Metrics.state` returns: the
raw counters per label set and the gauges sampled at that moment, all JSON-able.  The
supervisor of ``--workers N`` merges the workers' states (:func:`merge_states`) and renders the
sum (:func:`render_state`), so one scrape shows the whole gateway.  :func:`write_state` and
:func:`read_states` move states through files in a directory (atomic rename), one per worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from isthmus.obs.labels import HTTP_LABELS, TCP_LABELS

Merge = Literal["sum", "max", "min"]


class GaugeFamily(TypedDict):
    """One gauge: its samples ``(label values, value)`` and how workers' values combine."""

    help: str
    labels: list[str]
    merge: Merge
    samples: list[tuple[list[str], float]]


class MetricsState(TypedDict):
    format: int
    pid: int
    time: float
    duration_buckets: list[float]
    bytes_buckets: list[float]
    http: list[tuple[list[str], list[float]]]
    tcp: list[tuple[list[str], list[int]]]
    gauges: dict[str, GaugeFamily]


_HTTP_HELP = {
    "istio_requests_total": "Requests handled (Istio standard metric).",
    "istio_request_duration_milliseconds": "Request duration in milliseconds.",
    "istio_request_bytes": "Request size in bytes, headers included.",
    "istio_response_bytes": "Response size in bytes, headers included.",
}
_TCP_COUNTERS = (
    ("istio_tcp_connections_opened_total", 0, "TCP connections opened."),
    ("istio_tcp_connections_closed_total", 1, "TCP connections closed."),
    ("istio_tcp_sent_bytes_total", 2, "Bytes sent to the downstream over TCP connections."),
    ("istio_tcp_received_bytes_total", 3, "Bytes received from the downstream over TCP."),
)


def _le(bound: float) -> str:
    """Bucket bounds as Envoy prints them (``%g``: ``0.5``, ``1``, ``1.8e+06``)."""
    return format(bound, "g")


def _histogram(
    name: str,
    series: Sequence[tuple[list[str], list[float]]],
    bounds: Sequence[float],
    offset: int,
    sum_index: int,
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, _HTTP_HELP[name], labels=HTTP_LABELS)
    edges = [_le(b) for b in bounds] + ["+Inf"]
    for labels, cell in series:
        running = 0.0
        buckets: list[tuple[str, float]] = []
        for i, edge in enumerate(edges):
            running += cell[offset + i]
            buckets.append((edge, running))
        family.add_metric(labels, buckets, sum_value=cell[sum_index])
    return family


def families(state: MetricsState) -> Iterator[Metric]:
    """The metric families of ``state``, for prometheus-client's exposition."""
    http = state["http"]
    duration, sizes = state["duration_buckets"], state["bytes_buckets"]
    requests = CounterMetricFamily(
        "istio_requests_total", _HTTP_HELP["istio_requests_total"], labels=HTTP_LABELS
    )
    for labels, cell in http:
        requests.add_metric(labels, cell[0])
    yield requests
    request_offset = 4 + len(duration) + 1
    response_offset = request_offset + len(sizes) + 1
    yield _histogram("istio_request_duration_milliseconds", http, duration, 4, 1)
    yield _histogram("istio_request_bytes", http, sizes, request_offset, 2)
    yield _histogram("istio_response_bytes", http, sizes, response_offset, 3)
    for name, index, help_text in _TCP_COUNTERS:
        counter = CounterMetricFamily(name, help_text, labels=TCP_LABELS)
        for labels, counts in state["tcp"]:
            counter.add_metric(labels, counts[index])
        yield counter
    for name, gauge in sorted(state["gauges"].items()):
        family: CounterMetricFamily | GaugeMetricFamily
        if name.endswith("_total"):
            family = CounterMetricFamily(name, gauge["help"], labels=gauge["labels"])
        else:
            family = GaugeMetricFamily(name, gauge["help"], labels=gauge["labels"])
        for values, value in gauge["samples"]:
            family.add_metric(values, value)
        yield family


class StateCollector(Collector):
    """A prometheus-client collector over whatever state ``get_state`` returns at scrape."""

    def __init__(self, get_state: Callable[[], MetricsState]) -> None:
        self.get_state = get_state

    def collect(self) -> Iterable[Metric]:
        return list(families(self.get_state()))


def render_state(state: MetricsState) -> bytes:
    """``state`` in Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(lambda: state))
    return generate_latest(registry)


# --- merging workers ---------------------------------------------------------------------------


def _add_series(
    into: dict[tuple[str, ...], list[Any]], series: Iterable[tuple[list[str], list[Any]]]
) -> None:
    for labels, values in series:
        key = tuple(labels)
        found = into.get(key)
        if found is None:
            into[key] = list(values)
        else:
            for i, v in enumerate(values):
                found[i] += v


_COMBINE: dict[str, Callable[[float, float], float]] = {
    "sum": lambda a, b: a + b,
    "max": max,
    "min": min,
}


def merge_states(
    states: Iterable[MetricsState],
    *,
    now: float | None = None,
    max_gauge_age: float | None = None,
) -> MetricsState:
    """One state for all workers: counters and buckets added label set by label set, gauges
    combined by their ``merge`` rule.  Gauges of a state older than ``max_gauge_age`` seconds
    (a worker that died) are left out; its counters still count, so totals never go back."""
    now = time.time() if now is None else now
    http: dict[tuple[str, ...], list[Any]] = {}
    tcp: dict[tuple[str, ...], list[Any]] = {}
    gauges: dict[str, GaugeFamily] = {}
    values: dict[str, dict[tuple[str, ...], float]] = {}
    buckets: tuple[list[float], list[float]] | None = None
    for state in states:
        these = (list(state["duration_buckets"]), list(state["bytes_buckets"]))
        if buckets is None:
            buckets = these
        elif buckets != these:
            raise ValueError(f"worker {state['pid']} uses different histogram buckets")
        _add_series(http, state["http"])
        _add_series(tcp, state["tcp"])
        if max_gauge_age is not None and now - state["time"] > max_gauge_age:
            continue
        for name, gauge in state["gauges"].items():
            if name not in gauges:
                gauges[name] = {
                    "help": gauge["help"],
                    "labels": list(gauge["labels"]),
                    "merge": gauge["merge"],
                    "samples": [],
                }
                values[name] = {}
            combine = _COMBINE[gauges[name]["merge"]]
            merged = values[name]
            for labels, value in gauge["samples"]:
                key = tuple(labels)
                merged[key] = combine(merged[key], value) if key in merged else value
    for name, merged in values.items():
        gauges[name]["samples"] = [(list(k), v) for k, v in merged.items()]
    duration, sizes = buckets if buckets is not None else ([], [])
    return {
        "format": 1,
        "pid": os.getpid(),
        "time": now,
        "duration_buckets": duration,
        "bytes_buckets": sizes,
        "http": [(list(k), v) for k, v in http.items()],
        "tcp": [(list(k), v) for k, v in tcp.items()],
        "gauges": gauges,
    }


def write_state(path: str | os.PathLike[str], state: MetricsState) -> None:
    """Write ``state`` as JSON, atomically (a reader never sees half a file)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(state, out, separators=(",", ":"))
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_states(directory: str | os.PathLike[str]) -> list[MetricsState]:
    """Every ``*.json`` state in ``directory`` (files being replaced are skipped)."""
    states: list[MetricsState] = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            states.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return states
