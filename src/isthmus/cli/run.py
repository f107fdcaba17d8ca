"""``isthmus run``: build the config, bind its listeners, serve until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from isthmus.cli.common import add_config_args, identity_from
from isthmus.cli.observe import (
    GatewayProvider,
    add_observe_args,
    start_ports,
    telemetry_for,
    worker_state,
)
from isthmus.cli.processes import HandoverServer, Takeover, parse_worker_fds
from isthmus.cli.sources import add_source_args, first_state, open_source
from isthmus.cli.summary import summarize
from isthmus.cli.supervisor import Supervisor
from isthmus.cli.supervisor_ports import start_supervisor_ports
from isthmus.control.build import Build, build_state
from isthmus.control.reload import ConfigState, Debounce, Reloader, install_sighup
from isthmus.dataplane.handover import receive_sockets
from isthmus.dataplane.http_proxy import HttpSettings
from isthmus.dataplane.server import BindError, Gateway, ServeOptions
from isthmus.obs.exposition import write_state
from isthmus.obs.metrics import Metrics
from isthmus.proto.http1 import Limits
from isthmus.snapshot.types import Snapshot
from isthmus.sources.base import ConfigSource
from isthmus.sources.files import FileSource
from isthmus.sources.statefile import SPEC_PREFIX


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="serve the config")
    add_config_args(p, required=False)
    add_source_args(p)
    add_serve_args(p)
    add_observe_args(p)
    p.set_defaults(func=run)


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bind", metavar="ADDR", help="listen on ADDR instead of each listener's address (0.0.0.0)"
    )
    p.add_argument(
        "--drain-seconds",
        type=float,
        default=5.0,
        help="on SIGTERM, how long open connections may finish (default 5)",
    )
    p.add_argument(
        "--no-splice", action="store_true", help="relay TCP through user space instead of splice(2)"
    )
    p.add_argument("--quiet", action="store_true", help="print only errors")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="serving processes sharing the listening sockets (default 1)",
    )
    p.add_argument(
        "--takeover",
        metavar="PATH",
        help="Unix socket for hand-over: take the listening sockets of the isthmus "
        "serving there (it then drains and exits), and offer ours there next",
    )
    p.add_argument("--worker-fds", help=argparse.SUPPRESS)
    p.add_argument("--control-fd", type=int, help=argparse.SUPPRESS)
    p.add_argument("--metrics-state", help=argparse.SUPPRESS)
    p.add_argument(
        "--no-watch",
        action="store_true",
        help="do not reload when the files change (SIGHUP still reloads)",
    )
    p.add_argument(
        "--reload-quiet-ms",
        type=int,
        default=100,
        help="reload once changes have been quiet this long (default 100)",
    )
    p.add_argument(
        "--reload-max-delay-ms",
        type=int,
        default=1000,
        help="reload at most this long after the first change (default 1000)",
    )
    p.add_argument(
        "--tracing",
        type=float,
        metavar="PERCENT",
        help="start B3 traces at the gateway, sampling PERCENT of new ones "
        "(off by default, as in current Istio; trace headers always pass)",
    )
    p.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="how isthmus prints its own messages (not the access log)",
    )
    p.add_argument(
        "--istio-ca",
        metavar="PATH",
        help="CA bundle standing in for Istio's mesh CA, so Gateway servers in "
        "ISTIO_MUTUAL mode can verify client certificates",
    )
    mesh = p.add_argument_group("local outbound proxy (what a sidecar would route)")
    mesh.add_argument(
        "--mesh-port",
        type=int,
        metavar="PORT",
        help="serve an explicit HTTP proxy (absolute URIs and CONNECT) routing "
        "by VirtualServices bound to mesh, Services and ServiceEntries",
    )
    mesh.add_argument(
        "--mesh-bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address of the mesh port (127.0.0.1: never an open proxy)",
    )
    mesh.add_argument(
        "--outbound-traffic-policy",
        choices=("REGISTRY_ONLY", "ALLOW_ANY"),
        default="REGISTRY_ONLY",
        help="unknown hosts: refused (502) or reached directly",
    )
    edge = p.add_argument_group("HTTP edge limits (Envoy's edge best practices)")
    edge.add_argument("--request-headers-timeout", type=float, default=10.0, metavar="S")
    edge.add_argument("--stream-idle-timeout", type=float, default=300.0, metavar="S")
    edge.add_argument(
        "--idle-timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="close a keep-alive connection idle this long",
    )
    edge.add_argument("--max-request-headers-kb", type=int, default=60)
    edge.add_argument("--max-request-headers", type=int, default=100)
    edge.add_argument(
        "--allow-underscore-headers",
        action="store_true",
        help="accept header names with underscores (rejected with 400 by default)",
    )
    edge.add_argument(
        "--num-trusted-proxies",
        type=int,
        default=0,
        help="x-forwarded-for hops to trust (Istio numTrustedProxies)",
    )


def serve_options(args: argparse.Namespace) -> ServeOptions:
    limits = Limits(
        max_request_headers_bytes=args.max_request_headers_kb * 1024,
        max_request_headers_count=args.max_request_headers,
        reject_underscore_headers=not args.allow_underscore_headers,
    )
    http = HttpSettings(
        limits=limits,
        request_headers_timeout=args.request_headers_timeout,
        stream_idle_timeout=args.stream_idle_timeout,
        idle_timeout=args.idle_timeout,
        trusted_hops=args.num_trusted_proxies,
        tracing=args.tracing,
    )
    return ServeOptions(
        bind=args.bind,
        use_splice=False if args.no_splice else None,
        http=http,
        mesh_port=args.mesh_port,
        mesh_bind=args.mesh_bind,
        allow_any=args.outbound_traffic_policy == "ALLOW_ANY",
        istio_ca=args.istio_ca,
    )


def istio_mutual_problems(snapshot: Snapshot, istio_ca: str | None) -> list[str]:
    """ISTIO_MUTUAL verifies clients against Istio's mesh CA, which isthmus does not have."""
    if istio_ca:
        return []
    return [
        f"isthmus: listener {listener.name} filter chain {chain.name}: ISTIO_MUTUAL needs "
        "Istio's mesh CA to verify client certificates; pass --istio-ca PATH (the mesh root "
        "certificate) or use MUTUAL with your own CA. Handshakes on it are refused."
        for listener in snapshot.listeners
        for chain in listener.filter_chains
        if chain.tls is not None and chain.tls.mode == "ISTIO_MUTUAL"
    ]


