"""TCP relay benchmark: isthmus side by side with HAProxy, nginx and no proxy at all.

    .venv/bin/python bench/tcp.py              # 3 interleaved rounds of 5 s measurements
    .venv/bin/python bench/tcp.py --quick      # 1 round of 2 s measurements
    .venv/bin/python bench/tcp.py --help

Needs haproxy, nginx (with its stream module) and iperf3; installs nothing and says what is
missing.  Starts an iperf3 server and an echo server, then the proxies (HAProxy ``mode tcp`` with
one thread and splice, nginx ``stream`` with one worker, isthmus with and without splice), all on
127.0.0.1 and free ports, and measures every workload through every target in rotated order,
round after round.  Prints a Markdown table of medians with ratios and replaces the ``## TCP``
section of BENCHMARKS.md with it (``--no-write`` to skip).  See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypedDict

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOAD = HERE / "tcpload.py"
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
APT = "sudo apt-get install"
QUIET_CORES = 0.2
"""Other load (cores) under which a measurement may start, after waiting up to --quiet-wait."""
RETRY_CORES = 0.3
"""Other load (cores, average) during a measurement that makes it be taken once more."""


# --------------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    unit: str
    goal: float
    """The issue's target for isthmus, as a multiple of HAProxy."""
    cost_unit: str
    """What proxy CPU is divided by: ``GB`` of payload, or one operation."""


WORKLOADS: tuple[Workload, ...] = (
    Workload("bulk1", "bulk, 1 stream", "Gbit/s", 1.0, "ms/GB"),
    Workload("bulk4", "bulk, 4 streams", "Gbit/s", 1.0, "ms/GB"),
    Workload("rtt", "64 B round trips, 1 connection", "/s", 0.95, "µs/round trip"),
    Workload("conn", "new connections", "/s", 0.6, "µs/connection"),
)


@dataclass(frozen=True)
class TargetKind:
    key: str
    label: str


TARGETS: tuple[TargetKind, ...] = (
    TargetKind("direct", "direct"),
    TargetKind("isthmus", "isthmus (splice)"),
    TargetKind("isthmus-nosplice", "isthmus (no splice)"),
    TargetKind("haproxy", "HAProxy"),
    TargetKind("nginx", "nginx"),
)
PROXIES = tuple(t.key for t in TARGETS if t.key != "direct")


@dataclass
class Sample:
    target: str
    workload: str
    round: int
    value: float | None = None
    """Gbit/s for bulk, operations per second otherwise."""
    work: float = 0.0
    """Bytes moved (bulk) or operations done, for the CPU cost per unit."""
    seconds: float = 0.0
    proxy_cpu: float | None = None
    proxy_user: float = 0.0
    """The user-space part of ``proxy_cpu`` (the rest is system time: the kernel's share)."""
    backend_cpu: float = 0.0
    foreign: float = 0.0
    """Average cores busy with things other than this benchmark during the measurement."""
    errors: int = 0
    error: str | None = None


class ClientResult(TypedDict):
    """What one ``tcpload.py`` client reports."""

    count: int
    seconds: float
    errors: int
    error: str | None


@dataclass
class Config:
    rounds: int
    seconds: float
    conn_clients: int
    quiet_wait: float
    haproxy_splice: str
    targets: tuple[str, ...]
    workloads: tuple[Workload, ...]


# --------------------------------------------------------------------------------------------
# Preflight: what this needs, installed by the user


@dataclass
class Tools:
    haproxy: str
    nginx: str
    iperf3: str
    isthmus: str
    python: str
    """Interpreter for the load processes (one that has uvloop, when there is one)."""
    nginx_stream_module: str | None
    """``load_module`` path when nginx has the stream module as a dynamic module."""
    isthmus_argv: list[str] = field(default_factory=list)
    """How to start isthmus (the installed script, or ``python -m isthmus`` for --isthmus-rev)."""
    isthmus_env: dict[str, str] | None = None
    isthmus_desc: str = ""


