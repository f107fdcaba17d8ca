"""``isthmus proxy-config``: istioctl's tables read from a running admin API."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest

from isthmus.cli import proxy_config
from isthmus.cli.proxy_config import render, tabulate
from tests.e2e.harness import closed_port
from tests.obs.conftest import Running, Serve
from tests.obs.fakes import FakeProvider, bookinfo_https_snapshot, tcp_echo_snapshot
from tests.tls_certs import CertAuthority, Leaf

V1 = "outbound|9000|v1|tcp-echo.default.svc.cluster.local"
V2 = "outbound|9000|v2|tcp-echo.default.svc.cluster.local"
PRODUCTPAGE = "outbound|9080||productpage.default.svc.cluster.local"


def columns(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


@pytest.fixture
def tcp_echo(serve: Serve) -> Running:
    return serve(FakeProvider(tcp_echo_snapshot()))


@pytest.fixture
def bookinfo(serve: Serve, tmp_path: Path) -> tuple[Running, Leaf]:
    ca = CertAuthority.create(tmp_path / "ca")
    snapshot, leaf = bookinfo_https_snapshot(tmp_path / "config", ca)
    return serve(FakeProvider(snapshot)), leaf


def test_tabulate_pads_like_go_tabwriter() -> None:
    assert tabulate([["A", "BB", "C"], ["long", "x", ""]], 2) == "A     BB  C\nlong  x   \n"


def test_listeners(tcp_echo: Running, bookinfo: tuple[Running, Leaf]) -> None:
    assert render("listeners", tcp_echo.admin) == (
        f"ADDRESSES PORT  MATCH DESTINATION\n0.0.0.0   31400 ALL   Cluster: {V1},{V2}\n"
    )
    assert render("listeners", bookinfo[0].admin) == (
        "ADDRESSES PORT MATCH                     DESTINATION\n"
        "0.0.0.0   80   ALL                       Route: http.80\n"
        "0.0.0.0   443  SNI: bookinfo.example.com "
        "Route: https.443.https.bookinfo-gateway.default\n"
    )


def test_listeners_show_the_bound_address(serve: Serve) -> None:
    running = serve(
        FakeProvider(tcp_echo_snapshot(), addresses={"0.0.0.0_31400": ("127.0.0.1", 5000)})
    )
    assert render("listeners", running.admin).splitlines()[1].startswith("127.0.0.1 5000 ")


def test_routes(bookinfo: tuple[Running, Leaf]) -> None:
    lines = render("routes", bookinfo[0].admin).splitlines()
    assert columns(lines[0]) == ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"]
    assert lines[1].split() == [
        "http.80",
        "bookinfo.example.com:80",
        "bookinfo.example.com",
        "/productpage",
        "bookinfo.default",
    ]
    assert lines[2].split()[3] == "/static*"
    assert lines[6].split() == [
        "https.443.https.bookinfo-gateway.default",
        "bookinfo.example.com:443",
        "bookinfo.example.com",
        "/productpage",
        "bookinfo.default",
    ]
    assert len(lines) == 11


def test_clusters(tcp_echo: Running, bookinfo: tuple[Running, Leaf]) -> None:
    assert render("clusters", tcp_echo.admin) == (
        "SERVICE FQDN                           PORT     SUBSET     DIRECTION     TYPE     "
        "DESTINATION RULE\n"
        "tcp-echo.default.svc.cluster.local     9000     v1         outbound      EDS      "
        "tcp-echo-destination.default\n"
        "tcp-echo.default.svc.cluster.local     9000     v2         outbound      EDS      "
        "tcp-echo-destination.default\n"
    )
    row = render("clusters", bookinfo[0].admin).splitlines()[1]
    assert row.split() == ["productpage.default.svc.cluster.local", "9080", "-", "outbound", "EDS"]


def test_endpoints_show_outlier_check(tcp_echo: Running) -> None:
    provider = tcp_echo.provider
    assert provider.snapshot is not None
    state = provider.states.get(provider.snapshot.clusters[V2])
    state.http_status(state.endpoints[0], 500)
    assert render("endpoints", tcp_echo.admin) == (
        "ENDPOINT           STATUS      OUTLIER CHECK     CLUSTER\n"
        f"127.0.0.1:9001     HEALTHY     OK                {V1}\n"
        f"127.0.0.1:9002     HEALTHY     FAILED            {V2}\n"
    )


def test_secrets(bookinfo: tuple[Running, Leaf], tcp_echo: Running) -> None:
    running, leaf = bookinfo
    lines = render("secrets", running.admin).splitlines()
    assert columns(lines[0]) == [
        "RESOURCE NAME",
        "TYPE",
        "STATUS",
        "VALID CERT",
        "SERIAL NUMBER",
        "NOT AFTER",
        "NOT BEFORE",
    ]
    not_after = leaf.cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    not_before = leaf.cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert lines[1].split() == [
        "kubernetes://bookinfo-credential",
        "Cert",
        "Chain",
        "ACTIVE",
        "true",
        format(leaf.serial, "032x"),
        not_after,
        not_before,
    ]
    assert lines[2].split()[:3] == ["kubernetes://bookinfo-credential-cacert", "CA", "ACTIVE"]
    assert render("secrets", tcp_echo.admin) == "No active or warming secrets found.\n"


def test_json_output(tcp_echo: Running) -> None:
    clusters = json.loads(render("clusters", tcp_echo.admin, "json"))
    assert [c["name"] for c in clusters] == [V1, V2]
    statuses = json.loads(render("endpoints", tcp_echo.admin, "json"))
    assert statuses[0]["host_statuses"][0]["health_status"]["eds_health_status"] == "HEALTHY"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="isthmus")
    sub = parser.add_subparsers(dest="command", required=True)
    proxy_config.register(sub)
    return parser.parse_args(argv)


def test_run_prints_the_table(tcp_echo: Running, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse(["proxy-config", "ep", "--admin", tcp_echo.admin])
    assert args.func(args) == 0
    assert capsys.readouterr().out.startswith("ENDPOINT ")
    args = parse(["pc", "clusters", "--admin", tcp_echo.admin, "-o", "json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == V1


def test_run_explains_an_unreachable_admin(capsys: pytest.CaptureFixture[str]) -> None:
    address = f"127.0.0.1:{closed_port()}"
    args = parse(["proxy-config", "listeners", "--admin", address])
    assert args.func(args) == 1
    assert f"cannot reach the admin API at {address}" in capsys.readouterr().err
