"""HTTP proxy benchmark: isthmus side by side with nginx, HAProxy and no proxy at all.

    .venv/bin/python bench/http.py              # 3 interleaved rounds of 5 s measurements
    .venv/bin/python bench/http.py --quick      # 1 round of 2 s measurements
    .venv/bin/python bench/http.py --help

Needs wrk, nginx and haproxy; installs nothing and says what is missing.  Starts an nginx origin
(``return 200``, one worker), then the proxies, one worker each: nginx ``proxy_pass`` to an
upstream with ``keepalive``, HAProxy ``mode http`` with ``nbthread 1`` and ``http-reuse always``,
and isthmus with a realistic route table (other hosts, ten rules ahead of the hit, request and
response header rewriting).  All on 127.0.0.1, free ports, pinned to CPUs with ``taskset``
(``--no-pin`` to let the scheduler place them).  Measures ``wrk`` keep-alive with 50 connections,
with one connection, and a new connection per request, through every target in rotated order,
round after round: requests/s, p50, p99 and the proxy's CPU.  Prints Markdown tables of medians
with ratios and replaces the ``## HTTP`` section of BENCHMARKS.md (``--no-write`` to skip).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

# Helpers shared with the TCP benchmark (bench/ is not a package; tcp.py sits beside this file).
from tcp import (  # noqa: E402
    TargetKind,
    _find_exe,
    _median,
    _on_sigterm,
    _ratio,
    _stop,
    free_ports,
    own_children_cpu,
    system_busy,
    tree_cpu,
    use_isthmus,
    wait_port,
)

REPO = HERE.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
APT = "sudo apt-get install -y"
VHOST = "bench.example.com"
PATH = "/catalog/item/42"
BODY = "ok\n"
WRK_TIMEOUT = 5  # s: a response slower than this counts as a wrk timeout error


# --------------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    connections: int
    close: bool
    """``Connection: close`` on every request: one TCP connection per request."""

    def wrk_desc(self) -> str:
        close = ' -H "Connection: close"' if self.close else ""
        return f"`wrk -t1 -c{self.connections}{close}`"


def make_workloads(close_connections: int) -> tuple[Workload, ...]:
    return (
        Workload("ka50", "keep-alive, 50 connections", 50, False),
        Workload("ka1", "keep-alive, 1 connection", 1, False),
        Workload(
            "close",
            f"new connection per request, {close_connections} concurrent",
            close_connections,
            True,
        ),
    )


WORKLOAD_KEYS = ("ka50", "ka1", "close")


TARGETS: tuple[TargetKind, ...] = (
    TargetKind("direct", "direct"),
    TargetKind("isthmus", "isthmus"),
    TargetKind("isthmus-off", "isthmus, no metrics/log"),
    TargetKind("nginx", "nginx"),
    TargetKind("haproxy", "HAProxy"),
    TargetKind("isthmus-bare", "isthmus, 1 rule"),
    TargetKind("minimal", "minimal Python proxy"),
)
PROXIES = tuple(t.key for t in TARGETS if t.key != "direct")
DEFAULT_TARGETS = ("direct", "isthmus", "isthmus-off", "nginx", "haproxy")
"""``isthmus-off`` is isthmus with metrics and the access log off (issue #7 asks for the
difference); ``isthmus-bare`` (one catch-all rule, no header rewriting) is opt-in:
``--targets``; so is ``minimal``, ``bench/minimal_proxy.py`` (uvloop + httptools and nothing
else: the floor ``../shared/PERFORMANCE.md`` calls "minimal Python")."""


@dataclass
class Sample:
    target: str
    workload: str
    round: int
    rps: float | None = None
    p50: float | None = None
    """Microseconds, from wrk's latency histogram."""
    p99: float | None = None
    requests: int = 0
    seconds: float = 0.0
    proxy_user: float | None = None
    """CPU seconds of the proxy's processes in user mode over the measurement."""
    proxy_sys: float | None = None
    origin_cpu: float = 0.0
    client_cpu: float = 0.0
    access_log: int = 0
    """Bytes isthmus wrote to its access log during the measurement."""
    foreign: float = 0.0
    """Average cores busy with things other than this benchmark during the measurement."""
    errors: int = 0
    error: str | None = None

    @property
    def proxy_cpu(self) -> float | None:
        if self.proxy_user is None or self.proxy_sys is None:
            return None
        return self.proxy_user + self.proxy_sys


@dataclass
class Config:
    rounds: int
    seconds: int
    quiet_wait: float
    pin: bool
    targets: tuple[str, ...]
    workloads: tuple[Workload, ...]


# --------------------------------------------------------------------------------------------
# Preflight: what this needs, installed by the user


@dataclass
class Tools:
    wrk: str
    nginx: str
    haproxy: str
    taskset: str | None
    isthmus: str
    nginx_without: frozenset[str]
    """http modules nginx was built without (``fastcgi``, ``uwsgi``, ``scgi``)."""
    isthmus_argv: list[str] = field(default_factory=list)
    isthmus_env: dict[str, str] | None = None
    isthmus_desc: str = ""
    isthmus_obs: bool = False
    """This isthmus has ``--access-log`` and ``--metrics-port`` (metrics and access log)."""


