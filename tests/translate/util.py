"""Helpers for translation table tests: YAML in, snapshot/simulate result/diagnostics out."""

from __future__ import annotations

import textwrap

from isthmus.model import ResourceSet, load_text
from isthmus.snapshot import Call, Result, Snapshot, simulate
from isthmus.translate import translate
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.identity import GatewayIdentity


def resources(yaml_text: str) -> ResourceSet:
    loaded = load_text(textwrap.dedent(yaml_text), "test.yaml")
    assert not loaded.errors, [str(e) for e in loaded.errors]
    return loaded.resources


def build(
    yaml_text: str, identity: GatewayIdentity | None = None
) -> tuple[Snapshot, list[Diagnostic]]:
    return translate(resources(yaml_text), identity or GatewayIdentity())


def route(yaml_text: str, call: Call, identity: GatewayIdentity | None = None) -> Result:
    snapshot, _ = build(yaml_text, identity)
    return simulate(snapshot, call)


def codes(diags: list[Diagnostic]) -> list[str]:
    return [d.code for d in diags]


def gateway(
    name: str = "gw",
    namespace: str = "istio-system",
    port: int = 80,
    protocol: str = "HTTP",
    hosts: str = '["*"]',
    selector: str = "istio: ingressgateway",
    extra: str = "",
) -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{{selector}}}
  servers:
  - port: {{number: {port}, name: p{port}, protocol: {protocol}}}
    hosts: {hosts}
{extra}"""


def service(
    name: str,
    namespace: str = "default",
    port: int = 9080,
    selector: str = "app: {name}",
    target: int | None = None,
) -> str:
    target_line = f", targetPort: {target}" if target else ""
    sel = selector.format(name=name)
    return f"""
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  selector: {{{sel}}}
  ports:
  - {{name: http, port: {port}{target_line}}}
"""


def workload(name: str, address: str, labels: str, namespace: str = "default") -> str:
    return f"""
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  address: {address}
  labels: {{{labels}}}
"""


def http_vs(
    name: str = "vs",
    namespace: str = "default",
    hosts: str = '["*"]',
    gateways: str | None = '["istio-system/gw"]',
    rules: str = "",
) -> str:
    gw_line = f"  gateways: {gateways}\n" if gateways is not None else ""
    return f"""
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  hosts: {hosts}
{gw_line}  http:
{textwrap.indent(textwrap.dedent(rules).strip(), "  ")}
"""
