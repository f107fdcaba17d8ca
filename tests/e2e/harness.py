"""End-to-end harness: real `isthmus run` processes and real backends on 127.0.0.1.

Everything started here is stopped by the context managers, and every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

START_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def closed_port() -> int:
    """A port nothing listens on (connects are refused)."""
    return free_port()


class Isthmus:
    """A running ``isthmus run`` process; ``output`` collects what it printed."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.output: list[str] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float, out: list[str]) -> None:
    """Read the process's output (raw fd: no hidden buffering) until a line has ``marker``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    pending = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                raise RuntimeError(f"isthmus exited with {proc.returncode}: {''.join(out)}")
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            proc.wait(timeout=5)
            raise RuntimeError(f"isthmus exited with {proc.returncode}: {''.join(out)}")
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            out.append(line.decode(errors="replace") + "\n")
            if marker in out[-1]:
                return
    raise TimeoutError(f"isthmus did not print {marker!r} in {timeout}s: {''.join(out)}")


def _drain(proc: subprocess.Popen[bytes], out: list[str]) -> None:
    assert proc.stdout is not None
    with contextlib.suppress(OSError, ValueError):
        while chunk := os.read(proc.stdout.fileno(), 65536):
            out.append(chunk.decode(errors="replace"))


@contextlib.contextmanager
def isthmus_run(config: Path | None, *extra: str, ready: str = "serving on") -> Iterator[Isthmus]:
    """``isthmus run -f config`` (no ``-f`` when None: ``extra`` names a --source); yields
    once the gateway printed ``ready``."""
    ports: list[str] = []
    for flag in ("--admin-port", "--status-port", "--metrics-port"):
        if flag not in extra:
            ports += [flag, "0"]  # tests pick their own ports; the defaults are fixed ones
    cmd = [
        sys.executable,
        "-m",
        "isthmus",
        "run",
        *(["-f", str(config)] if config is not None else []),
        "--bind",
        "127.0.0.1",
        "--drain-seconds",
        "1",
        *ports,
        *extra,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    running = Isthmus(proc)
    try:
        _read_until(proc, ready, START_TIMEOUT, running.output)
        # Keep draining so a chatty gateway never blocks on a full pipe.
        drain = threading.Thread(target=_drain, args=(proc, running.output), daemon=True)
        drain.start()
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


class BackgroundLoop:
    """An asyncio loop in a thread, for backends the test talks to synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(_cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@contextlib.contextmanager
def background() -> Iterator[BackgroundLoop]:
    bg = BackgroundLoop()
    try:
        yield bg
    finally:
        bg.close()


class ThreadServer:
    """A blocking-socket server: ``handler(conn)`` runs in a thread per connection."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port: int = self.sock.getsockname()[1]
        self.handler = handler
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(60)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.handler(conn)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()


@contextlib.contextmanager
def thread_server(handler: Callable[[socket.socket], None]) -> Iterator[ThreadServer]:
    server = ThreadServer(handler)
    try:
        yield server
    finally:
        server.close()


def write_config(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(text)
    return directory


def tcp_gateway(
    port: int,
    backends: list[tuple[str, int, str]],
    weights: list[int] | None = None,
    namespace: str = "default",
) -> str:
    """A TCP Gateway on ``port`` routing to Service ``app`` whose WorkloadEntries are
    ``(version, port, address)``; with ``weights``, one subset per version."""
    entries = "".join(
        f"""---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-{i}, namespace: {namespace}}}
spec:
  address: {address}
  ports: {{tcp: {bport}}}
  labels: {{app: app, version: {version}}}
"""
        for i, (version, bport, address) in enumerate(backends)
    )
    if weights:
        versions = [b[0] for b in backends]
        route = "".join(
            f"""    - destination: {{host: app, subset: {v}, port: {{number: 9000}}}}
      weight: {w}
"""
            for v, w in zip(versions, weights, strict=True)
        )
        subsets = "".join(f"  - {{name: {v}, labels: {{version: {v}}}}}\n" for v in versions)
        rule = f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app, namespace: {namespace}}}
spec:
  host: app
  subsets:
{subsets}"""
    else:
        route = "    - destination: {host: app, port: {number: 9000}}\n"
        rule = ""
    return f"""apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: {namespace}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: tcp, protocol: TCP}}
    hosts: ["*"]
---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: {namespace}}}
spec:
  selector: {{app: app}}
  ports: [{{name: tcp, port: 9000}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app, namespace: {namespace}}}
spec:
  hosts: ["*"]
  gateways: [gw]
  tcp:
  - match: [{{port: {port}}}]
    route:
{route}{entries}{rule}"""


def raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def env_pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
