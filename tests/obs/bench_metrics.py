"""Time what the request path pays for metrics and access logs (not collected by pytest).

Run: ``PYTHONPATH=. .venv/bin/python tests/obs/bench_metrics.py [rounds]``.  Prints µs per
call, best of interleaved rounds:

* ``Metrics.http`` (plain counters, the design used) against the alternative of a
  prometheus-client child per label set (``Counter.inc`` + three ``Histogram.observe``);
* ``Metrics.tcp_open`` + ``tcp_close``;
* building an ``HttpEntry`` and ``AccessLog.http`` (the enqueue), and, for reference, the
  formatting the writer thread does per line (off the event loop).
"""

from __future__ import annotations

import io
import sys
import timeit
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from isthmus.obs.accesslog import AccessLog, HttpEntry, _Clock, format_json, format_text
from isthmus.obs.labels import HTTP_LABELS
from isthmus.obs.metrics import BYTES_BUCKETS, DURATION_BUCKETS, Metrics
from tests.obs.fakes import tcp_echo_snapshot

V1 = "outbound|9000|v1|tcp-echo.default.svc.cluster.local"
EP1 = "127.0.0.1:9001"


def prometheus_children() -> Callable[[], None]:
    registry = CollectorRegistry()
    requests = Counter("istio_requests_total", "", HTTP_LABELS, registry=registry)
    duration = Histogram("d", "", HTTP_LABELS, buckets=DURATION_BUCKETS, registry=registry)
    req = Histogram("rq", "", HTTP_LABELS, buckets=BYTES_BUCKETS, registry=registry)
    resp = Histogram("rs", "", HTTP_LABELS, buckets=BYTES_BUCKETS, registry=registry)
    values = ["x"] * len(HTTP_LABELS)
    children: dict[tuple[str, str, int, str], tuple[object, ...]] = {}

    def record(cluster: str, upstream: str, status: int, flags: str) -> None:
        key = (cluster, upstream, status, flags)
        c = children.get(key)
        if c is None:
            c = children[key] = (
                requests.labels(*values),
                duration.labels(*values),
                req.labels(*values),
                resp.labels(*values),
            )
        c[0].inc()  # type: ignore[attr-defined]
        c[1].observe(3.0)  # type: ignore[attr-defined]
        c[2].observe(300)  # type: ignore[attr-defined]
        c[3].observe(3000)  # type: ignore[attr-defined]

    return lambda: record(V1, EP1, 200, "-")


def main(rounds: int = 5, number: int = 200_000) -> None:
    metrics = Metrics()
    metrics.set_snapshot(tcp_echo_snapshot())
    log = AccessLog("text", io.StringIO(), max_pending=10**9, flush_interval=3600)

    def entry() -> HttpEntry:
        return HttpEntry(
            1704067200.0, "GET", "/productpage", "HTTP/1.1", 200, "-", 0, 5183, 3.2,
            "bookinfo.example.com", "10.0.0.5:8080", "192.168.0.24:51234", "10.0.1.7:9080",
            V1, "10.0.0.5:40122", "2", "default", "192.168.0.24", "curl/8.5.0",
            "6a1c1c52-2b5e-4f0e-9d47-6a0b6a6a7c1d",
        )  # fmt: skip

    sample = entry()
    clock = _Clock()
    cases: dict[str, Callable[[], object]] = {
        "Metrics.http (plain counters)": lambda: metrics.http(V1, EP1, 200, "-", 3.0, 300, 3000),
        "prometheus-client children": prometheus_children(),
        "Metrics.tcp_open + tcp_close": lambda: metrics.tcp_close(
            metrics.tcp_open(V1, EP1), 10, 10
        ),
        "HttpEntry(...) + AccessLog.http": lambda: log.http(entry()),
        "format_text (writer thread)": lambda: format_text(sample, clock),
        "format_json (writer thread)": lambda: format_json(sample, clock),
    }
    best = {name: float("inf") for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            if name.startswith("HttpEntry"):
                log._queue.clear()
            best[name] = min(best[name], timeit.timeit(fn, number=number) / number * 1e6)
    for name, us in best.items():
        print(f"{name:36s} {us:6.2f} µs")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