def _output(argv: Sequence[str], timeout: float = 10.0, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"({exc})"
    return (done.stdout + done.stderr).strip()


def preflight(isthmus_arg: str | None, pin: bool) -> Tools:
    found = {name: _find_exe(name) for name in ("wrk", "nginx", "haproxy")}
    missing = [name for name, path in found.items() if path is None]
    taskset = _find_exe("taskset")
    if pin and taskset is None:
        missing.append("taskset")
    if missing:
        print("bench/http.py needs programs that are not installed:", file=sys.stderr)
        for name in missing:
            print(f"  - {name}", file=sys.stderr)
        packages = " ".join("util-linux" if m == "taskset" else m for m in missing)
        print(f"\nOn Debian 12 / Ubuntu:\n  {APT} {packages}", file=sys.stderr)
        if "taskset" in missing:
            print("(or run with --no-pin)", file=sys.stderr)
        print("\nThis script installs nothing itself.", file=sys.stderr)
        sys.exit(2)
    isthmus = isthmus_arg or (
        str(REPO / ".venv/bin/isthmus")
        if (REPO / ".venv/bin/isthmus").exists()
        else shutil.which("isthmus")
    )
    if not isthmus or not Path(isthmus).exists():
        print(
            "bench/http.py: isthmus is not installed; from the repository:\n"
            "  python3 -m venv .venv && .venv/bin/pip install .\n"
            "or pass --isthmus PATH",
            file=sys.stderr,
        )
        sys.exit(2)
    nginx, wrk, haproxy = found["nginx"], found["wrk"], found["haproxy"]
    assert nginx and wrk and haproxy
    info = _output([nginx, "-V"])
    without = frozenset(
        m for m in ("fastcgi", "uwsgi", "scgi") if f"--without-http_{m}_module" in info
    )
    return Tools(
        wrk=wrk,
        nginx=nginx,
        haproxy=haproxy,
        taskset=taskset,
        isthmus=isthmus,
        nginx_without=without,
    )


# --------------------------------------------------------------------------------------------
# Processes and CPU accounting


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Processes:
    """Long-running processes this benchmark started; all of them are stopped by ``stop_all``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[bytes]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        stdout: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Output goes to ``NAME.log``; ``stdout``, when given, takes standard output alone
        (opened for appending, so it can be truncated while the process writes)."""
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(log)
        out: IO[bytes] | int = subprocess.STDOUT
        if stdout is not None:
            out = open(stdout, "ab")  # noqa: SIM115 - closed in stop_all
            self._logs.append(out)
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log if stdout is None else out,
            stderr=log if stdout is not None else out,
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

    def cpu(self, names: Sequence[str]) -> tuple[float, float]:
        user = system = 0.0
        for n in names:
            if n in self.procs:
                u, s = tree_cpu(self.procs[n].pid)
                user, system = user + u, system + s
        return user, system

    def alive(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None


# --------------------------------------------------------------------------------------------
# CPU layout


@dataclass(frozen=True)
class Layout:
    proxy: str | None
    origin: str | None
    client: str | None

    def describe(self) -> str:
        if self.proxy is None:
            return "not pinned: the scheduler places wrk, the origin and the proxy (`--no-pin`)"
        if self.origin == self.client:
            return (
                f"pinned with `taskset`: the proxy alone on CPU {self.proxy}, wrk and the origin "
                f"together on CPU {self.client} (the proxy's core is idle in `direct`)"
            )
        return (
            f"pinned with `taskset`: proxy on CPU {self.proxy}, origin on CPU {self.origin}, "
            f"wrk on CPU {self.client}"
        )


def choose_layout(pin: bool) -> Layout:
    """The proxy gets a core of its own; wrk and the origin share the other (2 CPUs)."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return Layout(None, None, None)
    if len(cpus) == 2:
        return Layout(str(cpus[0]), str(cpus[1]), str(cpus[1]))
    return Layout(str(cpus[0]), str(cpus[1]), str(cpus[2]))


# --------------------------------------------------------------------------------------------
# Configurations


def _nginx_common(tmp: Path, name: str, without: frozenset[str], conns: int) -> tuple[str, str]:
    """Process and path settings shared by the origin and the proxy (all under ``tmp``)."""
    temp = [
        f"    client_body_temp_path {tmp}/{name}-body;",
        f"    proxy_temp_path {tmp}/{name}-proxy;",
    ]
    temp += [
        f"    {m}_temp_path {tmp}/{name}-{m};"
        for m in ("fastcgi", "uwsgi", "scgi")
        if m not in without
    ]
    return (
        f"""\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;

events {{
    worker_connections {conns};
}}
""",
        "\n".join(temp),
    )


def origin_config(port: int, tmp: Path, without: frozenset[str], conns: int) -> str:
    """nginx as the origin: a 3-byte body; echoes two request headers to check the proxies."""
    head, temp = _nginx_common(tmp, "origin", without, conns)
    return f"""\
{head}
http {{
{temp}
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            default_type text/plain;
            add_header X-Seen-Route $http_x_bench_route;
            add_header X-Seen-Debug $http_x_debug;
            return 200 "{BODY.strip()}\\n";
        }}
    }}
}}
"""


def nginx_config(port: int, origin: int, tmp: Path, without: frozenset[str], conns: int) -> str:
    head, temp = _nginx_common(tmp, "nginx", without, conns)
    return f"""\
{head}
http {{
{temp}
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    upstream origin {{
        server {HOST}:{origin};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def haproxy_config(port: int, origin: int, maxconn: int) -> str:
    return f"""\
global
    nbthread 1
    maxconn {maxconn}

defaults
    mode http
    maxconn {maxconn}
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s

frontend fe
    bind {HOST}:{port}
    default_backend origin

backend origin
    http-reuse always
    server origin {HOST}:{origin}
"""


ROUTE_RULES = """\
  - name: users-canary
    match:
    - uri: {prefix: /api/v1/users}
      headers: {x-canary: {exact: "true"}}
    route: [{destination: {host: api, subset: canary, port: {number: 80}}}]
  - name: api-v1
    match: [{uri: {prefix: /api/v1/}}]
    route: [{destination: {host: api, port: {number: 80}}}]
  - name: login
    match: [{uri: {exact: /login}, method: {exact: POST}}]
    route: [{destination: {host: api, port: {number: 80}}}]
  - name: static
    match: [{uri: {prefix: /static/}}, {uri: {prefix: /assets/}}]
    route: [{destination: {host: static, port: {number: 80}}}]
    headers: {response: {set: {cache-control: "public, max-age=86400"}}}
  - name: orders
    match: [{uri: {regex: "/v[0-9]+/orders/.*"}}]
    route: [{destination: {host: api, port: {number: 80}}}]
  - name: tenant-acme
    match: [{headers: {x-tenant: {exact: acme}}}]
    route: [{destination: {host: api, subset: canary, port: {number: 80}}}]
  - name: admin
    match: [{uri: {prefix: /admin}, headers: {authorization: {prefix: "Bearer "}}}]
    route: [{destination: {host: admin, port: {number: 80}}}]
  - name: debug
    match: [{queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: api, subset: canary, port: {number: 80}}}]
  - name: health
    match: [{uri: {exact: /healthz}}, {uri: {exact: /readyz}}]
    route: [{destination: {host: static, port: {number: 80}}}]
  - name: deletes
    match: [{method: {exact: DELETE}}]
    route: [{destination: {host: admin, port: {number: 80}}}]
  - name: catalog
    match: [{uri: {prefix: /catalog/}}]
    headers:
      request:
        set: {x-bench-route: hit}
        remove: [x-debug]
      response:
        add: {x-served-by: isthmus}
    route:
    - destination: {host: catalog, port: {number: 80}}
"""
"""Ten rules that miss ``GET /catalog/item/42`` ahead of the one that routes it."""


BARE_RULES = """\
  - route: [{destination: {host: catalog, port: {number: 80}}}]
"""
"""``isthmus-bare``: what routing and header rewriting cost, by difference."""


def isthmus_config(port: int, origin: int, bare: bool = False) -> str:
    """A Gateway on ``port``, four hosts, and the bench host's eleven rules (or, ``bare``, one
    rule without header rewriting); every Service's WorkloadEntry points at the origin."""
    docs = [
        f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bench, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: http, protocol: HTTP}}
    hosts: ["*"]
"""
    ]
    for name in ("catalog", "api", "static", "admin", "www"):
        docs.append(f"""\
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 80}}]
""")
        for version in ("stable", "canary"):
            docs.append(f"""\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}-{version}, namespace: default}}
