"""Workers sharing sockets opened once, a worker dying under load, and a takeover of the
listening sockets by a new process under load: no refused or failed connection."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from isthmus.samples.tcp_echo import start_tcp_echo
from tests.e2e.harness import background, free_port, isthmus_run, tcp_gateway


class Load:
    """New connections in a loop, bounded in time and count, counting every failure."""

    def __init__(self, port: int, seconds: float = 30.0, limit: int = 20000) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + seconds
        self._limit = limit
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            if self.ok + len(self.failures) >= self._limit:
                return
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                    s.sendall(b"ping\n")
                    line = s.makefile("rb").readline()
                    if line != b"echo ping\n":
                        raise ConnectionError(f"got {line!r}")
                self.ok += 1
            except OSError as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(timeout=30)


def children(pid: int) -> list[int]:
    out = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, check=False
    )
    return [int(x) for x in out.stdout.split()]


def wait_children(pid: int, count: int, timeout: float = 20.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(pid)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"expected {count} workers, found {children(pid)}")


def wait_workers_serving(output: list[str], count: int, timeout: float = 30.0) -> None:
    """Until ``count`` workers said they serve (a loaded machine can take seconds to start
    one; until then connections only queue)."""
    deadline = time.monotonic() + timeout
    while "".join(output).count("serving on") < count + 1:  # + the supervisor's line
        assert time.monotonic() < deadline, "".join(output)
        time.sleep(0.1)


def test_workers_share_sockets_and_a_dead_worker_is_replaced(tmp_path: Path) -> None:
    port = free_port()
    with background() as bg:
        echo = bg.run(start_tcp_echo(0, "echo")).sockets[0].getsockname()[1]
        (tmp_path / "c.yaml").write_text(tcp_gateway(port, [("v1", echo, "127.0.0.1")]))
        with isthmus_run(tmp_path, "--workers", "2") as gw:
            workers = wait_children(gw.pid, 2)
            wait_workers_serving(gw.output, 2)
            with Load(port) as load:
                time.sleep(1.0)
                os.kill(workers[0], signal.SIGKILL)
                replacement = []
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    now = children(gw.pid)
                    replacement = [p for p in now if p not in workers]
                    if replacement and len(now) == 2:
                        break
                    time.sleep(0.1)
                time.sleep(1.0)
            assert replacement, "the dead worker was not replaced"
            # SIGKILL takes down what that worker was relaying (one client: at most one
            # connection); nothing is ever refused, because the sockets stay open.
            assert not any("Refused" in f for f in load.failures), load.failures
            assert len(load.failures) <= 1, load.failures
            assert load.ok > 50
        assert any("exited" in line for line in gw.output)


def test_takeover_under_load_refuses_nothing(tmp_path: Path) -> None:
    port = free_port()
    handover = str(tmp_path / "handover.sock")
    with background() as bg:
        echo = bg.run(start_tcp_echo(0, "echo")).sockets[0].getsockname()[1]
        config = tmp_path / "config"
        config.mkdir()
        (config / "c.yaml").write_text(tcp_gateway(port, [("v1", echo, "127.0.0.1")]))
        with isthmus_run(config, "--takeover", handover) as old:
            load = Load(port)
            with load:
                time.sleep(1.0)
                with isthmus_run(config, "--takeover", handover) as new:
                    assert old.proc.wait(timeout=20) == 0  # drained and exited by itself
                    time.sleep(1.0)
                    assert new.proc.poll() is None
                    load.__exit__(None, None, None)  # stop the load before the new one stops
        assert load.failures == [], load.failures[:5]
        assert load.ok > 50


def test_one_scrape_sums_all_workers(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    with background() as bg:
        echo = bg.run(start_tcp_echo(0, "echo")).sockets[0].getsockname()[1]
        (tmp_path / "c.yaml").write_text(tcp_gateway(port, [("v1", echo, "127.0.0.1")]))
        with isthmus_run(tmp_path, "--workers", "2", "--metrics-port", str(metrics_port)) as gw:
            wait_children(gw.pid, 2)
            for _ in range(40):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"ping\n")
                    assert s.makefile("rb").readline() == b"echo ping\n"
            deadline = time.monotonic() + 15
            total = 0.0
            while time.monotonic() < deadline and total < 40:
                time.sleep(0.5)
                url = f"http://127.0.0.1:{metrics_port}/stats/prometheus"
                with urllib.request.urlopen(url, timeout=10) as r:
                    text = r.read().decode()
                total = sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in text.splitlines()
                    if line.startswith("istio_tcp_connections_closed_total{")
                )
            assert total == 40


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def proxy_config(kind: str, admin: int) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "isthmus", "proxy-config", kind, "--admin", f"127.0.0.1:{admin}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


OUTLIER_RULE = """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app, namespace: default}
spec:
  host: app
  trafficPolicy:
    outlierDetection: {consecutiveGatewayErrors: 1, baseEjectionTime: 300s, maxEjectionPercent: 50}
