"""``isthmus run --workers N``: one supervisor opens the listening sockets once and runs N
serving processes that inherit them.  A worker that dies is replaced (the new one inherits
the same sockets); config changes are built by the supervisor, which opens any new listener's
socket and tells every worker to reload (sending the new sockets along)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from isthmus.cli.processes import worker_fds_arg
from isthmus.control.build import Build, build_state
from isthmus.control.reload import ConfigState, Rejection
from isthmus.dataplane.handover import ListenerSockets, send_sockets
from isthmus.dataplane.server import BindError, open_listener, serves
from isthmus.snapshot.types import Snapshot
from isthmus.sources.base import ConfigSource, SourceState, SourceUnavailable
from isthmus.sources.statefile import write_state
from isthmus.translate.identity import GatewayIdentity


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    control: socket.socket


@dataclass
class Supervisor:
    argv: Sequence[str]
    source: ConfigSource
    identity: GatewayIdentity
    count: int
    bind: str | None
    mesh_port: int | None
    mesh_bind: str
    drain_seconds: float
    registry: ListenerSockets = field(default_factory=ListenerSockets)
    workers: list[Worker] = field(default_factory=list)
    stopping: bool = False
    version: str = ""
    on_exit: Callable[[], None] | None = None
    """Called (from a waiter thread) when a worker exits; the loop then calls :meth:`reap`."""
    metrics_dir: str | None = None
    """Workers write their metrics state here; the supervisor's scrape adds them up."""
    spawned: int = 0
    state_file: str | None = None
    """With a store source: where each accepted state is written for the workers, which
    never talk to the store themselves (one connection and one watch per gateway)."""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    snapshot: Snapshot | None = None
    """The config the supervisor accepted last (what its admin API shows)."""
    config: ConfigState = field(default_factory=lambda: ConfigState(""))

    def open_sockets(self, snapshot: Snapshot) -> dict[str, socket.socket]:
        """Open sockets for listeners not yet open; returns the new ones."""
        new: dict[str, socket.socket] = {}
        try:
            for listener in snapshot.listeners:
                if serves(listener) and listener.name not in self.registry.sockets:
                    address = self.bind or listener.address
                    found = self.registry.take(listener.name, address, listener.port)
                    new[listener.name] = found or open_listener(
                        listener.name, address, listener.port
                    )
            if self.mesh_port is not None and "mesh" not in self.registry.sockets:
                new["mesh"] = open_listener("mesh", self.mesh_bind, self.mesh_port)
        except BindError:
            for sock in new.values():
                sock.close()
            raise
        for name, sock in new.items():
            self.registry.add(name, sock)
        return new

    def spawn(self) -> Worker:
        parent, child = socket.socketpair()
        fds = [s.fileno() for s in self.registry.sockets.values()] + [child.fileno()]
        argv = [
            sys.executable,
            "-m",
            "isthmus",
            "run",
            *self.argv,
            "--worker-fds",
            worker_fds_arg(self.registry.sockets),
            "--control-fd",
            str(child.fileno()),
        ]
        if self.metrics_dir is not None:
            # a new file per worker ever started: a replacement starts from zero, and the dead
            # worker's counters keep counting in the sum
            argv += ["--metrics-state", f"{self.metrics_dir}/worker-{self.spawned}.json"]
        self.spawned += 1
        proc = subprocess.Popen(argv, pass_fds=fds, stdin=subprocess.DEVNULL)
        child.close()
        worker = Worker(proc, parent)
        threading.Thread(target=self._wait, args=(proc,), daemon=True).start()
        self.workers.append(worker)
        return worker

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        if self.on_exit is not None:
            self.on_exit()

    def notify(self, new: dict[str, socket.socket]) -> None:
        for worker in self.workers:
            with contextlib.suppress(OSError):
                send_sockets(worker.control, new, {"reload": True})

    async def build(self) -> tuple[SourceState, Build]:
        """Read the source and build; raises SourceUnavailable."""
        state = await self.source.current()
        result = await asyncio.to_thread(
            build_state, state, self.identity, None, mesh=self.mesh_port is not None
        )
        return state, result

    def publish(self, state: SourceState) -> None:
        """Make ``state`` what workers load next (before they are told to)."""
        if self.state_file is not None:
            write_state(self.state_file, self.source.describe(), state)

    async def reload(self, reason: str) -> None:
        async with self._lock:
            try:
                state, result = await self.build()
            except SourceUnavailable as exc:
                problems = [f"{self.source.describe()}: {exc}"]
            else:
                problems = result.problems() if result.snapshot is None else []
            if problems:
                print(
                    f"rejected update ({reason}); workers keep serving config {self.version}:",
                    file=sys.stderr,
                    flush=True,
                )
                for line in problems:
                    print(f"  {line}", file=sys.stderr, flush=True)
                self._rejected(problems)
                return
            assert result.snapshot is not None
            if result.snapshot.version == self.version:
                return
            try:
                new = self.open_sockets(result.snapshot)
            except BindError as exc:
                print(f"rejected update ({reason}): {exc}", file=sys.stderr, flush=True)
                self._rejected([str(exc)])
                return
            self.accepted(result.snapshot)
            self.publish(state)
            self.notify(new)
            wanted = {lst.name for lst in result.snapshot.listeners} | {"mesh"}
            for name in [n for n in self.registry.sockets if n not in wanted]:
                self.registry.drop(name)  # workers drain their copies on their own reload

    def accepted(self, snapshot: Snapshot) -> None:
        """``snapshot`` is the config from now on (workers are told next)."""
        if self.snapshot is not None:
            self.config.last_good_time = time.time()
            self.config.reloads_ok += 1
        self.config.version = self.version = snapshot.version
        self.snapshot = snapshot

    def _rejected(self, problems: list[str]) -> None:
        self.config.rejections.append(Rejection(time.time(), tuple(problems), self.version))
        self.config.reloads_rejected += 1

    def reap(self) -> None:
        """Replace workers that died; their peers never stopped serving."""
        for worker in list(self.workers):
            code = worker.proc.poll()
            if code is None:
                continue
            self.workers.remove(worker)
            worker.control.close()
            if not self.stopping:
                replacement = self.spawn()
                print(
                    f"worker {worker.proc.pid} exited ({code}); started {replacement.proc.pid}",
                    file=sys.stderr,
                    flush=True,
                )

    async def stop(self) -> None:
        self.stopping = True
        workers = list(self.workers)  # reap() removes each from self.workers as it exits
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + self.drain_seconds + 10
        for worker in workers:
            left = max(0.1, deadline - asyncio.get_running_loop().time())
            try:
                await asyncio.to_thread(worker.proc.wait, left)
            except subprocess.TimeoutExpired:
                worker.proc.kill()
        self.registry.close()
