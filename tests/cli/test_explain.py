"""`isthmus explain` from the command line: the chain, its sources, and where it stops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isthmus.cli.main import main

DATA = Path(__file__).parent.parent / "data"
EXAMPLES = Path(__file__).parent.parent.parent / "examples" / "tcp-echo"
BOOKINFO = DATA / "seeds" / "004" / "v2-host"


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["explain", *args])
    return code, capsys.readouterr().out


def test_tcp_chain_names_every_step_and_its_source(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = explain(capsys, "-f", str(EXAMPLES), "--port", "31400")
    assert code == 0
    lines = [line.strip() for line in out.splitlines()]
    assert lines[0] == "listener      0.0.0.0_31400"
    assert "filter chain  tcp.31400" in lines
    assert "route         spec.tcp[0].match[0]" in lines
    assert "cluster       outbound|9000|v1|tcp-echo.default.svc.cluster.local" in lines
    assert "weight 80 (80%), EDS, lb LEAST_REQUEST" in lines
    assert "127.0.0.1:9001" in lines and "127.0.0.1:9002" in lines
    assert any(line.startswith("from VirtualService default/tcp-echo (") for line in lines)
    assert any("WorkloadEntry default/tcp-echo-v1" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "stage", "reason"),
    [
        (["--port", "81"], "listener", "no listener on port 81 (listening: 80)"),
        (
            ["--port", "80", "--host", "other.example.com"],
            "virtual host",
            "no virtual host of route http.80 serves host 'other.example.com'",
        ),
        (
            ["--port", "80", "--host", "bookinfo.example.com", "--path", "/admin"],
            "route",
            "no route of virtual host bookinfo.example.com:80 matches GET /admin: 404 NR",
        ),
        (
            ["--port", "80", "--host", "bookinfo.example.com", "--path", "/productpage"],
            "cluster",
            "cluster outbound|9080||productpage.default.svc.cluster.local does not exist (500 NC)",
        ),
    ],
)
def test_where_it_stops_and_why(
    capsys: pytest.CaptureFixture[str], args: list[str], stage: str, reason: str
) -> None:
    code, out = explain(capsys, "-f", str(BOOKINFO), *args)
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"✘ {stage}: {reason}")


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = explain(capsys, "-f", str(EXAMPLES), "--port", "31400", "-o", "json")
    result = json.loads(out)
    assert code == 0
    assert result["outcome"] == "routed"
    assert [s["stage"] for s in result["steps"]] == [
        "listener",
        "filter_chain",
        "route",
        "cluster",
        "endpoints",
        "cluster",
        "endpoints",
    ]
    assert [(c["name"].split("|")[2], c["share"]) for c in result["clusters"]] == [
        ("v1", 0.8),
        ("v2", 0.2),
    ]


def test_headers_and_method_reach_the_match(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "vs.yaml").write_text("""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: istio-system}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{method: {exact: POST}, headers: {x-user: {prefix: adm}}}]
    directResponse: {status: 201}
""")
    code, out = explain(
        capsys,
        "-f",
        str(tmp_path),
        "--port",
        "8080",
        "--host",
        "a",
        "--method",
        "POST",
        "--header",
        "X-User=admin",
    )
    assert code == 0 and "→ direct response 201" in out
    code, _ = explain(capsys, "-f", str(tmp_path), "--port", "8080", "--host", "a")
    assert code == 1