def report_rejected(result: Build) -> None:
    print("isthmus: config rejected:", file=sys.stderr)
    for line in result.problems():
        print(f"  {line}", file=sys.stderr)


def raise_open_file_limit() -> None:
    """Each relayed connection holds two sockets and two pipes: use the hard fd limit, as
    HAProxy and Envoy do, instead of the usual soft 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def tune_gc() -> None:
    """The config (resources, snapshot, compiled matchers) lives long and never forms garbage
    cycles the collector must find: freeze it out of collections, and collect the young
    generation less often (each request allocates a few hundred short-lived objects; the
    default threshold of 700 ran a collection every few requests: 11% of the loop's time)."""
    import gc

    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def run(args: argparse.Namespace) -> int:
    raise_open_file_limit()
    source = open_source(args)
    if isinstance(source, FileSource):
        # Files fail fast, before any event loop: a typo exits 1 with its errors.
        result = build_state(source.read(), identity_from(args), mesh=args.mesh_port is not None)
        if result.snapshot is None:
            report_rejected(result)
            return 1
        return start(args, source, result)
    return run_loop(serve_store(args, source))


async def serve_store(args: argparse.Namespace, source: ConfigSource) -> int:
    """A store is read on the serving loop (its connections live there)."""
    try:
        result = await first_good_build(args, source)
        return await start_async(args, source, result)
    finally:
        await source.close()


async def first_good_build(args: argparse.Namespace, source: ConfigSource) -> Build:
    """The first config of a store that validates.  A store shared by a fleet may hold a
    broken config for a while: say why, and wait for the next change instead of exiting
    (a pod that exits would only restart into the same config)."""
    while True:
        state = await first_state(source, args.quiet)
        result = build_state(state, identity_from(args), mesh=args.mesh_port is not None)
        if result.snapshot is not None:
            return result
        report_rejected(result)
        print(
            f"isthmus: waiting for a valid config from {source.describe()}",
            file=sys.stderr,
            flush=True,
        )
        await next_change(source)


async def next_change(source: ConfigSource) -> None:
    """Return after the source's next change."""
    changed = asyncio.Event()
    stop = asyncio.Event()
    watcher = asyncio.ensure_future(source.watch(lambda _reason: changed.set(), stop))
    try:
        await changed.wait()
    finally:
        stop.set()
        await watcher


def start(args: argparse.Namespace, source: ConfigSource, result: Build) -> int:
    return run_loop(start_async(args, source, result))


async def start_async(args: argparse.Namespace, source: ConfigSource, result: Build) -> int:
    assert result.snapshot is not None
    where = [source.describe()]
    if not args.quiet:
        for line in summarize(result.snapshot, result.diagnostics, where):
            print(line, flush=True)
    for line in istio_mutual_problems(result.snapshot, args.istio_ca):
        print(line, file=sys.stderr, flush=True)
    tune_gc()
    if args.workers > 1 and args.worker_fds is None:
        return await supervise(args, source)
    config_state = ConfigState(result.snapshot.version)
    gateway_ref: list[Gateway] = []
    telemetry = telemetry_for(args, identity_from(args), config_state, gateway_ref)
    gateway = Gateway(result.snapshot, serve_options(args), telemetry=telemetry)
    gateway_ref.append(gateway)
    provider = GatewayProvider(gateway, config_state, identity_from(args), telemetry.metrics)
    takeover: Takeover | None = None
    if args.worker_fds is not None:
        gateway.inherited = parse_worker_fds(args.worker_fds)
    elif args.takeover:
        takeover = Takeover(args.takeover)
        if takeover.fetch():
            gateway.inherited = takeover.sockets

    def report(lines: list[str]) -> None:
        rejected = bool(lines) and lines[0].startswith("rejected")
        out = sys.stderr if rejected else sys.stdout
        if out is sys.stdout and args.quiet:
            return
        if args.log_format == "json":
            record = {
                "time": time.time(),
                "level": "error" if rejected else "info",
                "msg": lines[0] if lines else "",
                "details": [x.strip() for x in lines[1:]],
            }
            print(json.dumps(record), file=out, flush=True)
            return
        for line in lines:
            print(line, file=out, flush=True)

    def summary(built: Build) -> list[str]:
        assert built.snapshot is not None
        return summarize(built.snapshot, built.diagnostics, where)

    reloader = Reloader(
        source,
        identity_from(args),
        gateway,
        config_state,
        report,
        summary,
        args.drain_seconds,
        args.reload_quiet_ms,
        args.reload_max_delay_ms,
        mesh=args.mesh_port is not None,
    )
    try:
        worker = args.worker_fds is not None
        hooks = Hooks(
            takeover=takeover,
            handover_path=None if worker else args.takeover,
            control_fd=args.control_fd,
            ports=None if worker else lambda: start_ports(args, provider),
            metrics_state=args.metrics_state,
        )
        return await serve(
            gateway, args.drain_seconds, args.quiet, reloader, args.no_watch or worker, hooks
        )
    except BindError as exc:
        print(f"isthmus: {exc}", file=sys.stderr)
        return 1


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when installed (1.2–1.45× on loop-bound work)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main)
    result: int = uvloop.run(main)
    return result


