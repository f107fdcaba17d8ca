# ruff: noqa: E402  (the path fix below must precede the imports)
"""The Python an HTTP request costs isthmus, measured in-process without sockets.

    .venv/bin/python bench/http_path.py              # metrics + access log on vs off
    .venv/bin/python bench/http_path.py --split      # request side vs response side
    .venv/bin/python bench/http_path.py --profile    # cProfile of the path (off)
    .venv/bin/python bench/http_path.py --gc         # garbage collections per 1000 requests

The gateway is built from bench/http.py's config (eleven rules, header rewriting) and driven
through fake transports: ``data_received`` of the request on a client connection, the request
written to a pooled upstream connection, ``data_received`` of the origin's response there,
the response written to the client.  What it measures is the request path's own Python: no
system calls, no event loop iteration, warm caches (a real process pays more per request;
``bench/http.py`` measures that).  CPU time (``time.process_time``, the access log's writer
thread included), best of ``--rounds`` rounds; the two configurations alternate in one
process, so load from elsewhere on the machine hits both alike.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0]).resolve() == HERE:
    del sys.path[0]  # bench/http.py is not the standard library's http

import argparse
import asyncio
import collections
import gc
import importlib.util
import tempfile
import time
from collections.abc import Callable
from typing import Any

import uvloop

from isthmus.control.build import build
from isthmus.dataplane.balancer import ClusterStates
from isthmus.dataplane.http_proxy import DownstreamHttp, HttpContext, HttpSettings
from isthmus.dataplane.http_upstream import HttpPool, UpstreamHttp
from isthmus.dataplane.telemetry import Telemetry
from isthmus.obs.accesslog import AccessLog
from isthmus.obs.metrics import Metrics
from isthmus.snapshot.types import Snapshot
from isthmus.translate.identity import GatewayIdentity

REQUEST = b"GET /catalog/item/42 HTTP/1.1\r\nHost: bench.example.com\r\n\r\n"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 22 Nov 2026 01:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\n"
    b"X-Seen-Route: hit\r\n\r\nok\n"
)  # what bench/http.py's nginx origin answers


def bench_snapshot() -> Snapshot:
    spec = importlib.util.spec_from_file_location("bench_http", HERE / "http.py")
    assert spec is not None and spec.loader is not None
    sys.path.append(str(HERE))  # bench/http.py imports its sibling tcp.py
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_http"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    directory = Path(tempfile.mkdtemp(prefix="isthmus-http-path-"))
    (directory / "bench.yaml").write_text(module.isthmus_config(8080, 9999))
    snapshot = build([str(directory)], GatewayIdentity()).snapshot
    assert snapshot is not None
    return snapshot


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class Gateway:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot


class Path_:
    """One client connection and one pooled upstream connection of a gateway."""

    def __init__(self, snapshot: Snapshot, telemetry: bool) -> None:
        self.log = AccessLog("text", open("/dev/null", "w")) if telemetry else None  # noqa: SIM115
        metrics = Metrics() if telemetry else None
        if metrics is not None:
            metrics.set_snapshot(snapshot)
        states = ClusterStates()
        pool = HttpPool(states)
        telemetry_ = Telemetry(metrics, self.log)
        ctx = HttpContext(Gateway(snapshot), pool, HttpSettings(), telemetry=telemetry_)
        listener = snapshot.listeners[0]
        chain = listener.filter_chains[0].name
        self.client = DownstreamHttp(ctx, listener.name, chain, "http", listener.gateway_port)
        self.client_transport = FakeTransport()
        self.client.connection_made(self.client_transport)
        cluster = snapshot.clusters["outbound|80||catalog.default.svc.cluster.local"]
        state = states.get(cluster)
        (endpoint,) = state.endpoints
        self.upstream = UpstreamHttp(cluster.name, endpoint, state, pool.writes)
        self.writes = pool.writes
        self.upstream_transport = FakeTransport()
        self.upstream.connection_made(self.upstream_transport)
        state.acquire(endpoint)
        pool.release(cluster, self.upstream, True)

    def request_side(self) -> None:
        self.client.data_received(REQUEST)
        self.writes.flush()  # the end of the loop pass, as if each request had its own
        if not self.upstream_transport.out:
            raise SystemExit("the request did not reach the pooled upstream connection")
        self.upstream_transport.out.clear()

    def response_side(self) -> None:
        self.upstream.data_received(RESPONSE)
        self.writes.flush()

    def one(self) -> None:
        self.request_side()
        self.response_side()

    def check(self) -> None:
        for _ in range(1000):
            self.one()
        reply = self.client_transport.out[-1]
        if not reply.startswith(b"HTTP/1.1 200 OK\r\n") or not reply.endswith(b"\r\n\r\nok\n"):
            raise SystemExit(f"unexpected response: {reply!r}")
        self.client_transport.out.clear()

    def settle(self) -> None:
        if self.log is not None:
            self.log.flush()
        self.client_transport.out.clear()


def timed(fn: Callable[[], None], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return time.process_time() - start


def on_off_paths(snapshot: Snapshot) -> dict[str, Path_]:
    """A gateway path with metrics and the access log ("on") and one without ("off"), checked."""
    paths = {"on": Path_(snapshot, True), "off": Path_(snapshot, False)}
    for path in paths.values():
        path.check()
    return paths


def time_round(paths: dict[str, Path_], n: int, best: dict[str, float]) -> None:
    """One round: ``n`` requests through each path (the access log's writer included), keeping
    each path's best CPU time per request in ``best``."""
    for name, path in paths.items():
        start = time.process_time()
        timed(path.one, n)
        path.settle()
        best[name] = min(best.get(name, float("inf")), (time.process_time() - start) / n * 1e6)


def on_off(snapshot: Snapshot, n: int, rounds: int) -> None:
    paths = on_off_paths(snapshot)
    best: dict[str, float] = {}
    for _ in range(rounds):
        time_round(paths, n, best)
    print(
        f"metrics and access log on: {best['on']:.2f} us/request, off: {best['off']:.2f} us/"
        f"request (best of {rounds} x {n}); on - off = {best['on'] - best['off']:.2f} us"
    )


def split(snapshot: Snapshot, n: int, rounds: int) -> None:
    path = Path_(snapshot, False)
    path.check()
    best = [float("inf")] * 2
    for _ in range(rounds):
        sides = [0.0, 0.0]
        for _ in range(n):
            t0 = time.perf_counter()
            path.request_side()
            t1 = time.perf_counter()
            path.response_side()
            sides[0] += t1 - t0
            sides[1] += time.perf_counter() - t1
        path.settle()
        best = [min(b, s / n * 1e6) for b, s in zip(best, sides, strict=True)]
    print(
        f"request side (parse, route, headers, pooled write): {best[0]:.2f} us; "
        f"response side (parse, headers, write, finish): {best[1]:.2f} us (off, best of {rounds})"
    )


def stages(snapshot: Snapshot, n: int, rounds: int) -> None:
    """Where the time of one request goes: isolated stages timed with the bench's inputs, the
    rest of each side by difference (off), and telemetry as on - off."""
    from isthmus.dataplane.http_forward import SERVICE_TIME, serialize_request
    from isthmus.dataplane.http_headers import RESPONSE_DROP, response_fields
    from isthmus.dataplane.http_headers import upstream_request_headers as request_headers
    from isthmus.dataplane.http_request import request_id
    from isthmus.proto.http1 import RequestParser, ResponseParser
    from isthmus.snapshot.match import LazyRequest
    from isthmus.snapshot.types import ForwardAction

    listener = snapshot.listeners[0]
    hcm = listener.filter_chains[0].application
    route_config = hcm.route_config  # type: ignore[union-attr]
    request_parser, response_parser = RequestParser(), ResponseParser("GET")
    head = request_parser.feed(REQUEST)[0]
    response_parser.reset("GET")
    response = response_parser.feed(RESPONSE)[0]
    vhost = route_config.find_virtual_host("bench.example.com")
    assert vhost is not None
    route = vhost.select(LazyRequest(head.path, "GET", "bench.example.com", "http", 80, [], ""))
    assert route is not None and isinstance(route.action, ForwardAction)
    action = route.action
    dest = action.clusters[0]
    rng = __import__("random").Random()

    def parse_request() -> None:
        request_parser.feed(REQUEST)

    def route_request() -> None:
        found = route_config.find_virtual_host(head.host or "")
        assert found is not None
        found.select(LazyRequest(head.path, head.method, "h", "http", 80, head.headers, ""))

    def build_request() -> None:
        headers, _ = request_headers(
            head.headers,
            peer_ip="127.0.0.1",
            scheme="http",
            request_id=request_id(rng.getrandbits(128)),
            authority="bench.example.com",
        )
        headers = dest.request_headers.apply(action.request_headers.apply(headers))
        serialize_request(head.method, head.target, headers, 1)

    def parse_response() -> None:
        response_parser.reset("GET")
        response_parser.feed(RESPONSE)

    def build_response() -> None:
        ops = action.response_headers
        fields = response_fields(response.raw, RESPONSE_DROP | ops.drop, response.connection)
        tail = b"%b%d%b" % (SERVICE_TIME, 0, ops.fields)
        assert b"HTTP/1.1 200 OK%b%b\r\n\r\n" % (fields, tail)

    def best(fn: Callable[[], None]) -> float:
        return min(timed(fn, n) for _ in range(rounds)) / n * 1e6

    paths = on_off_paths(snapshot)
    sides = {"request": float("inf"), "response": 0.0}
    total: dict[str, float] = {}
    off = paths["off"]
    for _ in range(rounds):
        time_round(paths, n, total)
        request = 0.0
        for _ in range(n):  # each response needs its request in flight
            start = time.perf_counter()
            off.request_side()
            request += time.perf_counter() - start
            off.response_side()
        off.settle()
        sides["request"] = min(sides["request"], request / n * 1e6)
    sides["response"] = total["off"] - sides["request"]  # by difference
    rows = [
        ("request: parse (RequestParser.feed)", best(parse_request)),
        ("request: route (virtual host, 13-row route table)", best(route_request)),
        ("request: headers + request id + serialize", best(build_request)),
    ]
    rows.append(
        (
            "request: the rest (dispatch, Forward, pool take, write, timer)",
            sides["request"] - sum(r[1] for r in rows),
        )
    )
    response_rows = [
        ("response: parse (ResponseParser.reset + feed)", best(parse_response)),
        ("response: head (headers + ops + serialize)", best(build_response)),
    ]
    response_rows.append(
        (
            "response: the rest (dispatch, commit, write, pool release, finish)",
            sides["response"] - sum(r[1] for r in response_rows),
        )
    )
    rows += response_rows
    rows.append(
        ("metrics + access log (on - off, writer thread included)", total["on"] - total["off"])
    )
    print("| stage | us per request |")
    print("|---|---|")
    for label, value in rows:
        print(f"| {label} | {value:.1f} |")
    print(f"| **total, on** (off: {total['off']:.1f}) | **{total['on']:.1f}** |")


def profile(snapshot: Snapshot, n: int) -> None:
    import cProfile
    import pstats

    path = Path_(snapshot, False)
    path.check()
    profiler = cProfile.Profile()
    profiler.runcall(timed, path.one, n)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)