spec:
  address: {HOST}
  ports: {{http: {origin}}}
  labels: {{app: {name}, version: {version}}}
""")
    docs.append("""\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: default}
spec:
  host: api
  subsets:
  - {name: stable, labels: {version: stable}}
  - {name: canary, labels: {version: canary}}
""")
    for i, host in enumerate(("www.example.com", "shop.example.com", "example.org")):
        docs.append(f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: other-{i}, namespace: default}}
spec:
  hosts: ["{host}"]
  gateways: [istio-system/bench]
  http:
  - match: [{{uri: {{prefix: /api/}}}}]
    route: [{{destination: {{host: api, port: {{number: 80}}}}}}]
  - route: [{{destination: {{host: www, port: {{number: 80}}}}}}]
""")
    docs.append(f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench, namespace: default}}
spec:
  hosts: ["{VHOST}"]
  gateways: [istio-system/bench]
  http:
{BARE_RULES if bare else ROUTE_RULES}""")
    return "---\n".join(docs)


WRK_LUA = """\
-- prints one JSON line after wrk's own report (latencies in microseconds)
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50":%.1f,"p90":%.1f,' ..
    '"p99":%.1f,"max":%.1f,"mean":%.1f,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d}\\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# --------------------------------------------------------------------------------------------
# A raw HTTP/1.1 request, to check every target before measuring


