"""The default TLS settings meet Mozilla's "intermediate" profile, as sslyze checks it.

The only finding allowed is the certificate path: the tests' CA is private."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import free_port, isthmus_run
from tests.tls_certs import CertAuthority


def test_default_listener_is_mozilla_intermediate(tmp_path: Path) -> None:
    ca = CertAuthority.create(tmp_path / "ca")
    rsa = ca.issue("site-rsa", dns=["site.example.com"], key_type="rsa")
    port = free_port()
    config = tmp_path / "config"
    config.mkdir()
    (config / "gw.yaml").write_text(f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: https, protocol: HTTPS}}
    hosts: ["site.example.com"]
    tls: {{mode: SIMPLE, serverCertificate: {rsa.cert_path}, privateKey: {rsa.key_path}}}
""")
    with isthmus_run(config):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "sslyze",
                "--mozilla_config=intermediate",
                f"site.example.com:{port}{{127.0.0.1}}",
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    report = out.stdout
    assert "COMPLIANCE AGAINST TLS CONFIGURATION" in report, report[-2000:] + out.stderr
    compliance = report.split("COMPLIANCE AGAINST TLS CONFIGURATION", 1)[1]
    findings = [
        line.strip()[2:].split(":", 1)[0]
        for line in compliance.splitlines()
        if line.strip().startswith("* ")
    ]
    assert findings == ["certificate_path_validation"], compliance
    assert (
        "TLS 1.1 Cipher Suites:\n     Attempted to connect using 80 cipher suites; the server "
        "rejected all cipher suites." in report
    )