@dataclass
class Hooks:
    """Process-level extras: a takeover to confirm, a hand-over socket to offer, a
    supervisor's control channel."""

    takeover: Takeover | None = None
    handover_path: str | None = None
    control_fd: int | None = None
    ports: Callable[[], Coroutine[Any, Any, list[asyncio.Server]]] | None = None
    metrics_state: str | None = None


def on_loop(loop: asyncio.AbstractEventLoop) -> Callable[[Callable[[], object]], object]:
    """Run a function on the loop's thread from another thread and return its result."""

    def call(fn: Callable[[], object]) -> object:
        done: concurrent.futures.Future[object] = concurrent.futures.Future()

        def runner() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(runner)
        return done.result(10)

    return call


async def serve(
    gateway: Gateway,
    drain_seconds: float,
    quiet: bool,
    reloader: Reloader | None = None,
    no_watch: bool = True,
    hooks: Hooks | None = None,
) -> int:
    hooks = hooks or Hooks()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    await gateway.start()
    if hooks.takeover is not None:
        serving = set(map(id, gateway.listening_sockets().values()))
        for sock in hooks.takeover.sockets.sockets.values():
            if id(sock) not in serving:
                sock.close()  # the old process had a listener this config does not
        await asyncio.to_thread(hooks.takeover.ready)
    handover: HandoverServer | None = None
    if hooks.handover_path:

        def handed_over() -> None:
            gateway.stop_listening()
            stop.set()

        handover = HandoverServer(
            hooks.handover_path, gateway.listening_sockets, handed_over, on_loop(loop)
        )
    if hooks.control_fd is not None and reloader is not None:
        watch_control(hooks.control_fd, gateway, reloader, stop)
    obs_servers = await hooks.ports() if hooks.ports is not None else []
    state_writer: asyncio.Task[None] | None = None
    if hooks.metrics_state and gateway.telemetry.metrics is not None:
        state_writer = loop.create_task(
            write_metrics_state(hooks.metrics_state, gateway.telemetry.metrics)
        )
    stop_watching = asyncio.Event()
    watcher: asyncio.Task[None] | None = None
    remove_hup: Callable[[], None] | None = None
    if reloader is not None:
        remove_hup = install_sighup(reloader)
        if not no_watch:
            watcher = asyncio.ensure_future(reloader.watch(stop_watching))
    for listener in gateway.skipped():
        print(
            f"  note: listener {listener.name} ({listener.protocol}) is not served by this "
            "version yet",
            file=sys.stderr,
        )
    if not quiet:
        bound = ", ".join(f"{h}:{p}" for h, p in gateway.addresses().values()) or "nothing"
        print(f"serving on {bound}; Ctrl-C to stop", flush=True)
    await wait_for_signal(stop)
    if handover is not None:
        handover.close()
    stop_watching.set()
    if remove_hup is not None:
        remove_hup()
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if not quiet:
        print(
            f"draining {gateway.active_connections} connection(s) for up to {drain_seconds:g}s",
            flush=True,
        )
    await gateway.close(drain_seconds)
    if state_writer is not None:
        state_writer.cancel()
        if gateway.telemetry.metrics is not None and hooks.metrics_state:
            write_state(hooks.metrics_state, worker_state(gateway.telemetry.metrics))
    for server in obs_servers:
        server.close()
    if gateway.telemetry.log is not None:
        await asyncio.to_thread(gateway.telemetry.log.close)
    return 0


