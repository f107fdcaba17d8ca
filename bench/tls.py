"""HTTPS termination benchmark: isthmus side by side with nginx and HAProxy.

    .venv/bin/python bench/tls.py              # 3 interleaved rounds of 5 s measurements
    .venv/bin/python bench/tls.py --quick      # 1 round of 2 s measurements
    .venv/bin/python bench/tls.py --help

Needs nginx, haproxy, wrk and openssl; installs nothing and says what is missing.  Makes one
ECDSA P-256 and one RSA-2048 certificate with ``openssl`` in a temporary directory and gives the
same files to all three proxies, one worker each, each with one TLS port per certificate:
nginx ``listen ... ssl`` proxying to an upstream with ``keepalive``, HAProxy ``bind ... ssl crt``
in ``mode http`` with ``http-reuse always``, and isthmus with a Gateway ``HTTPS`` server
(``tls.mode: SIMPLE`` with ``serverCertificate``/``privateKey``) and a VirtualService to a
WorkloadEntry.  Behind them all a plain-HTTP nginx origin answers ``200 ok``.  Measures new
full TLS handshakes per second (client processes that connect, handshake with SNI, ``GET``, read
the answer and close, in a loop: ``tls_load.py``) and keep-alive requests per second over TLS
(``wrk -t1 -c50``), every target in rotated order, round after round, pinned to CPUs with
``taskset``: the proxy alone on one core (``--no-pin`` to let the scheduler place them).
Prints Markdown tables of medians with ratios (measured, and per second of proxy CPU) and
replaces the ``## HTTPS`` section of BENCHMARKS.md (``--no-write`` to skip).

Process handling, CPU accounting from ``/proc``, the other-load check, ``--isthmus-rev REV``
(measure a commit, not the working tree) and the section writer come from ``tcp.py``; every
process started is stopped at the end, on Ctrl-C and on SIGTERM, and the temporary directory
(certificates, configurations, logs) is removed.  Only 127.0.0.1 is used; root is not needed.

On Debian 12 / Ubuntu: ``sudo apt-get install -y nginx haproxy wrk openssl`` (``taskset`` is in
``util-linux``).  The handshake clients are Python processes: on OpenSSL 3.0 a client spends
more CPU per handshake than a server, so on a small machine the clients bound the faster
proxies' measured rate, and the report also gives each proxy's CPU per handshake.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import tcp  # noqa: E402 - bench/ is not a package; tcp.py sits beside this file

REPO = HERE.parent
LOAD = HERE / "tls_load.py"
HOST = tcp.HOST
SNI = "bench.example.com"
BODY = "ok\n"
APT = "sudo apt-get install -y"
WRK_TIMEOUT = 5
QUIET_CORES = tcp.QUIET_CORES
RETRY_CORES = tcp.RETRY_CORES
SATURATED = 0.8
"""A proxy using less of its core than this was not what limited the measured rate."""

#: Mozilla "intermediate" TLS 1.2 suites: what isthmus terminates with by default
#: (``isthmus.dataplane.tls_policy``), given to nginx and HAProxy too.
CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)
TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
CURVES = "X25519:P-256:P-384"


# --------------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True)
class Cert:
    key: str
    label: str
    newkey: tuple[str, ...]
    """``openssl req -newkey`` arguments."""


CERTS: tuple[Cert, ...] = (
    Cert("ecdsa", "ECDSA P-256", ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")),
    Cert("rsa", "RSA-2048", ("-newkey", "rsa:2048")),
)


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    unit: str
    kind: str
    """``hs``: new handshakes by ``tls_load.py`` clients; ``ka``: keep-alive ``wrk``."""
    cert: str
    goal: float
    """The issue's target for isthmus, as a multiple of nginx."""
    per: str
    """What one unit of work is called, for CPU per unit."""


WORKLOADS: tuple[Workload, ...] = (
    Workload("hs-ecdsa", "new TLS handshakes, ECDSA P-256", "/s", "hs", "ecdsa", 0.8, "handshake"),
    Workload("hs-rsa", "new TLS handshakes, RSA-2048", "/s", "hs", "rsa", 0.8, "handshake"),
    Workload("ka", "keep-alive over TLS, 50 connections", "req/s", "ka", "ecdsa", 0.75, "request"),
)
WORKLOAD_KEYS = tuple(w.key for w in WORKLOADS)


@dataclass(frozen=True)
class TargetKind:
    key: str
    label: str


TARGETS: tuple[TargetKind, ...] = (
    TargetKind("isthmus", "isthmus"),
    TargetKind("nginx", "nginx"),
    TargetKind("haproxy", "HAProxy"),
)
TARGET_KEYS = tuple(t.key for t in TARGETS)


@dataclass
class Sample:
    target: str
    workload: str
    round: int
    value: float | None = None
    """Handshakes per second, or requests per second."""
    work: int = 0
    """Handshakes or requests done."""
    seconds: float = 0.0
    p99: float | None = None
    """Microseconds (keep-alive only, wrk's histogram)."""
    window: float = 0.0
    """Wall seconds over which the CPU figures were taken."""
    proxy_user: float | None = None
    proxy_sys: float | None = None
    client_cpu: float = 0.0
    origin_cpu: float = 0.0
    foreign: float = 0.0
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
    hs_clients: int
    connections: int
    quiet_wait: float
    pin: bool
    targets: tuple[str, ...]
    workloads: tuple[Workload, ...]
    isthmus_args: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Preflight