def _find_exe(name: str) -> str | None:
    """On PATH, or in the sbin directories a non-root PATH often lacks (Debian's haproxy/nginx)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        cand = Path(d, name)
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return None


def _output(argv: Sequence[str], timeout: float = 10.0) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"({exc})"
    return (done.stdout + done.stderr).strip()


def _nginx_stream(nginx: str) -> tuple[bool, str | None]:
    """(has stream, dynamic module path or None when built in)."""
    info = _output([nginx, "-V"])
    if re.search(r"--with-stream(\s|$)", info):
        return True, None
    if "--with-stream=dynamic" not in info:
        return False, None
    m = re.search(r"--modules-path=(\S+)", info)
    p = re.search(r"--prefix=(\S+)", info)
    dirs = [m.group(1)] if m else []
    dirs += [f"{p.group(1)}/modules"] if p else []
    dirs += ["/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules"]
    for d in dirs:
        so = Path(d, "ngx_stream_module.so")
        if so.is_file():
            return True, str(so)
    return False, None


def _has_uvloop(python: str) -> bool:
    return _output([python, "-c", "import uvloop; print('ok')"]).endswith("ok")


def preflight(isthmus_arg: str | None) -> Tools:
    missing: list[tuple[str, str]] = []  # (what, Debian package)
    found: dict[str, str] = {}
    for name in ("haproxy", "nginx", "iperf3"):
        path = _find_exe(name)
        if path is None:
            missing.append((name, name))
        else:
            found[name] = path
    module: str | None = None
    if "nginx" in found:
        has, module = _nginx_stream(found["nginx"])
        if not has:
            missing.append(("nginx's stream module", "libnginx-mod-stream"))
    elif "nginx" in {m[0] for m in missing}:
        missing.append(("nginx's stream module", "libnginx-mod-stream"))
    if missing:
        print("bench/tcp.py needs programs that are not installed:", file=sys.stderr)
        for what, _ in missing:
            print(f"  - {what}", file=sys.stderr)
        packages = " ".join(dict.fromkeys(pkg for _, pkg in missing))
        print(f"\nOn Debian 12 / Ubuntu:\n  {APT} {packages}", file=sys.stderr)
        print("\nThis script installs nothing itself.", file=sys.stderr)
        sys.exit(2)
    isthmus = isthmus_arg or (
        str(REPO / ".venv/bin/isthmus")
        if (REPO / ".venv/bin/isthmus").exists()
        else shutil.which("isthmus")
    )
    if not isthmus or not Path(isthmus).exists():
        print(
            "bench/tcp.py: isthmus is not installed; from the repository:\n"
            "  python3 -m venv .venv && .venv/bin/pip install .\n"
            "or pass --isthmus PATH",
            file=sys.stderr,
        )
        sys.exit(2)
    python = sys.executable
    if not _has_uvloop(python):
        venv_python = Path(isthmus).parent / "python"
        if venv_python.exists() and _has_uvloop(str(venv_python)):
            python = str(venv_python)
        else:
            print("note: uvloop not found; the echo backend runs on asyncio's default loop")
    return Tools(
        haproxy=found["haproxy"],
        nginx=found["nginx"],
        iperf3=found["iperf3"],
        isthmus=isthmus,
        python=python,
        nginx_stream_module=module,
    )


# --------------------------------------------------------------------------------------------
# Processes and CPU accounting


def _proc_stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, user, system CPU seconds) of one process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def tree_cpu(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its descendants (nginx: master, worker)."""
    stats: dict[int, tuple[int, float, float]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = _proc_stat(int(entry.name))
            if st is not None:
                stats[int(entry.name)] = st
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    user = system = 0.0
    todo, seen = [root], set[int]()
    while todo and len(seen) < 10000:
        pid = todo.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        user += stats[pid][1]
        system += stats[pid][2]
        todo.extend(children.get(pid, ()))
    return user, system


def system_busy() -> float:
    """Seconds all CPUs spent in user and system mode (not idle, iowait, irq, steal)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()
    user, nice, system = (int(x) for x in parts[1:4])
    return (user + nice + system) / CLK_TCK


def own_children_cpu() -> float:
    """CPU seconds of this process and the children it has waited for (clients, iperf3 -c)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


class Processes:
    """Long-running processes this benchmark started; all of them are stopped by ``stop_all``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(
        self, name: str, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop them in order
            env=env,
        )
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            text = (self.workdir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None:
            _stop(proc)

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)
        for log in self._logs:
            log.close()
        self._logs.clear()

    def cpu(self, names: Sequence[str]) -> float:
        return sum(self.cpu_split(names))

    def cpu_split(self, names: Sequence[str]) -> tuple[float, float]:
        """(user, system) CPU seconds of the named processes and their children."""
        user = system = 0.0
        for n in names:
            if n in self.procs:
                u, s = tree_cpu(self.procs[n].pid)
                user, system = user + u, system + s
        return user, system


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to the process group it leads (nginx's worker) after 5 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    # The group may outlive its leader (a worker still exiting): it is ours, by its id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(procs: Processes, name: str, port: int, timeout: float = 20.0) -> None:
    """Until ``port`` accepts a connection; fails early if the process exits."""
    proc = procs.procs[name]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"{name} exited with {proc.returncode} while starting:\n{procs.log_tail(name)}"
            )
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise SystemExit(f"{name} did not accept on {HOST}:{port} in {timeout:g} s")


def wait_log(procs: Processes, name: str, text: str, timeout: float = 20.0) -> None:
    proc = procs.procs[name]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in procs.log_tail(name, 50):
            return
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        time.sleep(0.05)
    raise SystemExit(f"{name} did not say {text!r} in {timeout:g} s")


# --------------------------------------------------------------------------------------------
# Configurations


@dataclass
class Endpoint:
    """Where one target listens: a port towards the iperf3 server, one towards the echo server."""

    bulk: int
    echo: int
    proc: str | None = None
    """Name of the target's process in ``Processes`` (None: direct)."""


HAPROXY_SPLICE = {
    # mode: (options of the bulk listener, options of the echo listener)
    "best": ("option splice-request\n    option splice-response", "option splice-auto"),
    "auto": ("option splice-auto", "option splice-auto"),
    "always": ("option splice-request\n    option splice-response",) * 2,
    "off": ("", ""),
}
"""HAProxy 2.6's ``splice-auto`` never engaged for iperf3 here (same Gbit/s and CPU as no
splice), so ``best`` forces splice on the bulk listener and leaves ``splice-auto`` on the echo
listener; forcing it there measured the same."""


HAPROXY_NOTE = {
    "best": "`option splice-request` + `splice-response` on the bulk listener (2.6's "
    "`splice-auto` did not engage for iperf3), `splice-auto` on the echo listener",
    "auto": "`option splice-auto`",
    "always": "`option splice-request` + `splice-response`",
    "off": "no splice",
}


def haproxy_config(bulk: int, echo: int, backends: Endpoint, maxconn: int, splice: str) -> str:
    bulk_opts, echo_opts = HAPROXY_SPLICE[splice]
    return f"""\
global
    nbthread 1
    maxconn {maxconn}

defaults
    mode tcp
    maxconn {maxconn}
    timeout connect 5s
    timeout client 120s
    timeout server 120s

listen bulk
    bind {HOST}:{bulk}
    {bulk_opts}
    server iperf3 {HOST}:{backends.bulk}

listen echo
    bind {HOST}:{echo}
    {echo_opts}
    server echo {HOST}:{backends.echo}
"""


def nginx_config(
    bulk: int, echo: int, backends: Endpoint, tmp: Path, module: str | None, conns: int
) -> str:
    load = f"load_module {module};\n" if module else ""
    return f"""\
{load}daemon off;
master_process on;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;

events {{
    worker_connections {conns};
}}

stream {{
    server {{
        listen {HOST}:{bulk};
        proxy_pass {HOST}:{backends.bulk};
    }}
    server {{
        listen {HOST}:{echo};
        proxy_pass {HOST}:{backends.echo};
    }}
}}
"""


def isthmus_config(bulk: int, echo: int, backends: Endpoint) -> str:
    """A gateway Service and Gateway with two TCP ports, each routed to one WorkloadEntry."""
    docs = [
        f"""\
apiVersion: v1
kind: Service
metadata:
  name: istio-ingressgateway
  namespace: istio-system
spec:
  selector:
    istio: ingressgateway
  ports:
  - name: tcp-bulk
    port: {bulk}
    targetPort: {bulk}
  - name: tcp-echo
    port: {echo}
    targetPort: {echo}
""",
        f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bench
  namespace: default
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: {bulk}
      name: tcp-bulk
      protocol: TCP
    hosts:
    - "*"
  - port:
      number: {echo}
      name: tcp-echo
      protocol: TCP
    hosts:
    - "*"
""",
    ]
    for name, port in (("iperf3", backends.bulk), ("echo", backends.echo)):
        docs.append(f"""\
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  ports:
  - name: tcp
    port: 9000
  selector:
    app: {name}
""")
        docs.append(f"""\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: {name}
  namespace: default
spec:
  address: {HOST}
  ports:
    tcp: {port}
  labels:
    app: {name}
""")
    docs.append(f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bench
  namespace: default
spec:
  hosts:
  - "*"
  gateways:
  - bench
  tcp:
  - match:
    - port: {bulk}
    route:
    - destination:
        host: iperf3
        port:
          number: 9000
  - match:
    - port: {echo}
    route:
    - destination:
        host: echo
        port:
          number: 9000
""")
    return "---\n".join(docs)


# --------------------------------------------------------------------------------------------
# The bench: backends, proxies, workloads


@dataclass
class Bench:
    tools: Tools
    cfg: Config
    tmp: Path
    procs: Processes
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    backends: Endpoint = field(default_factory=lambda: Endpoint(0, 0))
    notes: list[str] = field(default_factory=list)

    # -- setup ---------------------------------------------------------------------------

    def start(self) -> None:
        ports = iter(free_ports(2 + 2 * len(PROXIES)))
        self.backends = Endpoint(next(ports), next(ports))
        self.endpoints["direct"] = self.backends
        self._start_iperf()
        self.procs.start("echo", [self.tools.python, str(LOAD), "echo", str(self.backends.echo)])
        wait_port(self.procs, "echo", self.backends.echo)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        for key in PROXIES:
            ep = Endpoint(next(ports), next(ports), key)
            if key not in self.cfg.targets:
                continue
            self.endpoints[key] = ep
            if key == "haproxy":
                cfg = self.tmp / "haproxy.cfg"
                limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
                cfg.write_text(
                    haproxy_config(
                        ep.bulk,
                        ep.echo,
                        self.backends,
                        min(10000, (limit - 500) // 3),
                        self.cfg.haproxy_splice,
                    )
                )
                argv = [self.tools.haproxy, "-f", str(cfg), "-db"]
            elif key == "nginx":
                cfg = self.tmp / "nginx.conf"
                nofile = soft if soft != resource.RLIM_INFINITY else 1 << 20
                cfg.write_text(
                    nginx_config(
                        ep.bulk,
                        ep.echo,
                        self.backends,
                        self.tmp,
                        self.tools.nginx_stream_module,
                        max(512, min(16384, nofile - 100)),
                    )
                )
                argv = [
                    self.tools.nginx,
                    "-p",
                    str(self.tmp),
                    "-c",
                    str(cfg),
                    "-e",
                    str(self.tmp / "nginx-error.log"),
                ]
            else:
                cdir = self.tmp / key
                cdir.mkdir()
                (cdir / "bench.yaml").write_text(isthmus_config(ep.bulk, ep.echo, self.backends))
                argv = [
                    *self.tools.isthmus_argv,
                    "run",
                    "-f",
                    str(cdir),
                    "--bind",
                    HOST,
                    "--quiet",
                    "--drain-seconds",
                    "0",
                ]
                if key == "isthmus-nosplice":
                    argv.append("--no-splice")
            env = self.tools.isthmus_env if key.startswith("isthmus") else None
            self.procs.start(key, argv, env)
            wait_port(self.procs, key, ep.echo)  # not the bulk port: iperf3 dislikes probes

    def _start_iperf(self) -> None:
        self.procs.stop("iperf3")
        self.procs.start(
            "iperf3",
            [self.tools.iperf3, "-s", "-B", HOST, "-p", str(self.backends.bulk), "--forceflush"],
        )
        wait_log(self.procs, "iperf3", "Server listening")

    def check(self) -> None:
        """Every target relays both kinds of traffic before any number is taken (and warms up)."""
        for key in self.cfg.targets:
            ep = self.endpoints[key]
            label = _target_label(key)
            rtt = self._client(["rtt", str(ep.echo), str(time.time()), "0.2"], 20)
            if rtt.get("error") or not rtt.get("count"):
                raise SystemExit(f"{label}: echo through {HOST}:{ep.echo} failed: {rtt}")
            gbits, _, err = self._iperf(ep.bulk, 1, 1.0)
            if gbits is None:
                raise SystemExit(f"{label}: iperf3 through {HOST}:{ep.bulk} failed: {err}")
            print(f"  {label}: ok ({rtt['count'] / rtt['seconds']:,.0f} rt/s, {gbits:.1f} Gbit/s)")

    # -- measuring -----------------------------------------------------------------------

    def wait_quiet(self) -> None:
        """Up to ``quiet_wait`` s for other load on the machine to drop under ``QUIET_CORES``."""
        deadline = time.monotonic() + self.cfg.quiet_wait
        while time.monotonic() < deadline:
            b0, o0, t0 = system_busy(), self._our_cpu(), time.monotonic()
            time.sleep(0.5)
            foreign = (system_busy() - b0) - (self._our_cpu() - o0)
            if foreign / (time.monotonic() - t0) < QUIET_CORES:
                return

    def _our_cpu(self) -> float:
        return self.procs.cpu(list(self.procs.procs)) + own_children_cpu()

    def measure(self, target: str, wl: Workload, rnd: int) -> Sample:
        self.wait_quiet()
        ep = self.endpoints[target]
        backend = ["iperf3"] if wl.key.startswith("bulk") else ["echo"]
        sample = Sample(target, wl.key, rnd)
        start_at = time.time() + 0.5 if wl.key in ("rtt", "conn") else time.time()
        run = self._runner(wl, ep, start_at, sample)
        delay = start_at - time.time()
        clients = run()  # starts the clients; they wait for start_at
        if delay > 0:
            time.sleep(max(0.0, start_at - time.time()))
        proxy0 = self.procs.cpu_split([ep.proc]) if ep.proc else (0.0, 0.0)
        backend0 = self.procs.cpu(backend)
        busy0, ours0, t0 = system_busy(), self._our_cpu(), time.monotonic()
        clients()  # waits for them and fills the sample
        wall = time.monotonic() - t0
        if ep.proc:
            user, system = self.procs.cpu_split([ep.proc])
            sample.proxy_user = user - proxy0[0]
            sample.proxy_cpu = sample.proxy_user + system - proxy0[1]
        sample.backend_cpu = self.procs.cpu(backend) - backend0
        foreign = (system_busy() - busy0) - (self._our_cpu() - ours0)
        sample.foreign = max(0.0, foreign / wall) if wall > 0 else 0.0
        if sample.seconds <= 0:
            sample.seconds = wall
        return sample

    def _runner(
        self, wl: Workload, ep: Endpoint, start_at: float, sample: Sample
    ) -> Callable[[], Callable[[], None]]:
        """A function that starts the workload's clients and returns one that finishes it."""
        secs = self.cfg.seconds
        if wl.key.startswith("bulk"):
            streams = 1 if wl.key == "bulk1" else 4

            def start_bulk() -> Callable[[], None]:
                def finish() -> None:
                    gbits, nbytes, err = self._iperf(ep.bulk, streams, secs)
                    sample.value, sample.work, sample.error = gbits, float(nbytes), err
                    sample.seconds = secs
                    if gbits is None:
                        sample.errors = 1
                        self._start_iperf()  # a failed test can leave the server stuck

                return finish

            return start_bulk
        if wl.key == "rtt":
            argv = ["rtt", str(ep.echo), str(start_at), str(secs)]
            n = 1
        else:
            argv = ["conn", str(ep.echo), str(start_at), str(secs)]
            n = self.cfg.conn_clients

        def start_clients() -> Callable[[], None]:
            procs = [self._spawn_client(argv) for _ in range(n)]

            def finish() -> None:
                try:
                    results = [self._collect(p, secs + 20) for p in procs]
                except BaseException:
                    for p in procs:
                        if p.poll() is None:
                            p.kill()
                            p.wait()
                    raise
                count = sum(r["count"] for r in results)
                rate = sum(r["count"] / r["seconds"] for r in results if r["seconds"] > 0)
                sample.errors = sum(r["errors"] for r in results)
                errs = [r["error"] for r in results if r["error"]]
                sample.error = errs[0] if errs else None
                sample.work = float(count)
                sample.seconds = max((r["seconds"] for r in results), default=0.0)
                sample.value = rate if count else None

            return finish

        return start_clients

    def _spawn_client(self, argv: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [self.tools.python, str(LOAD), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @staticmethod
    def _collect(proc: subprocess.Popen[str], timeout: float) -> ClientResult:
        def failed(error: str) -> ClientResult:
            return ClientResult(count=0, seconds=0.0, errors=1, error=error)

        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return failed("client timed out")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        try:
            raw = json.loads(out.strip().splitlines()[-1])
            return ClientResult(
                count=int(raw["count"]),
                seconds=float(raw["seconds"]),
                errors=int(raw["errors"]),
                error=None if raw.get("error") is None else str(raw["error"]),
            )
        except (ValueError, IndexError, KeyError, TypeError):
            return failed(err.strip()[-300:] or "no output")

    def _client(self, argv: list[str], timeout: float) -> ClientResult:
        return self._collect(self._spawn_client(argv), timeout)

    def _iperf(self, port: int, streams: int, secs: float) -> tuple[float | None, int, str | None]:
        """(Gbit/s received, bytes received, error) of one iperf3 client run."""
        argv = [self.tools.iperf3, "-c", HOST, "-p", str(port), "-J"]
        argv += ["-P", str(streams), "-t", f"{secs:g}", "--connect-timeout", "5000"]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=secs + 25, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            return None, 0, "iperf3 client timed out"
        try:
            report = json.loads(done.stdout)
        except ValueError:
            return None, 0, (done.stderr or done.stdout).strip()[-300:] or "no output"
        if "error" in report:
            return None, 0, str(report["error"])
        received = report["end"]["sum_received"]
        return received["bits_per_second"] / 1e9, int(received["bytes"]), None

    # -- the rounds ----------------------------------------------------------------------

    def run(self) -> list[Sample]:
        samples: list[Sample] = []
        order = list(self.cfg.targets)
        total = self.cfg.rounds * len(self.cfg.workloads) * len(order)
        i = 0
        for rnd in range(self.cfg.rounds):
            for wi, wl in enumerate(self.cfg.workloads):
                shift = (rnd + wi) % len(order)
                for target in order[shift:] + order[:shift]:
                    i += 1
                    s = self.measure(target, wl, rnd)
                    if s.foreign >= RETRY_CORES or s.value is None:
                        # Other load (or a failure) spoilt it: measure once more, keep the
                        # quieter of the two.
                        again = self.measure(target, wl, rnd)
                        if again.value is not None and (
                            s.value is None or again.foreign < s.foreign
                        ):
                            s = again
                    samples.append(s)
                    shown = "failed" if s.value is None else _fmt_value(wl, s.value)
                    extra = f"  [{s.errors} errors: {s.error}]" if s.errors else ""
                    cpu = "" if s.proxy_cpu is None else f"  proxy {s.proxy_cpu / s.seconds:.0%}"
                    noise = f"  other load {s.foreign:.2f} cores" if s.foreign >= 0.1 else ""
                    print(
                        f"[{i:>3}/{total}] round {rnd + 1} {wl.label:<32} "
                        f"{_target_label(target):<20} {shown:>10} {wl.unit}{cpu}{noise}{extra}",
                        flush=True,
                    )
        return samples


# --------------------------------------------------------------------------------------------
# Report


def _target_label(key: str) -> str:
    return next(t.label for t in TARGETS if t.key == key)


def _fmt_value(wl: Workload, v: float) -> str:
    if wl.unit == "Gbit/s":
        return f"{v:.1f}"
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}×"


def describe_machine(tools: Tools) -> list[str]:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    os_name = platform.system()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    usable = len(os.sched_getaffinity(0))
    uv = _output([tools.python, "-c", "import uvloop; print(uvloop.__version__)"])
    uv = uv if re.fullmatch(r"[\w.]+", uv) else "not installed"
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1048576:.0f} GiB RAM"

    def first(argv: list[str]) -> str:
        return _output(argv).splitlines()[0] if _output(argv) else "?"

    return [
        f"- CPU: {usable} usable of {os.cpu_count()} × {model}{mem}",
        f"- OS: {os_name}, Linux {platform.release()} ({platform.machine()})",
        f"- Python {platform.python_version()}, uvloop {uv}; isthmus {tools.isthmus_desc}",
        f"- {first([tools.haproxy, '-v'])}",
        f"- {first([tools.nginx, '-v'])}",
        f"- {first([tools.iperf3, '--version'])}",
    ]


def render(samples: list[Sample], cfg: Config, tools: Tools, started: datetime.datetime) -> str:
    by: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        by.setdefault((s.target, s.workload), []).append(s)

    def med(target: str, wl: str) -> float | None:
        return _median([s.value for s in by.get((target, wl), []) if s.value is not None])

    def cell(wl: Workload, target: str) -> str:
        if target not in cfg.targets:
            return "—"
        v = med(target, wl.key)
        return "failed" if v is None else _fmt_value(wl, v)

    cols = [t.key for t in TARGETS]
    lines = [
        "## TCP",
        "",
        f"`bench/tcp.py`, {started:%Y-%m-%d %H:%M} UTC: {cfg.rounds} round(s), "
        f"{cfg.seconds:g} s per measurement, every workload through every target in rotated "
        "order each round; medians. Load generators, backends and proxies share this machine's "
        "CPUs, as in `../shared/PERFORMANCE.md`.",
        "",
        *describe_machine(tools),
        "",
        "| workload | " + " | ".join(t.label for t in TARGETS) + " | isthmus / HAProxy "
        "| no splice / HAProxy | isthmus / direct | target vs HAProxy |",
        "|---" * (len(cols) + 5) + "|",
    ]
    for wl in cfg.workloads:
        label = f"{wl.label}, {wl.unit}"
        if wl.key == "conn":
            label = f"new connections ({cfg.conn_clients} clients), /s"
        h = med("haproxy", wl.key)
        i = med("isthmus", wl.key)
        n = med("isthmus-nosplice", wl.key)
        d = med("direct", wl.key)
        verdicts = []
        for name, v in (("splice", i), ("no splice", n)):
            if v is not None and h:
                verdicts.append(f"{name} {'met' if v / h >= wl.goal else 'missed'}")
        row = [label, *(cell(wl, c) for c in cols)]
        row += [_ratio(i, h), _ratio(n, h), _ratio(i, d)]
        row.append(f"≥ {wl.goal:.2f}×: " + ", ".join(verdicts) if verdicts else f"≥ {wl.goal}×")
        lines.append("| " + " | ".join(row) + " |")

    lines += [
        "",
        "Proxy CPU during each workload (medians): share of one core, CPU time per unit of "
        "work, and the user-space part of it (the rest is system time, the kernel's work); "
        "user + system time of the proxy's processes from `/proc/PID/stat`.",
        "",
        "| workload | " + " | ".join(_target_label(p) for p in PROXIES) + " |",
        "|---" * (len(PROXIES) + 1) + "|",
    ]
    for wl in cfg.workloads:
        cells = []
        for p in PROXIES:
            ss = [s for s in by.get((p, wl.key), []) if s.proxy_cpu is not None and s.work]
            if not ss:
                cells.append("—")
                continue
            share = statistics.median(s.proxy_cpu / s.seconds for s in ss if s.proxy_cpu)
            scale = 1e3 * 1e9 if wl.cost_unit == "ms/GB" else 1e6
            cost = statistics.median((s.proxy_cpu or 0.0) * scale / s.work for s in ss)
            user = statistics.median(s.proxy_user / s.proxy_cpu for s in ss if s.proxy_cpu)
            cells.append(f"{share:.0%} · {cost:.3g} {wl.cost_unit} · {user:.0%} user")
        lines.append(f"| {wl.label} | " + " | ".join(cells) + " |")

    backend_notes = []
    for wl in cfg.workloads:
        ss = [s for s in by.get(("direct", wl.key), []) if s.seconds]
        if ss:
            share = statistics.median(s.backend_cpu / s.seconds for s in ss)
            name = "iperf3 server" if wl.key.startswith("bulk") else "echo server"
            backend_notes.append(f"{wl.label}: {name} {share:.0%}")
    foreign = [s.foreign for s in samples]
    lines += [
        "",
        "How: bulk is `iperf3 -c -P 1|4 -t T -J` against `iperf3 -s` (received Gbit/s); round "
        "trips are one 64-byte message in flight on one connection, a blocking Python client "
        "against a uvloop echo server (`bench/tcpload.py`); new connections are "
        f"{cfg.conn_clients} blocking client processes that each connect, send 1 byte, read it "
        "back and close, in a loop. HAProxy: `mode tcp`, `nbthread 1`, "
        f"{HAPROXY_NOTE[cfg.haproxy_splice]}. "
        "nginx: `stream`, `worker_processes 1`, stock buffers. isthmus: `isthmus run` (uvloop); "
        "splice is its default on Linux, `--no-splice` relays through asyncio Protocols. "
        "Ratios are of medians; `direct` is the ceiling the clients and backends reach "
        "without a proxy.",
        "",
        "Backend CPU in the direct runs (is the backend the limit?): "
        + "; ".join(backend_notes)
        + ".",
        f"Other load on the machine during measurements (from `/proc/stat`, minus this "
        f"benchmark's processes): median {statistics.median(foreign or [0]):.2f} cores, "
        f"max {max(foreign or [0]):.2f}. Each measurement waits up to {cfg.quiet_wait:g} s "
        f"for other load under {QUIET_CORES} cores, and one with {RETRY_CORES} cores or more "
        "of other load is taken once more, keeping the quieter.",
        "",
        "<details><summary>every sample</summary>",
        "",
        "| workload | target | " + " | ".join(f"round {r + 1}" for r in range(cfg.rounds)) + " |",
        "|---" * (cfg.rounds + 2) + "|",
    ]
    for wl in cfg.workloads:
        for t in cfg.targets:
            vals = []
            for r in range(cfg.rounds):
                one = next((x for x in by.get((t, wl.key), []) if x.round == r), None)
                if one is None:
                    vals.append("")
                elif one.value is None:
                    vals.append(f"failed ({one.error})")
                else:
                    text = _fmt_value(wl, one.value)
                    if one.foreign >= 0.1:
                        text += f" (other load {one.foreign:.1f})"
                    if one.errors:
                        text += f" ({one.errors} errors)"
                    vals.append(text)
            lines.append(f"| {wl.label} | {_target_label(t)} | " + " | ".join(vals) + " |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


BENCH_HEADER = """\
# Benchmarks

Side-by-side measurements of isthmus against HAProxy and nginx on one machine. Each section is
written by the script it names; run it again to refresh that section (other sections are kept).
How to read them and the budget they are held to: `../shared/PERFORMANCE.md`, `bench/README.md`.
"""


def write_section(path: Path, section: str, name: str = "TCP") -> None:
    """Replace (or append) the ``## name`` section, keeping every other section."""
    text = path.read_text() if path.exists() else BENCH_HEADER
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.rstrip() == f"## {name}"), None)
    body = section.rstrip("\n") + "\n"
    if start is None:
        new = text.rstrip("\n") + "\n\n" + body
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + body + ("\n" + tail if tail else "")
    path.write_text(new)


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Config]:
    p = argparse.ArgumentParser(
        description="TCP relay benchmark: direct, isthmus, HAProxy, nginx (see bench/README.md)"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--seconds", type=float, default=5.0, help="per measurement (default 5)")
    p.add_argument("--quick", action="store_true", help="1 round of 2 s measurements")
    p.add_argument(
        "--conn-clients", type=int, default=4, help="client processes for new connections"
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=15.0,
        help="before each measurement, wait up to this many seconds for other load to stop",
    )
    p.add_argument(
        "--targets", help="comma-separated subset of: " + ",".join(t.key for t in TARGETS)
    )
    p.add_argument("--workloads", help="comma-separated subset of: bulk1,bulk4,rtt,conn")
    p.add_argument(
        "--haproxy-splice",
        choices=tuple(HAPROXY_SPLICE),
        default="best",
        help="best (default): splice-request/-response for bulk, splice-auto for echo; "
        "auto; always; off",
    )
    p.add_argument("--isthmus", help="isthmus executable (default: the repository's .venv)")
    p.add_argument(
        "--isthmus-rev",
        metavar="REV",
        help="measure isthmus as committed at REV (git archive of src/ into the temp dir, run "
        "with the installed interpreter) instead of the working tree",
    )
    p.add_argument("--output", type=Path, default=REPO / "BENCHMARKS.md")
    p.add_argument("--no-write", action="store_true", help="print only, do not touch --output")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.quiet_wait = 1, 2.0, min(args.quiet_wait, 5.0)
    keys = [t.key for t in TARGETS]
    targets = tuple(args.targets.split(",")) if args.targets else tuple(keys)
    wkeys = [w.key for w in WORKLOADS]
    wanted = args.workloads.split(",") if args.workloads else wkeys
    bad = [t for t in targets if t not in keys] + [w for w in wanted if w not in wkeys]
    if bad:
        p.error(f"unknown target or workload: {', '.join(bad)}")
    if not 1 <= args.rounds <= 50 or not 0.5 <= args.seconds <= 120:
        p.error("--rounds must be 1..50 and --seconds 0.5..120")
    if not 1 <= args.conn_clients <= 64:
        p.error("--conn-clients must be 1..64")
    cfg = Config(
        rounds=args.rounds,
        seconds=args.seconds,
        conn_clients=args.conn_clients,
        quiet_wait=max(0.0, min(args.quiet_wait, 120.0)),
        haproxy_splice=args.haproxy_splice,
        targets=tuple(k for k in keys if k in targets),
        workloads=tuple(w for w in WORKLOADS if w.key in wanted),
    )
    return args, cfg


def use_isthmus(tools: Tools, rev: str | None, tmp: Path) -> None:
    """Decide how isthmus is started: the installed script (working tree), or a commit."""
    git = ["git", "-C", str(REPO)]
    if rev is None:
        tools.isthmus_argv = [tools.isthmus]
        commit = _output([*git, "rev-parse", "--short", "HEAD"])
        dirty = _output([*git, "status", "--porcelain", "--", "src"])
        tools.isthmus_desc = f"{commit} + uncommitted changes in src/" if dirty else commit
        return
    commit = _output([*git, "rev-parse", "--short", "--verify", f"{rev}^{{commit}}"])
    if not re.fullmatch(r"[0-9a-f]{4,40}", commit):
        raise SystemExit(f"--isthmus-rev {rev}: not a commit of {REPO}: {commit}")
    python = Path(tools.isthmus).parent / "python"
    if not python.exists():
        raise SystemExit(f"--isthmus-rev needs the interpreter next to {tools.isthmus}")
    dest = tmp / "isthmus-src"
    dest.mkdir()
    with subprocess.Popen([*git, "archive", commit, "src/isthmus"], stdout=subprocess.PIPE) as ar:
        assert ar.stdout is not None
        with tarfile.open(fileobj=ar.stdout, mode="r|") as tar:
            tar.extractall(dest, filter="data")
    if ar.returncode != 0:
        raise SystemExit(f"git archive {commit} failed")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(dest / "src")
    tools.isthmus_argv, tools.isthmus_env = [str(python), "-m", "isthmus"], env
    tools.isthmus_desc = f"{commit} (committed tree)"


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _workspace() -> Iterator[tuple[Path, Processes]]:
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-") as tmp:
        procs = Processes(Path(tmp))
        try:
            yield Path(tmp), procs
        finally:
            procs.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    tools = preflight(args.isthmus)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    started = datetime.datetime.now(datetime.UTC)
    n = cfg.rounds * len(cfg.workloads) * len(cfg.targets)
    print(
        f"{n} measurements of {cfg.seconds:g} s ({cfg.rounds} rounds × "
        f"{len(cfg.workloads)} workloads × {len(cfg.targets)} targets), "
        f"about {n * (cfg.seconds + 1.5) / 60:.0f} min",
        flush=True,
    )
    try:
        with _workspace() as (tmp, procs):
            use_isthmus(tools, args.isthmus_rev, tmp)
            bench = Bench(tools, cfg, tmp, procs)
            bench.start()
            print("checking every target:", flush=True)
            bench.check()
            samples = bench.run()
    except KeyboardInterrupt:
        print("\ninterrupted; every process this benchmark started is stopped", file=sys.stderr)
        return 130
    section = render(samples, cfg, tools, started)
    print()
    print(section)
    if not args.no_write:
        write_section(args.output, section)
        print(f"wrote the ## TCP section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