async def write_metrics_state(path: str, metrics: Metrics) -> None:
    """A worker publishes its counters for the supervisor's scrape, once a second."""
    while True:
        await asyncio.to_thread(write_state, path, worker_state(metrics))
        await asyncio.sleep(1.0)


def watch_control(fd: int, gateway: Gateway, reloader: Reloader, stop: asyncio.Event) -> None:
    """A worker: reload when the supervisor says so, taking any new listening sockets it
    sends; stop if the supervisor goes away."""
    loop = asyncio.get_running_loop()
    channel = socket.socket(fileno=fd)
    tasks: set[asyncio.Future[bool]] = set()

    def readable() -> None:
        try:
            sockets, message = receive_sockets(channel)
        except (OSError, ValueError):
            sockets, message = {}, {}
        if not message and not sockets:
            loop.remove_reader(fd)
            stop.set()
            return
        for name, sock in sockets.items():
            gateway.inherited.add(name, sock)
        task = asyncio.ensure_future(reloader.reload("supervisor"))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_reader(fd, readable)


async def supervise(args: argparse.Namespace, source: ConfigSource) -> int:
    state_dir = None if isinstance(source, FileSource) else tempfile.mkdtemp(prefix="isthmus-")
    state_file = None if state_dir is None else os.path.join(state_dir, "state")
    sup = Supervisor(
        worker_argv(args.argv, None if state_file is None else SPEC_PREFIX + state_file),
        source,
        identity_from(args),
        args.workers,
        args.bind,
        args.mesh_port,
        args.mesh_bind,
        args.drain_seconds,
        state_file=state_file,
    )
    try:
        return await supervise_with(args, source, sup)
    finally:
        if state_dir is not None:
            shutil.rmtree(state_dir, ignore_errors=True)


