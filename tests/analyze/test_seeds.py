"""`isthmus analyze` on every YAML of the seed documents, as a user would run it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isthmus.cli.main import main

DATA = Path(__file__).parent.parent / "data"
SEEDS = DATA / "seeds"


def run_analyze(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, list[str]]:
    args = ["analyze"]
    for p in paths:
        args += ["-f", str(p)]
    code = main(args)
    return code, capsys.readouterr().out.strip().splitlines()


def test_seed_000_finds_the_wrong_namespace_and_the_container_port(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = run_analyze(capsys, SEEDS / "000")
    vs = SEEDS / "000" / "tcp-virtual-service.yaml"
    svc = SEEDS / "000" / "istio-ingressgateway-service.yaml"
    assert code == 1
    assert lines == [
        f"Error [IST0101] (VirtualService default/tcp-virtual-service {vs}:10) Referenced gateway "
        'not found: "default/tcp-ingress-gateway" (a Gateway of that name exists: write '
        '"istio-system/tcp-ingress-gateway")',
        f"Error [IST0101] (VirtualService default/tcp-virtual-service {vs}:18) Referenced port "
        "8080 is not a port of Service default/tcp-service (its ports: 31400) (8080 is the "
        "targetPort of port 31400: use 31400)",
        f"Warning [ISM0002] (Service istio-system/istio-ingressgateway {svc}:6) this Service has "
        "no selector, so it does not front the gateway workload (istio=ingressgateway); Gateway "
        "ports are bound as written. Add `selector: {istio: ingressgateway}` to make its ports "
        "(and targetPorts) apply.",
    ]


def test_seed_000_corrected_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_analyze(capsys, DATA / "corrected" / "000")
    assert code == 0
    assert lines == ["✔ No validation issues found when analyzing 5 resources."]


def test_seed_001_subsets_have_no_endpoints_outside_kubernetes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = run_analyze(capsys, SEEDS / "001")
    assert code == 0  # warnings only
    assert [line.split(")")[0].split("(")[0] for line in lines] == ["Warning [IST0173] "] * 2
    assert "The Subset v1 defined in the DestinationRule does not select any endpoint" in lines[0]


def test_seed_002_external_services_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_analyze(capsys, SEEDS / "002")
    assert (code, lines) == (0, ["✔ No validation issues found when analyzing 5 resources."])


def test_seed_003_gateway_cut_by_document_end_has_no_servers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = run_analyze(capsys, SEEDS / "003")
    gw = SEEDS / "003" / "gateway.yaml"
    assert code == 1
    assert lines == [
        f"Error [IST0002] (Gateway default/gateway {gw}:5) gateway must have at least one server"
    ]


@pytest.mark.parametrize("version", ["v1-wildcard", "v2-host"])
def test_seed_004_productpage_service_is_not_in_the_files(
    capsys: pytest.CaptureFixture[str], version: str
) -> None:
    code, lines = run_analyze(capsys, SEEDS / "004" / version)
    assert code == 1
    assert len(lines) == 1
    assert 'Referenced host not found: "productpage.default.svc.cluster.local"' in lines[0]


def test_seed_004_https_credential_missing(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = run_analyze(capsys, SEEDS / "004" / "v3-https")
    assert code == 1
    assert [line.split(" (")[0] for line in lines] == ["Error [IST0101]", "Error [IST0101]"]
    assert 'Referenced credentialName not found: "istio-system/bookinfo-credential"' in lines[0]


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["analyze", "-f", str(SEEDS / "000"), "-o", "json"])
    findings = json.loads(capsys.readouterr().out)
    assert code == 1
    assert findings[0]["code"] == "IST0101"
    assert findings[0]["resource"] == "VirtualService default/tcp-virtual-service"
    assert findings[0]["field"] == "spec.gateways[0]"


def test_load_errors_exit_1_and_name_file_line_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "tcp.yaml"
    bad.write_text(
        (SEEDS / "001" / "tcp-echo.yaml").read_text().replace("weight: 20", 'weight: "20%"')
    )
    code = main(["analyze", "-f", str(bad)])
    err = capsys.readouterr().err
    assert code == 1
    assert (
        f"Error: {bad}:97: VirtualService default/tcp-echo: spec.tcp[0].route[1].weight: "
        'expected an integer ≥ 0, got "20%"'
    ) in err