@dataclass
class Tools(tcp.Tools):
    """``tcp.Tools`` (so ``tcp.use_isthmus`` and ``tcp.describe_machine`` take it) plus ours."""

    wrk: str = ""
    openssl: str = ""
    taskset: str | None = None
    nginx_without: frozenset[str] = frozenset()


def preflight(isthmus_arg: str | None, pin: bool) -> Tools:
    found = {name: tcp._find_exe(name) for name in ("nginx", "haproxy", "wrk", "openssl")}
    missing = [(name, name) for name, path in found.items() if path is None]
    taskset = tcp._find_exe("taskset")
    if pin and taskset is None:
        missing.append(("taskset (or run with --no-pin)", "util-linux"))
    nginx, haproxy = found["nginx"], found["haproxy"]
    nginx_info = tcp._output([nginx, "-V"]) if nginx else ""
    if nginx and "--with-http_ssl_module" not in nginx_info:
        missing.append(("nginx with the http_ssl_module", "nginx"))
    if haproxy and "OPENSSL" not in tcp._output([haproxy, "-vv"]).upper():
        missing.append(("HAProxy built with OpenSSL", "haproxy"))
    if missing:
        print("bench/tls.py needs programs that are not installed:", file=sys.stderr)
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
            "bench/tls.py: isthmus is not installed; from the repository:\n"
            "  python3 -m venv .venv && .venv/bin/pip install .\n"
            "or pass --isthmus PATH",
            file=sys.stderr,
        )
        sys.exit(2)
    venv_python = Path(isthmus).parent / "python"
    assert nginx and haproxy and found["wrk"] and found["openssl"]
    return Tools(
        haproxy=haproxy,
        nginx=nginx,
        iperf3="",
        isthmus=isthmus,
        python=str(venv_python) if venv_python.exists() else sys.executable,
        nginx_stream_module=None,
        wrk=found["wrk"],
        openssl=found["openssl"],
        taskset=taskset,
        nginx_without=frozenset(
            m for m in ("fastcgi", "uwsgi", "scgi") if f"--without-http_{m}_module" in nginx_info
        ),
    )


# --------------------------------------------------------------------------------------------
# CPU layout


@dataclass(frozen=True)
class Layout:
    proxy: str | None
    client: str | None

    def describe(self) -> str:
        if self.proxy is None:
            return "not pinned: the scheduler places the clients, the origin and the proxy"
        return (
            f"pinned with `taskset`: the proxy alone on CPU {self.proxy}; the clients (wrk or "
            f"the handshake clients) and the origin together on CPU {self.client}"
        )


def choose_layout(pin: bool) -> Layout:
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return Layout(None, None)
    return Layout(str(cpus[0]), ",".join(str(c) for c in cpus[1:]))


# --------------------------------------------------------------------------------------------
# Certificates and configurations


def make_certs(openssl: str, tmp: Path) -> dict[str, tuple[Path, Path, Path]]:
    """(certificate, key, HAProxy's certificate + key PEM) per certificate kind."""
    out: dict[str, tuple[Path, Path, Path]] = {}
    for cert in CERTS:
        crt, key, pem = (tmp / f"{cert.key}.{ext}" for ext in ("crt", "key", "pem"))
        argv = [openssl, "req", "-x509", *cert.newkey, "-nodes", "-keyout", str(key)]
        argv += ["-out", str(crt), "-days", "2", "-subj", f"/CN={SNI}"]
        argv += ["-addext", f"subjectAltName=DNS:{SNI}"]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0 or not crt.exists():
            raise SystemExit(f"openssl could not make the {cert.label} certificate:\n{done.stderr}")
        pem.write_text(crt.read_text() + key.read_text())
        out[cert.key] = (crt, key, pem)
    return out


def _nginx_head(tmp: Path, name: str, without: frozenset[str], conns: int) -> str:
    temp = [
        f"    client_body_temp_path {tmp}/{name}-body;",
        f"    proxy_temp_path {tmp}/{name}-proxy;",
    ]
    temp += [
        f"    {m}_temp_path {tmp}/{name}-{m};"
        for m in ("fastcgi", "uwsgi", "scgi")
        if m not in without
    ]
    return f"""\
daemon off;
master_process on;
worker_processes 1;
pid {tmp}/{name}.pid;
error_log {tmp}/{name}-error.log warn;

events {{
    worker_connections {conns};
}}

http {{
{chr(10).join(temp)}
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
"""


def origin_config(port: int, tmp: Path, without: frozenset[str], conns: int) -> str:
    return f"""\
{_nginx_head(tmp, "origin", without, conns)}
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{BODY.strip()}\\n";
        }}
    }}
}}
"""