async def supervise_with(args: argparse.Namespace, source: ConfigSource, sup: Supervisor) -> int:
    state, result = await sup.build()
    if result.snapshot is None:
        report_rejected(result)
        return 1
    sup.accepted(result.snapshot)
    sup.publish(state)
    takeover = Takeover(args.takeover) if args.takeover else None
    if takeover is not None and takeover.fetch():
        sup.registry = takeover.sockets
    try:
        sup.open_sockets(result.snapshot)
    except BindError as exc:
        print(f"isthmus: {exc}", file=sys.stderr)
        return 1
    loop = asyncio.get_running_loop()
    obs_servers = await start_supervisor_ports(args, sup, identity_from(args))

    def worker_exited() -> None:
        loop.call_soon_threadsafe(sup.reap)

    sup.on_exit = worker_exited
    for _ in range(args.workers):
        sup.spawn()
    stop = asyncio.Event()
    tasks: set[asyncio.Future[None]] = set()

    def on_change(reason: str) -> None:
        task = asyncio.ensure_future(sup.reload(reason))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_hup() -> None:
        on_change("SIGHUP")

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    watcher = None
    stop_watching = asyncio.Event()
    debounce = Debounce(args.reload_quiet_ms, args.reload_max_delay_ms, on_change)
    if not args.no_watch:
        watcher = asyncio.ensure_future(source.watch(debounce.changed, stop_watching))
    if takeover is not None:
        await asyncio.to_thread(takeover.ready)
    handover = None
    if args.takeover:
        handover = HandoverServer(
            args.takeover, lambda: dict(sup.registry.sockets), stop.set, on_loop(loop)
        )
    if not args.quiet:
        bound = ", ".join(
            f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in sup.registry.sockets.values()
        )
        print(f"serving on {bound} with {args.workers} workers; Ctrl-C to stop", flush=True)
    await wait_for_signal(stop)
    if handover is not None:
        handover.close()
    stop_watching.set()
    debounce.cancel()
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    await sup.stop()
    for server in obs_servers:
        server.close()
    if sup.metrics_dir is not None:
        shutil.rmtree(sup.metrics_dir, ignore_errors=True)
    return 0


def worker_argv(argv: list[str], source: str | None = None) -> list[str]:
    """The ``run`` arguments a worker gets: the supervisor's, without process-level ones;
    with ``source``, reading that instead of the supervisor's ``--source``."""
    dropped = (
        ("--workers", "--takeover") if source is None else ("--workers", "--takeover", "--source")
    )
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if i == 0 and arg == "run":
            continue
        if arg in dropped:
            skip = True
            continue
        if arg.startswith(tuple(f"{flag}=" for flag in dropped)):
            continue
        out.append(arg)
    return out if source is None else [*out, "--source", source]


async def wait_for_signal(stop: asyncio.Event | None = None) -> None:
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