def http_get(
    port: int, path: str = PATH, host: str = VHOST, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """One ``GET`` with ``Connection: close``: (status, headers, body as read until close)."""
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Debug: 1\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(req)
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < 16 << 20 and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or len(lines[0].split()) < 2:
        raise ConnectionError(f"not an HTTP response: {data[:200]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


# --------------------------------------------------------------------------------------------
# The bench: origin, proxies, workloads


@dataclass
class Bench:
    tools: Tools
    cfg: Config
    tmp: Path
    procs: Processes
    layout: Layout
    ports: dict[str, int] = field(default_factory=dict)
    origin: int = 0
    metrics_port: int = 0
    """isthmus's ``/stats/prometheus`` (0: not served)."""

    def _pinned(self, cpu: str | None, argv: list[str]) -> list[str]:
        if cpu is None or self.tools.taskset is None:
            return argv
        return [self.tools.taskset, "-c", cpu, *argv]

    # -- setup ---------------------------------------------------------------------------

    def start(self) -> None:
        ports = iter(free_ports(1 + len(PROXIES)))
        self.origin = next(ports)
        self.ports["direct"] = self.origin
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        nofile = soft if soft != resource.RLIM_INFINITY else 1 << 20
        conns = max(512, min(16384, nofile - 100))
        wo = self.tools.nginx_without
        cfg = self.tmp / "origin.conf"
        cfg.write_text(origin_config(self.origin, self.tmp, wo, conns))
        self.procs.start("origin", self._pinned(self.layout.origin, self._nginx_argv(cfg)))
        wait_port(self.procs, "origin", self.origin)
        metrics_ports = iter(free_ports(1))
        for key in PROXIES:
            port = next(ports)
            if key not in self.cfg.targets:
                continue
            self.ports[key] = port
            env = None
            access: Path | None = None
            if key == "nginx":
                cfg = self.tmp / "nginx.conf"
                cfg.write_text(nginx_config(port, self.origin, self.tmp, wo, conns))
                argv = self._nginx_argv(cfg)
            elif key == "haproxy":
                cfg = self.tmp / "haproxy.cfg"
                limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
                cfg.write_text(haproxy_config(port, self.origin, min(10000, (limit - 500) // 3)))
                argv = [self.tools.haproxy, "-f", str(cfg), "-db"]
            elif key == "minimal":
                script = Path(__file__).with_name("minimal_proxy.py")
                argv = [sys.executable, str(script), str(port), str(self.origin)]
            else:
                cdir = self.tmp / f"{key}-config"
                cdir.mkdir()
                bare = key == "isthmus-bare"
                (cdir / "bench.yaml").write_text(isthmus_config(port, self.origin, bare))
                argv = [*self.tools.isthmus_argv, "run", "-f", str(cdir), "--bind", HOST]
                argv += ["--quiet", "--drain-seconds", "0"]
                env = self.tools.isthmus_env
                if self.tools.isthmus_obs:
                    # no admin/status ports: nothing else on the machine can collide with them
                    argv += ["--admin-port", "0", "--status-port", "0"]
                    if key == "isthmus-off":
                        argv += ["--access-log", "off", "--metrics-port", "0"]
                    elif bare:
                        argv += ["--access-log", "off"]
                    else:
                        self.metrics_port = next(metrics_ports)
                        argv += ["--access-log", "stdout", "--metrics-port"]
                        argv.append(str(self.metrics_port))
                        access = self.tmp / f"{key}-access.log"
            self.procs.start(key, self._pinned(self.layout.proxy, argv), env, access)
            wait_port(self.procs, key, port)

    def _nginx_argv(self, cfg: Path) -> list[str]:
        err = self.tmp / f"{cfg.stem}-error.log"
        return [self.tools.nginx, "-p", str(self.tmp), "-c", str(cfg), "-e", str(err)]

    def check(self) -> None:
        """Every target answers ``GET`` with the origin's body; isthmus applies its rewrites."""
        for key in self.cfg.targets:
            label = _target_label(key)
            try:
                status, headers, body = http_get(self.ports[key])
            except OSError as exc:
                raise SystemExit(
                    f"{label}: GET through {HOST}:{self.ports[key]} failed: {exc}"
                ) from None
            problems = []
            if status != 200 or body != BODY.encode():
                problems.append(f"status {status}, body {body[:80]!r}")
            if key in ("isthmus", "isthmus-off"):
                if headers.get("x-seen-route") != "hit":
                    problems.append("request header x-bench-route was not set")
                if "x-seen-debug" in headers:
                    problems.append("request header x-debug was not removed")
                if headers.get("x-served-by") != "isthmus":
                    problems.append("response header x-served-by was not added")
            elif headers.get("x-seen-debug") != "1":
                problems.append("the origin did not see x-debug")
            if key == "isthmus" and self.tools.isthmus_obs:
                problems += self._check_observability()
            if problems:
                raise SystemExit(f"{label}: {'; '.join(problems)}; headers {headers}")
            print(f"  {label}: ok", flush=True)

    def _check_observability(self) -> list[str]:
        """The request just made shows in isthmus's access log and Istio metrics."""
        access = self.tmp / "isthmus-access.log"
        logged = counted = False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (logged and counted):
            time.sleep(0.1)
            with contextlib.suppress(OSError):
                logged = PATH in access.read_text(errors="replace")
            with contextlib.suppress(OSError, ValueError, IndexError):
                _, _, metrics = http_get(self.metrics_port, "/stats/prometheus", host=HOST)
                counted = any(
                    line.startswith("istio_requests_total{") and 'response_code="200"' in line
                    for line in metrics.decode(errors="replace").splitlines()
                )
        problems = [] if logged else [f"no access log line for {PATH} in {access.name}"]
        if not counted:
            problems.append(f"no istio_requests_total in :{self.metrics_port}/stats/prometheus")
        return problems

    def access_log_bytes(self) -> int:
        """Size of isthmus's access log, truncated to 0 (so the disk does not fill up)."""
        access = self.tmp / "isthmus-access.log"
        try:
            size = access.stat().st_size
            os.truncate(access, 0)
        except OSError:
            return 0
        return size

    def warm_up(self) -> None:
        """One second of keep-alive load through every target (pools, caches, page faults)."""
        for key in self.cfg.targets:
            self._wrk(self.ports[key], self.cfg.workloads[0], 1)
        if self.tools.isthmus_obs:
            self.access_log_bytes()

    # -- measuring -----------------------------------------------------------------------

    def wait_quiet(self) -> None:
        """Up to ``quiet_wait`` s for other load on the machine to stay under a fifth of a core."""
        deadline = time.monotonic() + self.cfg.quiet_wait
        while time.monotonic() < deadline:
            b0, o0 = system_busy(), self._our_cpu()
            time.sleep(0.5)
            if (system_busy() - b0) - (self._our_cpu() - o0) < 0.2:
                return

    def _our_cpu(self) -> float:
        return sum(self.procs.cpu(list(self.procs.procs))) + own_children_cpu()

    def _wrk(self, port: int, wl: Workload, seconds: int) -> dict[str, Any]:
        argv = [self.tools.wrk, "-t1", f"-c{wl.connections}", f"-d{seconds}s"]
        argv += [f"--timeout={WRK_TIMEOUT}s", "-s", str(self.tmp / "report.lua")]
        argv += ["-H", f"Host: {VHOST}", "-H", "X-Debug: 1"]
        if wl.close:
            argv += ["-H", "Connection: close"]
        argv.append(f"http://{HOST}:{port}{PATH}")
        try:
            done = subprocess.run(
                self._pinned(self.layout.client, argv),
                capture_output=True,
                text=True,
                timeout=seconds + 20,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return {"error": "wrk timed out"}
        for line in done.stdout.splitlines():
            if line.startswith("WRKJSON "):
                result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
                return result
        return {"error": (done.stderr or done.stdout).strip()[-300:] or "no output"}

    def measure(self, target: str, wl: Workload, rnd: int) -> Sample:
        self.wait_quiet()
        sample = Sample(target, wl.key, rnd)
        proxy = [target] if target != "direct" else []
        for name in ("origin", *proxy):
            if not self.procs.alive(name):
                sample.error = f"{name} is not running"
                return sample
        logging = target == "isthmus" and self.tools.isthmus_obs
        if logging:
            self.access_log_bytes()  # start from an empty access log
        u0, s0 = self.procs.cpu(proxy)
        origin0 = sum(self.procs.cpu(["origin"]))
        client0 = children_cpu()
        busy0, ours0, t0 = system_busy(), self._our_cpu(), time.monotonic()
        res = self._wrk(self.ports[target], wl, self.cfg.seconds)
        wall = time.monotonic() - t0
        u1, s1 = self.procs.cpu(proxy)
        if proxy:
            sample.proxy_user, sample.proxy_sys = u1 - u0, s1 - s0
        sample.origin_cpu = sum(self.procs.cpu(["origin"])) - origin0
        sample.client_cpu = children_cpu() - client0
        foreign = (system_busy() - busy0) - (self._our_cpu() - ours0)
        sample.foreign = max(0.0, foreign / wall) if wall > 0 else 0.0
        sample.seconds = wall
        if logging:
            sample.access_log = self.access_log_bytes()
        if "error" in res:
            sample.error = str(res["error"])
            sample.errors = 1
            return sample
        duration = res["duration_us"] / 1e6
        sample.requests = int(res["requests"])
        errors = sum(int(res[k]) for k in ("connect", "read", "write", "status", "timeout"))
        sample.errors = errors
        if errors:
            kinds = [
                f"{k} {int(res[k])}" for k in ("connect", "read", "write", "status", "timeout")
            ]
            sample.error = ", ".join(k for k in kinds if not k.endswith(" 0"))
        if sample.requests and duration > 0:
            # wrk counts a failed request (non-2xx, a read error) as a request too
            sample.rps = max(0, sample.requests - int(res["status"])) / duration
            sample.p50, sample.p99 = res["p50"], res["p99"]
            sample.seconds = duration
        return sample

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
                    samples.append(s)
                    if s.rps is None:
                        shown = f"failed ({s.error})"
                    else:
                        shown = f"{_fmt_rps(s.rps):>7} req/s  p50 {_fmt_us(s.p50):>8}"
                        shown += f"  p99 {_fmt_us(s.p99):>8}"
                        if s.proxy_cpu is not None and s.seconds:
                            shown += f"  proxy {s.proxy_cpu / s.seconds:.0%}"
                        if s.errors:
                            shown += f"  [{s.errors} errors: {s.error}]"
                    noise = f"  other load {s.foreign:.2f} cores" if s.foreign >= 0.1 else ""
                    print(
                        f"[{i:>3}/{total}] round {rnd + 1} {wl.key:<5} "
                        f"{_target_label(target):<8} {shown}{noise}",
                        flush=True,
                    )
        return samples


# --------------------------------------------------------------------------------------------
# Report


def _fmt_rps(v: float) -> str:
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def _target_label(key: str) -> str:
    return next(t.label for t in TARGETS if t.key == key)


def _fmt_us(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.2f} ms"


def describe_machine(tools: Tools, layout: Layout) -> list[str]:
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
    python = Path(tools.isthmus).parent / "python"
    py = str(python) if python.exists() else sys.executable
    versions = _output(
        [
            py,
            "-c",
            "import platform, uvloop, httptools; "
            "print(platform.python_version(), uvloop.__version__, httptools.__version__)",
        ]
    ).split()
    pyv, uv, ht = versions if len(versions) == 3 else (platform.python_version(), "?", "?")
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1048576:.0f} GiB RAM"

    def first(argv: list[str]) -> str:
        out = _output(argv)
        return out.splitlines()[0] if out else "?"

    return [
        f"- CPU: {usable} usable of {os.cpu_count()} × {model}{mem}",
        f"- OS: {os_name}, Linux {platform.release()} ({platform.machine()})",
        f"- isthmus {tools.isthmus_desc}: Python {pyv}, uvloop {uv}, httptools {ht}",
        f"- {first([tools.nginx, '-v'])}; {first([tools.haproxy, '-v'])}; "
        f"{first([tools.wrk, '-v'])}",
        f"- Layout: {layout.describe()}",
    ]


def obs_note(samples: list[Sample], tools: Tools) -> str:
    if not tools.isthmus_obs:
        return (
            "**Metrics and the access log do not exist in this isthmus** (no `--access-log` / "
            "`--metrics-port` in `isthmus run --help`), so they are not measured: the target "
            "below is held against isthmus without them."
        )
    logged = [s.access_log / s.requests for s in samples if s.access_log and s.requests]
    size = f" (median {statistics.median(logged):.0f} bytes per request)" if logged else ""
    return (
        "**Metrics and access log on**: Istio's standard metrics served on `--metrics-port` "
        "(checked to count the test request, not scraped during runs) and Envoy's access log "
        f"with `--access-log stdout` into a file{size}."
    )


def render(
    samples: list[Sample], cfg: Config, tools: Tools, layout: Layout, started: datetime.datetime
) -> str:
    by: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        by.setdefault((s.target, s.workload), []).append(s)

    def ok(target: str, wl: str) -> list[Sample]:
        return [s for s in by.get((target, wl), []) if s.rps is not None]

    def med(target: str, wl: str, attr: str) -> float | None:
        return _median([getattr(s, attr) for s in ok(target, wl) if getattr(s, attr) is not None])

    lines = [
        "## HTTP",
        "",
        f"`bench/http.py`, {started:%Y-%m-%d %H:%M} UTC: {cfg.rounds} round(s), "
        f"{cfg.seconds} s per measurement, every workload through every target in rotated order "
        "each round; medians of the rounds (p50 and p99 too). `wrk` with one thread, "
        f"`GET {PATH}` with `Host: {VHOST}`; the origin answers `200` with a 3-byte body.",
        "",
        *describe_machine(tools, layout),
        "",
        "What each target does:",
        "",
        "- **direct**: wrk → origin, no proxy (the ceiling of this client and origin here).",
        "- **isthmus**: `isthmus run -f DIR --bind 127.0.0.1 --quiet` (one process, uvloop): a "
        "Gateway on an HTTP port, four VirtualService hosts; the bench host has ten rules that "
        "miss (URI prefix/exact/regex, header, method, query matches) ahead of the one that "
        "routes, which sets one request header, removes another and adds a response header; "
        "Services with WorkloadEntries at the origin, upstream keep-alive pool. "
        + obs_note(samples, tools),
        "- **nginx**: `worker_processes 1`, `proxy_pass` to an `upstream` with `keepalive 64`, "
        '`proxy_http_version 1.1`, `proxy_set_header Connection ""`, `access_log off`.',
        "- **HAProxy**: `mode http`, `nbthread 1`, `http-reuse always`, no logging.",
        *(
            [
                "- **isthmus, no metrics/log**: the same isthmus with `--access-log off "
                "--metrics-port 0` (and, like the other isthmus, `--admin-port 0 --status-port 0`"
                "): no metrics are counted and no access log is written."
            ]
            if "isthmus-off" in cfg.targets
            else []
        ),
        *(
            [
                "- **isthmus, 1 rule**: the same, but the bench host has one catch-all rule, no "
                "header rewriting"
                + (", access log off" if tools.isthmus_obs else "")
                + " (what the route table, rewrites and access log cost, by difference)."
            ]
            if "isthmus-bare" in cfg.targets
            else []
        ),
        *(
            [
                "- **minimal Python proxy**: `bench/minimal_proxy.py`, uvloop + httptools and "
                "nothing else (parse, rebuild the head, a keep-alive upstream pool; no routing, "
                "header policy, limits, timers, metrics or log): the floor of a Python proxy "
                "on this machine, what `../shared/PERFORMANCE.md` calls minimal Python."
            ]
            if "minimal" in cfg.targets
            else []
        ),
        "- The origin is a separate nginx, `worker_processes 1`, `return 200`, `access_log off`; "
        "origin and proxies have `keepalive_requests` raised so no connection is recycled "
        "during a run.",
        "",
        "Columns: req/s counts 2xx responses only; p50/p99 are wrk's per-request latencies; "
        "proxy CPU is user + system time of the proxy's processes (`/proc/PID/stat`) over the "
        "run, as a share of one core and per request; wrk + origin is the CPU of the client "
        "and the origin (one core's share; near 100% when they share a core means the client "
        "side is the limit). The last two columns are isthmus's req/s and p99 divided by that "
        "row's. Issue targets at one worker each: isthmus ≥ 0.75× nginx's req/s and p99 ≤ 1.5× "
        "nginx's.",
    ]
    for wl in cfg.workloads:
        i_rps, i_p99 = med("isthmus", wl.key, "rps"), med("isthmus", wl.key, "p99")
        lines += [
            "",
            f"### {wl.label} ({wl.wrk_desc()})",
            "",
            "| target | req/s | p50 | p99 | proxy CPU | proxy CPU per request (user + sys) "
            "| wrk + origin CPU | isthmus req/s ÷ this | isthmus p99 ÷ this |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for t in cfg.targets:
            ss = ok(t, wl.key)
            rps, p50, p99 = (med(t, wl.key, a) for a in ("rps", "p50", "p99"))
            if rps is None:
                lines.append(f"| {_target_label(t)} | failed | | | | | | | |")
                continue
            cpu = per_req = "—"
            with_cpu = [s for s in ss if s.proxy_cpu is not None and s.seconds and s.requests]
            if with_cpu:
                share = statistics.median((s.proxy_cpu or 0.0) / s.seconds for s in with_cpu)
                user = statistics.median((s.proxy_user or 0.0) * 1e6 / s.requests for s in with_cpu)
                sys_ = statistics.median((s.proxy_sys or 0.0) * 1e6 / s.requests for s in with_cpu)
                cpu = f"{share:.0%}"
                per_req = f"{user + sys_:.1f} µs ({user:.1f} + {sys_:.1f})"
            side = statistics.median((s.client_cpu + s.origin_cpu) / s.seconds for s in ss)
            row = [_target_label(t), _fmt_rps(rps), _fmt_us(p50), _fmt_us(p99), cpu, per_req]
            row += [f"{side:.0%}", _ratio(i_rps, rps), _ratio(i_p99, p99)]
            lines.append("| " + " | ".join(row) + " |")
        verdicts = []
        n_rps, n_p99 = med("nginx", wl.key, "rps"), med("nginx", wl.key, "p99")
        h_rps = med("haproxy", wl.key, "rps")
        if i_rps and n_rps:
            met = "met" if i_rps / n_rps >= 0.75 else "**missed**"
            verdicts.append(f"req/s {i_rps / n_rps:.2f}× nginx (≥ 0.75×: {met})")
        if i_p99 and n_p99:
            met = "met" if i_p99 / n_p99 <= 1.5 else "**missed**"
            verdicts.append(f"p99 {i_p99 / n_p99:.2f}× nginx (≤ 1.5×: {met})")
        if i_rps and h_rps:
            verdicts.append(f"req/s {i_rps / h_rps:.2f}× HAProxy")
        if verdicts:
            lines += ["", "isthmus: " + "; ".join(verdicts) + "."]

    if "isthmus" in cfg.targets and "isthmus-off" in cfg.targets and tools.isthmus_obs:
        lines += obs_cost(cfg, med, ok)
    if {"isthmus", "nginx", "minimal"} <= set(cfg.targets):
        lines += floor_note(cfg, ok)
    foreign = [s.foreign for s in samples]
    failed = [s for s in samples if s.errors]
    lines += [
        "",
        f"Other load on the machine during measurements (from `/proc/stat`, minus this "
        f"benchmark's processes): median {statistics.median(foreign or [0]):.2f} cores, "
        f"max {max(foreign or [0]):.2f}. Measurements with errors: {len(failed)}"
        + (
            " ("
            + "; ".join(f"{s.workload} {_target_label(s.target)}: {s.error}" for s in failed[:6])
            + ")"
            if failed
            else ""
        )
        + ".",
        "",
        "Reading the numbers: at 50 keep-alive connections a proxy near 100% CPU is the limit, "
        "and its CPU per request is the figure to compare (it moves less than req/s between "
        "rounds). With one connection only one process works at a time and every hop wakes a "
        "process on the other CPU, so req/s measures wake-up latency more than proxy work; "
        "a proxy that idles more (nginx, HAProxy) probably also waits longer for its CPU to "
        "wake up, the likely cause of their higher p99 there. New connections add accept and "
        "close work to the proxy, and to the origin "
        "in `direct` only (the proxies keep their upstream connections). `wrk + origin` near "
        "100% means the client side, not the proxy, was the limit in that row.",
        "",
        "<details><summary>every sample (req/s, p99, proxy CPU)</summary>",
        "",
        "| workload | target | " + " | ".join(f"round {r + 1}" for r in range(cfg.rounds)) + " |",
        "|---" * (cfg.rounds + 2) + "|",
    ]
    for wl in cfg.workloads:
        for t in cfg.targets:
            vals = []
            for r in range(cfg.rounds):
                x = next((y for y in by.get((t, wl.key), []) if y.round == r), None)
                if x is None:
                    vals.append("")
                elif x.rps is None:
                    vals.append(f"failed ({x.error})")
                else:
                    v = f"{_fmt_rps(x.rps)}, {_fmt_us(x.p99)}"
                    if x.proxy_cpu is not None and x.seconds:
                        v += f", {x.proxy_cpu / x.seconds:.0%}"
                    if x.foreign >= 0.1:
                        v += f" (other load {x.foreign:.1f})"
                    if x.errors:
                        v += f" ({x.errors} errors)"
                    vals.append(v)
            lines.append(f"| {wl.key} | {_target_label(t)} | " + " | ".join(vals) + " |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def floor_note(cfg: Config, ok: Callable[[str, str], list[Sample]]) -> list[str]:
    """What the minimal Python proxy says about the budget: its CPU per request next to
    nginx's and isthmus's, and the req/s ratio the issue's target asks for in CPU terms."""
    lines = [
        "",
        "### The floor: a minimal Python proxy",
        "",
        "Proxy CPU per request (user + system; medians): what uvloop + httptools alone cost "
        "here (`minimal`), and what isthmus's features add on top. With the proxy the limit, "
        "req/s goes as 1 / CPU per request, so ≥ 0.75× nginx's req/s means at most "
        "nginx's CPU per request ÷ 0.75.",
        "",
        "| workload | nginx | minimal Python | isthmus | minimal ÷ nginx | isthmus − minimal "
        "| isthmus's budget (nginx ÷ 0.75) |",
        "|---|---|---|---|---|---|---|",
    ]
    for wl in cfg.workloads:
        cpu = {t: _cpu_per_request(ok(t, wl.key)) for t in ("nginx", "minimal", "isthmus")}
        n, m, i = cpu["nginx"], cpu["minimal"], cpu["isthmus"]
        if n is None or m is None or i is None:
            continue
        lines.append(
            f"| {wl.label} | {n:.1f} µs | {m:.1f} µs | {i:.1f} µs | {m / n:.2f}× "
            f"| {i - m:.1f} µs | {n / 0.75:.1f} µs |"
        )
    return lines


def _cpu_per_request(samples: list[Sample]) -> float | None:
    per = [s.proxy_cpu * 1e6 / s.requests for s in samples if s.proxy_cpu and s.requests]
    return statistics.median(per) if per else None


def obs_cost(
    cfg: Config,
    med: Callable[[str, str, str], float | None],
    ok: Callable[[str, str], list[Sample]],
) -> list[str]:
    """Issue #7: req/s with metrics and the access log on against off, per workload."""
    both = ("isthmus", "isthmus-off")
    lines = [
        "",
        "### Cost of metrics and access log",
        "",
        "isthmus with its metrics counted and its access log written (**isthmus**, as in the "
        "tables above) against the same isthmus with both off (**isthmus, no metrics/log**), "
        "measured one after the other in every round. The difference is of the medians of "
        "req/s, "
        "`(off − on) / off`; the issue's target is under 15%. CPU per request is the steadier "
        "figure on a shared machine, and each round's difference shows how much one "
        "measurement moves.",
        "",
        "| workload | req/s on | req/s off | difference | CPU per request on | off | "
        "CPU difference | each round's difference | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for wl in cfg.workloads:
        on, off = med("isthmus", wl.key, "rps"), med("isthmus-off", wl.key, "rps")
        if not on or not off:
            continue
        diff = (off - on) / off
        cpu_on = _cpu_per_request(ok("isthmus", wl.key))
        cpu_off = _cpu_per_request(ok("isthmus-off", wl.key))
        cpu = [f"{c:.1f} µs" if c is not None else "—" for c in (cpu_on, cpu_off)]
        cpu_diff = f"{(cpu_on - cpu_off) / cpu_on:+.0%}" if cpu_on and cpu_off else "—"
        met = "met" if diff < 0.15 else "**missed**"
        rounds = []
        for r in range(cfg.rounds):
            pair = [next((x for x in ok(t, wl.key) if x.round == r), None) for t in both]
            if pair[0] is not None and pair[1] is not None and pair[0].rps and pair[1].rps:
                rounds.append(f"{(pair[1].rps - pair[0].rps) / pair[1].rps:+.0%}")
        lines.append(
            f"| {wl.label} | {_fmt_rps(on)} | {_fmt_rps(off)} | {diff:.1%} | {cpu[0]} | "
            f"{cpu[1]} | {cpu_diff} | {', '.join(rounds) or '—'} | < 15%: {met} |"
        )
    return lines


BENCH_HEADER = """\
# Benchmarks

Side-by-side measurements of isthmus against HAProxy and nginx on one machine. Each section is
written by the script it names; run it again to refresh that section (other sections are kept).
How to read them and the budget they are held to: `../shared/PERFORMANCE.md`, `bench/README.md`.
"""


def write_section(path: Path, section: str, name: str = "HTTP") -> None:
    """Replace (or append) the ``## name`` section, keeping every other section.

    Reads the file right before writing (another benchmark may have just written its section)
    and replaces it atomically."""
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Config]:
    p = argparse.ArgumentParser(
        description="HTTP proxy benchmark: direct, isthmus, nginx, HAProxy (see bench/README.md)"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument(
        "--seconds",
        "--duration",
        dest="seconds",
        type=int,
        default=5,
        help="per measurement, whole seconds (default 5)",
    )
    p.add_argument("--quick", action="store_true", help="1 round of 2 s measurements")
    p.add_argument(
        "--close-connections",
        type=int,
        default=50,
        help="concurrent connections of the new-connection-per-request workload (default 50)",
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin processes to CPUs (default: the proxy alone on one CPU, wrk and the "
        "origin on another)",
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
    p.add_argument("--workloads", help="comma-separated subset of: " + ",".join(WORKLOAD_KEYS))
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
        args.rounds, args.seconds, args.quiet_wait = 1, 2, min(args.quiet_wait, 5.0)
    keys = [t.key for t in TARGETS]
    targets = tuple(args.targets.split(",")) if args.targets else DEFAULT_TARGETS
    wanted = args.workloads.split(",") if args.workloads else list(WORKLOAD_KEYS)
    bad = [t for t in targets if t not in keys] + [w for w in wanted if w not in WORKLOAD_KEYS]
    if bad:
        p.error(f"unknown target or workload: {', '.join(bad)}")
    if not 1 <= args.rounds <= 50 or not 1 <= args.seconds <= 120:
        p.error("--rounds must be 1..50 and --seconds 1..120")
    if not 1 <= args.close_connections <= 1000:
        p.error("--close-connections must be 1..1000")
    cfg = Config(
        rounds=args.rounds,
        seconds=args.seconds,
        quiet_wait=max(0.0, min(args.quiet_wait, 120.0)),
        pin=not args.no_pin,
        targets=tuple(k for k in keys if k in targets),
        workloads=tuple(w for w in make_workloads(args.close_connections) if w.key in wanted),
    )
    return args, cfg


def detect_observability(tools: Tools) -> None:
    """Metrics and the access log arrived in a later issue: use them when this isthmus has them."""
    usage = _output([*tools.isthmus_argv, "run", "--help"], 30.0, tools.isthmus_env)
    tools.isthmus_obs = "--access-log" in usage and "--metrics-port" in usage


@contextlib.contextmanager
def _workspace() -> Iterator[tuple[Path, Processes]]:
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-http-") as tmp:
        procs = Processes(Path(tmp))
        try:
            yield Path(tmp), procs
        finally:
            procs.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    tools = preflight(args.isthmus, cfg.pin)
    layout = choose_layout(cfg.pin)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGHUP, _on_sigterm)
    started = datetime.datetime.now(datetime.UTC)
    n = cfg.rounds * len(cfg.workloads) * len(cfg.targets)
    print(
        f"{n} measurements of {cfg.seconds} s ({cfg.rounds} rounds × "
        f"{len(cfg.workloads)} workloads × {len(cfg.targets)} targets), "
        f"about {n * (cfg.seconds + 1.5) / 60:.0f} min; {layout.describe()}",
        flush=True,
    )
    try:
        with _workspace() as (tmp, procs):
            use_isthmus(tools, args.isthmus_rev, tmp)
            detect_observability(tools)
            (tmp / "report.lua").write_text(WRK_LUA)
            bench = Bench(tools, cfg, tmp, procs, layout)
            bench.start()
            print("checking every target:", flush=True)
            bench.check()
            bench.warm_up()
            samples = bench.run()
    except KeyboardInterrupt:
        print("\ninterrupted; every process this benchmark started is stopped", file=sys.stderr)
        return 130
    section = render(samples, cfg, tools, layout, started)
    print()
    print(section)
    if not args.no_write:
        write_section(args.output, section)
        print(f"wrote the ## HTTP section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