def nginx_config(
    ports: dict[str, int],
    origin: int,
    certs: dict[str, tuple[Path, Path, Path]],
    tmp: Path,
    without: frozenset[str],
    conns: int,
) -> str:
    servers = "".join(
        f"""
    server {{
        listen {HOST}:{ports[c]} ssl backlog=4096;
        ssl_certificate {certs[c][0]};
        ssl_certificate_key {certs[c][1]};
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""
        for c in ports
    )
    return f"""\
{_nginx_head(tmp, "nginx", without, conns)}
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers {CIPHERS};
    ssl_prefer_server_ciphers off;
    ssl_ecdh_curve {CURVES.replace("P-256", "prime256v1").replace("P-384", "secp384r1")};
    ssl_session_cache off;
    ssl_session_tickets off;
    upstream origin {{
        server {HOST}:{origin};
        keepalive 64;
        keepalive_requests 100000000;
    }}
{servers}}}
"""


def haproxy_config(
    ports: dict[str, int], origin: int, certs: dict[str, tuple[Path, Path, Path]], maxconn: int
) -> str:
    fronts = "".join(
        f"""
frontend fe_{c}
    bind {HOST}:{ports[c]} ssl crt {certs[c][2]} alpn http/1.1 curves {CURVES}
    default_backend origin
"""
        for c in ports
    )
    return f"""\
global
    nbthread 1
    maxconn {maxconn}
    tune.ssl.cachesize 0
    ssl-default-bind-ciphers {CIPHERS}
    ssl-default-bind-ciphersuites {TLS13_SUITES}
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets prefer-client-ciphers

defaults
    mode http
    maxconn {maxconn}
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
{fronts}
backend origin
    http-reuse always
    server origin {HOST}:{origin}
"""


def isthmus_config(
    ports: dict[str, int], origin: int, certs: dict[str, tuple[Path, Path, Path]]
) -> str:
    """A Gateway with one HTTPS server per certificate, a VirtualService, a Service with a
    WorkloadEntry at the origin."""
    servers = "".join(
        f"""\
  - port: {{number: {ports[c]}, name: https-{c}, protocol: HTTPS}}
    hosts: ["{SNI}"]
    tls: {{mode: SIMPLE, serverCertificate: {certs[c][0]}, privateKey: {certs[c][1]}}}
"""
        for c in ports
    )
    return f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bench, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{servers}---
apiVersion: v1
kind: Service
metadata: {{name: origin, namespace: default}}
spec:
  selector: {{app: origin}}
  ports: [{{name: http, port: 80}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: origin, namespace: default}}
spec:
  address: {HOST}
  ports: {{http: {origin}}}
  labels: {{app: origin}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bench, namespace: default}}
spec:
  hosts: ["{SNI}"]
  gateways: [istio-system/bench]
  http:
  - route: [{{destination: {{host: origin, port: {{number: 80}}}}}}]
"""