def collections_per_request(snapshot: Snapshot, n: int) -> None:
    for telemetry in (False, True):
        path = Path_(snapshot, telemetry)
        path.check()
        counts: collections.Counter[str] = collections.Counter()

        def count(
            phase: str, info: dict[str, int], counts: collections.Counter[str] = counts
        ) -> None:
            if phase == "stop":
                counts[f"gen{info['generation']}"] += 1
                counts["collected"] += info["collected"]

        gc.callbacks.append(count)
        timed(path.one, n)
        path.settle()
        gc.callbacks.remove(count)
        per = {k: round(v * 1000 / n, 2) for k, v in sorted(counts.items())}
        print(f"telemetry {'on' if telemetry else 'off'}: per 1000 requests {per or 'nothing'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=20, help="best of (default 20)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--split", action="store_true")
    mode.add_argument("--profile", action="store_true")
    mode.add_argument("--gc", action="store_true")
    mode.add_argument("--stages", action="store_true", help="a table of where the time goes")
    args = parser.parse_args()
    snapshot = bench_snapshot()

    async def run() -> None:  # the data plane expects a running loop
        if args.split:
            split(snapshot, args.requests, args.rounds)
        elif args.profile:
            profile(snapshot, args.requests * 10)
        elif args.stages:
            stages(snapshot, args.requests, args.rounds)
        elif args.gc:
            collections_per_request(snapshot, args.requests * 10)
        else:
            on_off(snapshot, args.requests, args.rounds)

    uvloop.run(run())


if __name__ == "__main__":
    main()