"""


def test_supervisor_serves_admin_and_status_ports_for_its_workers(tmp_path: Path) -> None:
    port, admin, status = free_port(), free_port(), free_port()
    dead = free_port()
    with background() as bg:
        echo = bg.run(start_tcp_echo(0, "echo")).sockets[0].getsockname()[1]
        config = tmp_path / "config"
        config.mkdir()
        good = tcp_gateway(port, [("v1", echo, "127.0.0.1"), ("v1", dead, "127.0.0.1")])
        (config / "c.yaml").write_text(good + OUTLIER_RULE)
        flags = ["--admin-port", str(admin), "--status-port", str(status)]
        with isthmus_run(config, "--workers", "2", "--drain-seconds", "20", *flags) as gw:
            wait_children(gw.pid, 2)
            deadline = time.monotonic() + 20
            while get(status, "/healthz/ready")[0] != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert get(status, "/healthz/ready") == (200, "")
            assert get(admin, "/ready") == (200, "LIVE\n")

            # the supervisor's config: listeners with their bound address, no rejection yet
            dump = json.loads(get(admin, "/config_dump")[1])
            assert [lst["name"] for lst in dump["listeners"]] == [f"0.0.0.0_{port}"]
            assert dump["last_rejected"] is None and dump["state"] == "LIVE"
            assert get(admin, "/listeners")[1] == f"0.0.0.0_{port}::127.0.0.1:{port}\n"
            assert str(port) in proxy_config("listeners", admin)

            # connections to the dead endpoint fail; some worker ejects it, which /clusters shows
            failed = ""
            deadline = time.monotonic() + 20
            while "/failed_outlier_check" not in failed and time.monotonic() < deadline:
                for _ in range(4):
                    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                        s.sendall(b"ping\n")
                        s.makefile("rb").readline()
                time.sleep(0.3)
                failed = get(admin, "/clusters")[1]
            assert f"127.0.0.1:{dead}::health_flags::/failed_outlier_check" in failed
            assert f"127.0.0.1:{echo}::health_flags::healthy" in failed
            endpoints = {
                line.split()[0]: line.split()[2]
                for line in proxy_config("endpoints", admin).splitlines()[1:]
            }
            assert endpoints == {f"127.0.0.1:{dead}": "FAILED", f"127.0.0.1:{echo}": "OK"}

            # a broken update is rejected by the supervisor, shown, and the workers keep serving
            (config / "c.yaml").write_text(good + OUTLIER_RULE + "---\nkind: [\n")
            deadline = time.monotonic() + 20
            while dump["last_rejected"] is None and time.monotonic() < deadline:
                time.sleep(0.2)
                dump = json.loads(get(admin, "/config_dump")[1])
            rejected = dump["last_rejected"]
            assert rejected is not None and str(config / "c.yaml") in rejected["problems"][0]
            assert rejected["serving_version"] == dump["version"]
            assert dump["config"]["reloads_rejected"] >= 1
            assert "isthmus.config.reloads_rejected: " in get(admin, "/stats")[1]

            # SIGTERM: not ready while the workers drain a held connection, exit 0 after it
            held = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.sendall(b"x\n")
            assert held.makefile("rb").readline() == b"echo x\n"
            workers = children(gw.pid)
            gw.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            code = 200
            while code == 200 and time.monotonic() < deadline:
                time.sleep(0.1)
                code = get(status, "/healthz/ready")[0]
            assert code == 503
            assert get(admin, "/ready") == (503, "DRAINING\n")
            held.close()
            assert gw.proc.wait(timeout=30) == 0
            assert not [w for w in workers if Path(f"/proc/{w}").exists()]  # none left behind