WRK_LUA = f"""\
-- connect to {HOST} whatever the URL's host is: the URL's host ({SNI}) stays wrk's SNI
wrk.resolve = function(host, service)
  wrk.addrs = wrk.lookup("{HOST}", service)
end

-- one JSON line after wrk's own report (latencies in microseconds)
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"p50":%.1f,"p99":%.1f,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# --------------------------------------------------------------------------------------------
# The bench


@dataclass
class Bench:
    tools: Tools
    cfg: Config
    tmp: Path
    procs: tcp.Processes
    layout: Layout
    ports: dict[str, dict[str, int]] = field(default_factory=dict)
    """target → certificate kind → port."""
    origin: int = 0
    negotiated: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    isthmus_used: str = ""
    """The flags isthmus ran with beyond ``run -f DIR --bind --quiet --drain-seconds 0``."""
    isthmus_notes: str = ""

    def _pinned(self, cpu: str | None, argv: list[str]) -> list[str]:
        if cpu is None or self.tools.taskset is None:
            return argv
        return [self.tools.taskset, "-c", cpu, *argv]

    def _nginx_argv(self, cfg: Path) -> list[str]:
        err = self.tmp / f"{cfg.stem}-error.log"
        return [self.tools.nginx, "-p", str(self.tmp), "-c", str(cfg), "-e", str(err)]

    # -- setup ---------------------------------------------------------------------------

    def start(self) -> None:
        certs = make_certs(self.tools.openssl, self.tmp)
        (self.tmp / "bench.lua").write_text(WRK_LUA)
        ports = iter(tcp.free_ports(1 + len(TARGETS) * len(CERTS)))
        self.origin = next(ports)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        nofile = soft if soft != resource.RLIM_INFINITY else 1 << 20
        conns = max(512, min(16384, nofile - 100))
        wo = self.tools.nginx_without
        cfg = self.tmp / "origin.conf"
        cfg.write_text(origin_config(self.origin, self.tmp, wo, conns))
        self.procs.start("origin", self._pinned(self.layout.client, self._nginx_argv(cfg)))
        tcp.wait_port(self.procs, "origin", self.origin)
        for key in TARGET_KEYS:
            mine = {c.key: next(ports) for c in CERTS}
            if key not in self.cfg.targets:
                continue
            self.ports[key] = mine
            env = None
            if key == "nginx":
                cfg = self.tmp / "nginx.conf"
                cfg.write_text(nginx_config(mine, self.origin, certs, self.tmp, wo, conns))
                argv = self._nginx_argv(cfg)
            elif key == "haproxy":
                cfg = self.tmp / "haproxy.cfg"
                limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
                maxconn = min(10000, (limit - 500) // 3)
                cfg.write_text(haproxy_config(mine, self.origin, certs, maxconn))
                argv = [self.tools.haproxy, "-f", str(cfg), "-db"]
            else:
                cdir = self.tmp / "isthmus-config"
                cdir.mkdir()
                (cdir / "bench.yaml").write_text(isthmus_config(mine, self.origin, certs))
                argv = [*self.tools.isthmus_argv, "run", "-f", str(cdir), "--bind", HOST]
                argv += ["--quiet", "--drain-seconds", "0", *self.isthmus_flags()]
                env = self.tools.isthmus_env
            self.procs.start(key, self._pinned(self.layout.proxy, argv), env)
            for port in mine.values():
                tcp.wait_port(self.procs, key, port)

    def isthmus_flags(self) -> list[str]:
        """Free ports for the admin, status and metrics endpoints of the isthmus being measured
        (where it has them: not every ``--isthmus-rev`` does), so that another isthmus on their
        default ports cannot get in the way; then ``--isthmus-args``.  What each request does
        (metrics, access log) stays isthmus's default unless ``--isthmus-args`` changes it."""
        done = subprocess.run(
            [*self.tools.isthmus_argv, "run", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.tools.isthmus_env,
            stdin=subprocess.DEVNULL,
        )
        helptext = done.stdout
        flags: list[str] = []
        wanted = [f for f in ("--admin-port", "--status-port", "--metrics-port") if f in helptext]
        for flag, port in zip(wanted, tcp.free_ports(len(wanted)), strict=True):
            flags += [flag, str(port)]
        flags += self.cfg.isthmus_args
        log = "--access-log" in helptext and "off" not in " ".join(self.cfg.isthmus_args)
        self.isthmus_notes = (
            "its access log on (its default: one line per request to stdout, here a file in "
            "the temporary directory) and its metrics counted"
            if log
            else ""
        )
        self.isthmus_used = " ".join(flags)
        return flags

    def check(self) -> None:
        """Every target answers over TLS with the origin's body, on both certificates; what
        was negotiated is kept for the report.  Then one second of wrk through each (warm-up,
        and a check that wrk's SNI trick works)."""
        for key in self.cfg.targets:
            label = _target_label(key)
            for cert in CERTS:
                port = self.ports[key][cert.key]
                got = self._probe(port)
                if "error" in got or got.get("status") != 200 or got.get("body") != BODY:
                    raise SystemExit(f"{label}: HTTPS through {HOST}:{port} failed: {got}")
                if got.get("key") != cert.key.upper():
                    raise SystemExit(f"{label}: port {port} served a {got.get('key')} certificate")
                self.negotiated[(key, cert.key)] = got
            res = self._wrk(self.ports[key]["ecdsa"], 1)
            if "error" in res or not res.get("requests") or res.get("status"):
                raise SystemExit(f"{label}: wrk over TLS failed: {res}")
            got = self.negotiated[(key, "ecdsa")]
            print(
                f"  {label}: ok ({got['version']}, {got['cipher']}, ALPN {got['alpn']}, "
                f"ticket {'sent' if got['ticket'] else 'none'}; "
                f"wrk {res['requests'] / (res['duration_us'] / 1e6):,.0f} req/s)",
                flush=True,
            )

    def _probe(self, port: int) -> dict[str, Any]:
        argv = [self.tools.python, str(LOAD), "probe", str(port), SNI]
        out = tcp._output(self._pinned(self.layout.client, argv), timeout=20)
        try:
            result: dict[str, Any] = json.loads(out.splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": out[-300:]}
        return result

    # -- measuring -----------------------------------------------------------------------

    def _our_cpu(self) -> float:
        return sum(self.procs.cpu_split(list(self.procs.procs))) + tcp.own_children_cpu()

    def wait_quiet(self) -> None:
        deadline = time.monotonic() + self.cfg.quiet_wait
        while time.monotonic() < deadline:
            b0, o0, t0 = tcp.system_busy(), self._our_cpu(), time.monotonic()
            time.sleep(0.5)
            foreign = (tcp.system_busy() - b0) - (self._our_cpu() - o0)
            if foreign / (time.monotonic() - t0) < QUIET_CORES:
                return

    def _wrk(self, port: int, seconds: int) -> dict[str, Any]:
        argv = [self.tools.wrk, "-t1", f"-c{self.cfg.connections}", f"-d{seconds}s"]
        argv += [f"--timeout={WRK_TIMEOUT}s", "-s", str(self.tmp / "bench.lua")]
        argv += ["-H", f"Host: {SNI}", f"https://{SNI}:{port}/"]
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

    def _start_clients(self, port: int, start_at: float) -> list[subprocess.Popen[str]]:
        argv = [self.tools.python, str(LOAD), "hs", str(port), SNI, str(start_at)]
        argv.append(str(self.cfg.seconds))
        return [
            subprocess.Popen(
                self._pinned(self.layout.client, argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(self.cfg.hs_clients)
        ]

    def _finish_clients(self, procs: list[subprocess.Popen[str]], sample: Sample) -> None:
        try:
            results = [_collect(p, self.cfg.seconds + 20) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        count = sum(int(r["count"]) for r in results)
        sample.work = count
        sample.errors = sum(int(r["errors"]) for r in results)
        errs = [str(r["error"]) for r in results if r["error"]]
        sample.error = errs[0] if errs else None
        sample.seconds = max((float(r["seconds"]) for r in results), default=0.0)
        sample.client_cpu = sum(float(r.get("cpu", 0.0)) for r in results)
        rate = sum(r["count"] / r["seconds"] for r in results if r["seconds"] > 0)
        sample.value = rate if count else None

    def measure(self, target: str, wl: Workload, rnd: int) -> Sample:
        self.wait_quiet()
        sample = Sample(target, wl.key, rnd)
        for name in ("origin", target):
            proc = self.procs.procs.get(name)
            if proc is None or proc.poll() is not None:
                sample.error = f"{name} is not running"
                return sample
        port = self.ports[target][wl.cert]
        clients: list[subprocess.Popen[str]] = []
        if wl.kind == "hs":
            # clients start (Python, imports) before the window and count from start_at
            start_at = time.time() + 0.5
            clients = self._start_clients(port, start_at)
            time.sleep(max(0.0, start_at - time.time()))
        u0, s0 = self.procs.cpu_split([target])
        origin0 = sum(self.procs.cpu_split(["origin"]))
        client0 = _children_cpu()
        busy0, ours0, t0 = tcp.system_busy(), self._our_cpu(), time.monotonic()
        res: dict[str, Any] = {}
        if wl.kind == "hs":
            self._finish_clients(clients, sample)
        else:
            res = self._wrk(port, self.cfg.seconds)
        wall = time.monotonic() - t0
        u1, s1 = self.procs.cpu_split([target])
        sample.proxy_user, sample.proxy_sys = u1 - u0, s1 - s0
        sample.origin_cpu = sum(self.procs.cpu_split(["origin"])) - origin0
        if wl.kind == "ka":
            sample.client_cpu = _children_cpu() - client0
        foreign = (tcp.system_busy() - busy0) - (self._our_cpu() - ours0)
        if wl.kind == "hs":
            # the clients' own CPU (reported by them) excludes their start-up; ours0 does not
            foreign += _children_cpu() - client0 - sample.client_cpu
        sample.foreign = max(0.0, foreign / wall) if wall > 0 else 0.0
        sample.window = wall
        if wl.kind == "hs":
            return sample
        sample.seconds = wall
        if "error" in res:
            sample.error, sample.errors = str(res["error"]), 1
            return sample
        kinds = ("connect", "read", "write", "status", "timeout")
        sample.errors = sum(int(res[k]) for k in kinds)
        if sample.errors:
            sample.error = ", ".join(f"{k} {int(res[k])}" for k in kinds if int(res[k]))
        duration = res["duration_us"] / 1e6
        requests = max(0, int(res["requests"]) - int(res["status"]))
        if requests and duration > 0:
            sample.value, sample.work = requests / duration, requests
            sample.p99, sample.seconds = float(res["p99"]), duration
        return sample

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
                        again = self.measure(target, wl, rnd)
                        if again.value is not None and (
                            s.value is None or again.foreign < s.foreign
                        ):
                            s = again
                    samples.append(s)
                    shown = "failed" if s.value is None else f"{_fmt(s.value):>7} {wl.unit}"
                    if s.proxy_cpu is not None and s.value is not None:
                        shown += f"  proxy {s.proxy_cpu / _window(s):.0%}"
                        shown += f"  client+origin {(s.client_cpu + s.origin_cpu) / _window(s):.0%}"
                    if s.errors:
                        shown += f"  [{s.errors} errors: {s.error}]"
                    noise = f"  other load {s.foreign:.2f} cores" if s.foreign >= 0.1 else ""
                    print(
                        f"[{i:>3}/{total}] round {rnd + 1} {wl.key:<8} "
                        f"{_target_label(target):<8} {shown}{noise}",
                        flush=True,
                    )
        return samples


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _window(s: Sample) -> float:
    """The wall time the CPU figures of ``s`` were taken over."""
    return s.window or s.seconds or 1.0


def _collect(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The JSON line of one ``tls_load.py hs`` client (or a failure in the same shape)."""
    failed: dict[str, Any] = {"count": 0, "seconds": 0.0, "errors": 1, "cpu": 0.0}
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {**failed, "error": "client timed out"}
    try:
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result
    except (ValueError, IndexError):
        return {**failed, "error": err.strip()[-300:] or "no output"}


# --------------------------------------------------------------------------------------------
# Report


def _target_label(key: str) -> str:
    return next(t.label for t in TARGETS if t.key == key)


def _fmt(v: float) -> str:
    return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"


def _fmt_us(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.0f} µs" if v < 1000 else f"{v / 1000:.2f} ms"


def describe_machine(tools: Tools, layout: Layout) -> list[str]:
    lines = tcp.describe_machine(tools)[:5]  # CPU, OS, Python/uvloop/isthmus, HAProxy, nginx
    ossl = tcp._output([tools.python, "-c", "import ssl; print(ssl.OPENSSL_VERSION)"])
    lines[-1] += f"; {tcp._output([tools.wrk, '-v']).splitlines()[0].split(' Copyright')[0]}"
    lines += [
        f"- {tcp._output([tools.openssl, 'version'])} (command line); isthmus's Python "
        f"`ssl` uses {ossl}",
        f"- Layout: {layout.describe()}",
    ]
    return lines


def render(
    samples: list[Sample],
    cfg: Config,
    tools: Tools,
    layout: Layout,
    negotiated: dict[tuple[str, str], dict[str, Any]],
    started: datetime.datetime,
    isthmus_run: tuple[str, str] = ("", ""),
) -> str:
    """The ``## HTTPS`` section; ``isthmus_run``: (extra flags, what isthmus does per request)."""
    by: dict[tuple[str, str], list[Sample]] = {}
    for s in samples:
        by.setdefault((s.target, s.workload), []).append(s)

    def ok(target: str, wl: str) -> list[Sample]:
        return [s for s in by.get((target, wl), []) if s.value is not None]

    def med(target: str, wl: str) -> float | None:
        return tcp._median([s.value for s in ok(target, wl) if s.value is not None])

    def cpu_per(target: str, wl: str) -> float | None:
        """Median proxy CPU microseconds per handshake or request."""
        ss = [s for s in ok(target, wl) if s.proxy_cpu is not None and s.work]
        return tcp._median([(s.proxy_cpu or 0.0) * 1e6 / s.work for s in ss])

    def core_share(target: str, wl: str) -> float | None:
        """Median share of one core the proxy used."""
        ss = [s for s in ok(target, wl) if s.proxy_cpu is not None]
        return tcp._median([(s.proxy_cpu or 0.0) / _window(s) for s in ss])

    def per_cpu_ratio(a: str, b: str, wl: str) -> str:
        """How much work ``a`` does per CPU second, as a multiple of ``b``'s."""
        ca, cb = cpu_per(a, wl), cpu_per(b, wl)
        return "—" if not ca or not cb else f"{cb / ca:.2f}×"

    cols = list(cfg.targets)
    names = " | ".join(_target_label(c) for c in cols)
    lines = [
        "## HTTPS",
        "",
        f"`bench/tls.py`, {started:%Y-%m-%d %H:%M} UTC: {cfg.rounds} round(s), "
        f"{cfg.seconds} s per measurement, every workload through every target in rotated order "
        "each round; medians. Each proxy terminates TLS with the same certificate and key "
        "files, one worker each, and forwards plain HTTP with upstream keep-alive to one nginx "
        "origin (`return 200`, 3-byte body).",
        "",
        *describe_machine(tools, layout),
        "",
        "Measured rates, and the issue's targets (isthmus ≥ 0.8× nginx on handshakes, "
        "≥ 0.75× nginx on keep-alive requests). *Per CPU* divides each proxy's rate by the CPU "
        "it used (handshakes or requests per second of proxy CPU): what the ratio becomes "
        "when every proxy has a core to itself and the clients are not the limit; where nginx "
        f"used less than {SATURATED:.0%} of its core, its measured rate was set by something "
        "else (on handshakes: the clients) and only the per-CPU ratio compares the proxies.",
        "",
        f"| workload | {names} | isthmus / nginx | isthmus / HAProxy | per CPU: isthmus / nginx "
        "| per CPU: isthmus / HAProxy | target |",
        "|---" * (len(cols) + 6) + "|",
    ]
    for wl in cfg.workloads:
        label = f"{wl.label}, {wl.unit}"
        if wl.kind == "hs":
            label = f"{wl.label} ({cfg.hs_clients} clients), /s"
        i, n, h = med("isthmus", wl.key), med("nginx", wl.key), med("haproxy", wl.key)
        row = [label, *(_fmt(m) if (m := med(c, wl.key)) is not None else "failed" for c in cols)]
        row += [tcp._ratio(i, n), tcp._ratio(i, h)]
        row += [
            per_cpu_ratio("isthmus", "nginx", wl.key),
            per_cpu_ratio("isthmus", "haproxy", wl.key),
        ]
        verdict = f"≥ {wl.goal:.2f}×"
        parts = []
        if i is not None and n:
            text = "measured " + ("met" if i / n >= wl.goal else "**missed**")
            busy = core_share("nginx", wl.key)
            if busy is not None and busy < SATURATED:
                text += f" (nginx used {busy:.0%} of its core: not what set its rate)"
            parts.append(text)
        ci, cn = cpu_per("isthmus", wl.key), cpu_per("nginx", wl.key)
        if ci and cn:
            parts.append("per CPU " + ("met" if cn / ci >= wl.goal else "**missed**"))
        lines.append(
            "| " + " | ".join([*row, verdict + (": " + ", ".join(parts) if parts else "")]) + " |"
        )

    lines += [
        "",
        "Proxy CPU (medians): share of one core over the run · CPU time per handshake or "
        "request (user + system, `/proc/PID/stat`) · its user-space part. The clients' column "
        "is the load generators' CPU per unit of work and, with the origin's, their share of a "
        "core: near or above 100% means the client side, not the proxy, set the rate.",
        "",
        f"| workload | {names} | clients per unit · clients + origin share |",
        "|---" * (len(cols) + 2) + "|",
    ]
    for wl in cfg.workloads:
        cells = []
        for c in cols:
            ss = [s for s in ok(c, wl.key) if s.proxy_cpu is not None and s.work]
            if not ss:
                cells.append("—")
                continue
            share = statistics.median((s.proxy_cpu or 0.0) / _window(s) for s in ss)
            per = statistics.median((s.proxy_cpu or 0.0) * 1e6 / s.work for s in ss)
            user = statistics.median((s.proxy_user or 0.0) / s.proxy_cpu for s in ss if s.proxy_cpu)
            cells.append(f"{share:.0%} · {per:.0f} µs/{wl.per} · {user:.0%} user")
        every = [s for c in cols for s in ok(c, wl.key) if s.work]
        side = "—"
        if every:
            client = statistics.median(s.client_cpu * 1e6 / s.work for s in every)
            share = statistics.median((s.client_cpu + s.origin_cpu) / _window(s) for s in every)
            side = f"{client:.0f} µs/{wl.per} · {share:.0%}"
        lines.append(f"| {wl.label} | " + " | ".join(cells) + f" | {side} |")

    ka = next((w for w in cfg.workloads if w.kind == "ka"), None)
    if ka is not None:
        p99 = {c: tcp._median([s.p99 for s in ok(c, ka.key) if s.p99 is not None]) for c in cols}
        lines += [
            "",
            "Keep-alive p99 latency (wrk): "
            + ", ".join(f"{_target_label(c)} {_fmt_us(p99[c])}" for c in cols)
            + ".",
        ]

    seen = []
    for c in cols:
        for cert in CERTS:
            got = negotiated.get((c, cert.key))
            if got:
                ticket = "session ticket sent" if got.get("ticket") else "no ticket"
                seen.append(
                    f"{_target_label(c)} {cert.label}: {got['version']} {got['cipher']}, "
                    f"ALPN {got['alpn']}, {ticket}"
                )
    foreign = [s.foreign for s in samples]
    failed = [s for s in samples if s.errors]
    lines += [
        "",
        "Negotiated with the handshake clients' settings (Python `ssl`, OpenSSL's client "
        "defaults): " + "; ".join(seen) + ".",
        "",
        "How:",
        "",
        f"- **Handshakes**: {cfg.hs_clients} client processes (`bench/tls_load.py hs`) each "
        "loop: connect, a full TLS handshake with SNI "
        f"`{SNI}` (no session is ever offered, so none is resumed; the certificate chain is not "
        f"verified, the handshake signature is), `GET /` with `Host: {SNI}`, read the whole "
        "response, close; counted over one window shared by all clients. On OpenSSL 3.0 the "
        "client side of a handshake costs more CPU than the server side (see the clients' "
        "column), so on a small machine the measured rate of the faster proxies is bounded by "
        "the clients; the per-CPU ratio is the comparison of the proxies' own cost.",
        f"- **Keep-alive**: `wrk -t1 -c{cfg.connections} https://{SNI}:PORT/` with "
        f"`-H 'Host: {SNI}'` and a Lua script that replaces `wrk.resolve` to connect to "
        f"{HOST}: the URL's host stays wrk's SNI, so every proxy sees SNI and Host "
        f"`{SNI}` with no `/etc/hosts` entry and no catch-all host. Requests/s count non-error "
        "responses; connections are made once, so this measures TLS records plus the HTTP path.",
        "- **nginx**: `worker_processes 1`, `listen ... ssl`, `ssl_protocols TLSv1.2 TLSv1.3`, "
        "Mozilla intermediate TLS 1.2 ciphers, `ssl_ecdh_curve X25519:prime256v1:secp384r1`, "
        "`ssl_session_cache off`, `ssl_session_tickets off`; `proxy_pass` to an `upstream` "
        'with `keepalive 64`, `proxy_http_version 1.1`, `proxy_set_header Connection ""`, '
        "`access_log off`.",
        "- **HAProxy**: `nbthread 1`, `mode http`, `bind ... ssl crt PEM alpn http/1.1 curves "
        "X25519:P-256:P-384`, the same ciphers, `ssl-min-ver TLSv1.2 no-tls-tickets "
        "prefer-client-ciphers`, `tune.ssl.cachesize 0`, `http-reuse always`, no logging.",
        "- **isthmus**: `isthmus run -f DIR --bind 127.0.0.1 --quiet --drain-seconds 0"
        + (f" {isthmus_run[0]}" if isthmus_run[0] else "")
        + "` (one process, uvloop"
        + (f"; {isthmus_run[1]}" if isthmus_run[1] else "")
        + "; the endpoint ports are free ones so no other gateway's can collide): a Gateway "
        "server per certificate with `protocol: HTTPS`, `hosts: "
        f'["{SNI}"]`, `tls: {{mode: SIMPLE, serverCertificate, privateKey}}` (its TLS '
        "defaults: Mozilla intermediate, X25519/P-256/P-384, no TLS 1.2 tickets), a "
        "VirtualService to a Service whose WorkloadEntry is the origin. nginx and HAProxy log "
        "nothing.",
        "- Certificates: self-signed, made by `openssl req -x509` (`-newkey ec -pkeyopt "
        "ec_paramgen_curve:prime256v1`, `-newkey rsa:2048`), `CN` and DNS SAN "
        f"`{SNI}`; HAProxy reads the same certificate and key concatenated in one PEM.",
        "",
        "Other load on the machine during measurements (from `/proc/stat`, minus this "
        f"benchmark's processes): median {statistics.median(foreign or [0]):.2f} cores, "
        f"max {max(foreign or [0]):.2f}; each measurement waits up to {cfg.quiet_wait:g} s for "
        f"other load under {QUIET_CORES} cores, and one with {RETRY_CORES} cores or more of "
        "other load is taken once more, keeping the quieter. Measurements with errors: "
        f"{len(failed)}"
        + (
            " ("
            + "; ".join(f"{s.workload} {_target_label(s.target)}: {s.error}" for s in failed[:6])
            + ")"
            if failed
            else ""
        )
        + ".",
        "",
        "<details><summary>every sample (rate, proxy CPU share)</summary>",
        "",
        "| workload | target | " + " | ".join(f"round {r + 1}" for r in range(cfg.rounds)) + " |",
        "|---" * (cfg.rounds + 2) + "|",
    ]
    for wl in cfg.workloads:
        for t in cols:
            vals = []
            for r in range(cfg.rounds):
                x = next((y for y in by.get((t, wl.key), []) if y.round == r), None)
                if x is None:
                    vals.append("")
                elif x.value is None:
                    vals.append(f"failed ({x.error})")
                else:
                    v = _fmt(x.value)
                    if x.proxy_cpu is not None:
                        v += f", {x.proxy_cpu / _window(x):.0%}"
                    if x.foreign >= 0.1:
                        v += f" (other load {x.foreign:.1f})"
                    if x.errors:
                        v += f" ({x.errors} errors)"
                    vals.append(v)
            lines.append(f"| {wl.key} | {_target_label(t)} | " + " | ".join(vals) + " |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """``tcp.write_section`` on a copy, then an atomic rename: the file is read right before
    writing and other sections are kept."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.write_text(path.read_text())
    try:
        tcp.write_section(tmp, section, "HTTPS")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Config]:
    p = argparse.ArgumentParser(
        description="HTTPS termination benchmark: isthmus, nginx, HAProxy (see bench/README.md)"
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument(
        "--seconds", type=int, default=5, help="per measurement, whole seconds (default 5)"
    )
    p.add_argument("--quick", action="store_true", help="1 round of 2 s measurements")
    p.add_argument(
        "--hs-clients",
        type=int,
        default=6,
        help="handshake client processes (default 6)",
    )
    p.add_argument(
        "--connections", type=int, default=50, help="wrk connections for keep-alive (default 50)"
    )
    p.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin processes to CPUs (default: the proxy alone on one CPU, the clients "
        "and the origin on the others)",
    )
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=15.0,
        help="before each measurement, wait up to this many seconds for other load to stop",
    )
    p.add_argument("--targets", help="comma-separated subset of: " + ",".join(TARGET_KEYS))
    p.add_argument("--workloads", help="comma-separated subset of: " + ",".join(WORKLOAD_KEYS))
    p.add_argument("--isthmus", help="isthmus executable (default: the repository's .venv)")
    p.add_argument(
        "--isthmus-args",
        default="",
        metavar="ARGS",
        help="extra arguments for `isthmus run`, e.g. '--access-log off' (quoted, one string)",
    )
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
    targets = tuple(args.targets.split(",")) if args.targets else TARGET_KEYS
    wanted = args.workloads.split(",") if args.workloads else list(WORKLOAD_KEYS)
    bad = [t for t in targets if t not in TARGET_KEYS]
    bad += [w for w in wanted if w not in WORKLOAD_KEYS]
    if bad:
        p.error(f"unknown target or workload: {', '.join(bad)}")
    if not 1 <= args.rounds <= 50 or not 1 <= args.seconds <= 120:
        p.error("--rounds must be 1..50 and --seconds 1..120")
    if not 1 <= args.hs_clients <= 64 or not 1 <= args.connections <= 1000:
        p.error("--hs-clients must be 1..64 and --connections 1..1000")
    cfg = Config(
        rounds=args.rounds,
        seconds=args.seconds,
        hs_clients=args.hs_clients,
        connections=args.connections,
        quiet_wait=max(0.0, min(args.quiet_wait, 120.0)),
        pin=not args.no_pin,
        targets=tuple(k for k in TARGET_KEYS if k in targets),
        workloads=tuple(w for w in WORKLOADS if w.key in wanted),
        isthmus_args=shlex.split(args.isthmus_args),
    )
    return args, cfg


def main(argv: Sequence[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    tools = preflight(args.isthmus, cfg.pin)
    layout = choose_layout(cfg.pin)
    signal.signal(signal.SIGTERM, tcp._on_sigterm)
    signal.signal(signal.SIGHUP, tcp._on_sigterm)
    started = datetime.datetime.now(datetime.UTC)
    n = cfg.rounds * len(cfg.workloads) * len(cfg.targets)
    print(
        f"{n} measurements of {cfg.seconds} s ({cfg.rounds} rounds × "
        f"{len(cfg.workloads)} workloads × {len(cfg.targets)} targets), "
        f"about {n * (cfg.seconds + 2) / 60:.0f} min; {layout.describe()}",
        flush=True,
    )
    try:
        with tcp._workspace() as (tmp, procs):
            tcp.use_isthmus(tools, args.isthmus_rev, tmp)
            bench = Bench(tools, cfg, tmp, procs, layout)
            bench.start()
            print("checking every target:", flush=True)
            bench.check()
            samples = bench.run()
    except KeyboardInterrupt:
        print("\ninterrupted; every process this benchmark started is stopped", file=sys.stderr)
        return 130
    section = render(
        samples,
        cfg,
        tools,
        layout,
        bench.negotiated,
        started,
        (re.sub(r"(--\w+-port) \d+", r"\1 PORT", bench.isthmus_used), bench.isthmus_notes),
    )
    print()
    print(section)
    if not args.no_write:
        write_section(args.output, section)
        print(f"wrote the ## HTTPS section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
