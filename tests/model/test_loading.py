"""Loading YAML like ``kubectl apply -f``: files, directories, documents, lists, kinds, names."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from isthmus.model import (
    ConfigError,
    ConfigLoadError,
    Gateway,
    Secret,
    load,
    load_text,
)
from isthmus.model.errors import format_path
from isthmus.model.resources import IGNORED_KINDS, KINDS, UNSUPPORTED_ISTIO_KINDS
from isthmus.model.yamlload import expand_paths, read_documents

from .helpers import dedent, find, load_ok, load_yaml, notes, refs


def secret(name: str, namespace: str | None = None, **data: str) -> str:
    """A small valid Secret document (``stringData`` from ``data``)."""
    lines = ["apiVersion: v1", "kind: Secret", "metadata:", f"  name: {name}"]
    if namespace:
        lines.append(f"  namespace: {namespace}")
    if data:
        lines.append("stringData:")
        lines.extend(f"  {k}: {v}" for k, v in data.items())
    return "\n".join(lines) + "\n"


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# Files and directories -------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A directory tree with YAML files at several depths, plus files that must be skipped."""
    write(tmp_path, "a.yaml", secret("a"))
    write(tmp_path, "b/x.yml", secret("bx"))
    write(tmp_path, "b/c/y.yaml", secret("bcy"))
    write(tmp_path, "c.yaml", secret("c"))
    write(
        tmp_path, "e/z.json", '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ez"}}'
    )
    write(tmp_path, "notes.txt", "this is not YAML: [\n")
    write(tmp_path, "b/README.md", "# not YAML either: [\n")
    write(tmp_path, "b/config.yaml.bak", "kind: [broken\n")
    return tmp_path


def test_directory_loads_yaml_yml_and_json_and_ignores_other_files(tree: Path) -> None:
    result = load([str(tree)])
    assert result.errors == []
    assert sorted(s.name for s in result.resources.secrets) == ["a", "bcy", "bx", "c", "ez"]
    files = {Path(s.ref.file).name for s in result.resources.secrets}
    assert files == {"a.yaml", "x.yml", "y.yaml", "c.yaml", "z.json"}


def test_directory_files_are_not_read_unless_yaml(tree: Path) -> None:
    files, errors = expand_paths([str(tree)])
    assert errors == []
    assert not any(f.endswith((".txt", ".md", ".bak")) for f in files)


def test_directory_is_walked_in_sorted_recursive_order(tree: Path) -> None:
    # kubectl apply -f DIR -R walks with filepath.Walk: lexical order, descending into a
    # directory where its name sorts, so b/... comes between a.yaml and c.yaml.
    files, errors = expand_paths([str(tree)])
    assert errors == []
    assert [os.path.relpath(f, tree) for f in files] == [
        "a.yaml",
        os.path.join("b", "c", "y.yaml"),
        os.path.join("b", "x.yml"),
        "c.yaml",
        os.path.join("e", "z.json"),
    ]


def test_subdirectories_are_walked_in_sorted_order(tmp_path: Path) -> None:
    for name in ("zeta", "alpha", "mid"):
        write(tmp_path, f"{name}/s.yaml", secret(name))
    write(tmp_path, "alpha/deeper/s.yaml", secret("alpha-deeper"))
    result = load([str(tmp_path)])
    assert result.errors == []
    # lexical path order, as kubectl walks: alpha/deeper/s.yaml sorts before alpha/s.yaml
    assert [s.name for s in result.resources.secrets] == ["alpha-deeper", "alpha", "mid", "zeta"]
    assert [s.order for s in result.resources.secrets] == [0, 1, 2, 3]


def test_paths_are_read_in_the_order_given(tmp_path: Path) -> None:
    first = write(tmp_path, "z.yaml", secret("from-z"))
    second = write(tmp_path, "a.yaml", secret("from-a"))
    result = load([str(first), str(second)])
    assert [s.name for s in result.resources.all()] == ["from-z", "from-a"]


def test_explicit_file_is_read_whatever_its_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "manifest.txt", secret("explicit"))
    result = load([str(path)])
    assert result.errors == []
    assert refs(result) == ["Secret default/explicit"]
    assert result.resources.secrets[0].ref.file == str(path)


def test_missing_path_is_an_error_naming_it(tmp_path: Path) -> None:
    present = write(tmp_path, "present.yaml", secret("present"))
    missing = str(tmp_path / "no-such-dir" / "gateway.yaml")
    result = load([missing, str(present)])
    assert [str(e) for e in result.errors] == [f"{missing}: no such file or directory"]
    error = result.errors[0]
    assert (error.file, error.line, error.ref, error.path) == (missing, 0, None, "")
    # the other inputs still load
    assert refs(result) == ["Secret default/present"]


def test_undecodable_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: caf\xe9\n")
    result = load([str(path)])
    assert len(result.errors) == 1
    assert str(result.errors[0]).startswith(f"{path}: cannot read: ")


def test_stdin_is_read_for_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(secret("from-stdin")))
    result = load(["-"])
    assert result.errors == []
    assert refs(result) == ["Secret default/from-stdin"]
    assert result.resources.secrets[0].ref.location == "-:1"


# Documents ---------------------------------------------------------------------------------------


def test_multi_document_file_with_empty_documents() -> None:
    text = dedent(
        """
        # leading comment-only document
        ---
        ---
        apiVersion: v1
        kind: Secret
        metadata:
          name: one
        ---
        ~
        ---
        # a comment before the document
        apiVersion: v1
        kind: Secret
        metadata:
          name: two
        ---

        ---
        apiVersion: v1
        kind: Secret
        metadata:
          name: three
        ...
        ---
        """
    )
    result = load_text(text, "multi.yaml")
    assert result.errors == []
    assert result.notes == []
    assert refs(result) == ["Secret default/one", "Secret default/two", "Secret default/three"]
    assert [s.ref.location for s in result.resources.secrets] == [
        "multi.yaml:4",
        "multi.yaml:12",
        "multi.yaml:19",
    ]
    assert [s.order for s in result.resources.secrets] == [0, 1, 2]


def test_empty_file_loads_nothing() -> None:
    for text in ("", "\n\n", "# only a comment\n", "---\n---\n"):
        result = load_text(text, "empty.yaml")
        assert (result.errors, result.notes, refs(result)) == ([], [], [])


def test_documents_before_and_after_a_bad_one_still_load() -> None:
    text = secret("good-1") + "---\n" + "- not\n- a mapping\n" + "---\n" + secret("good-2")
    result = load_text(text, "mixed.yaml")
    assert [str(e) for e in result.errors] == ["mixed.yaml:6: expected a Kubernetes object"]
    assert refs(result) == ["Secret default/good-1", "Secret default/good-2"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("- a\n- b\n", 1, id="list"),
        pytest.param("just a string\n", 1, id="string"),
        pytest.param("42\n", 1, id="number"),
        pytest.param("true\n", 1, id="bool"),
        pytest.param(secret("ok") + "---\n[1, 2]\n", 6, id="second-document"),
    ],
)
def test_document_that_is_not_a_mapping(text: str, line: int) -> None:
    result = load_text(text, "odd.yaml")
    assert [str(e) for e in result.errors] == [f"odd.yaml:{line}: expected a Kubernetes object"]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("apiVersion: v1\nkind: [Secret\nmetadata: {}\n", 3, id="unclosed-flow-seq"),
        pytest.param("apiVersion: v1\nkind: Secret\n  metadata: x\n", 3, id="bad-indent"),
        pytest.param("apiVersion: v1\nkind: 'Secret\n", 3, id="unclosed-quote"),
        pytest.param("a: b\n- c\n", 2, id="list-item-in-mapping"),
        pytest.param("apiVersion: v1\nkind: Secret\nmetadata:\n\tname: x\n", 4, id="tab"),
        pytest.param(secret("ok") + "---\nkey: value: other\n", 6, id="second-document"),
    ],
)
def test_yaml_syntax_error_names_file_and_line(text: str, line: int) -> None:
    result = load_text(text, "broken.yaml")
    assert len(result.errors) == 1
    error = result.errors[0]
    assert (error.file, error.line, error.ref, error.path) == ("broken.yaml", line, None, "")
    assert error.message.startswith("invalid YAML: ")
    assert str(error).startswith(f"broken.yaml:{line}: invalid YAML: ")


def test_yaml_syntax_error_in_a_file_on_disk(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: [x}\n")
    write(tmp_path, "good.yaml", secret("good"))
    result = load([str(tmp_path)])
    assert len(result.errors) == 1
    assert str(result.errors[0]).startswith(f"{path}:3: invalid YAML: ")
    assert refs(result) == ["Secret default/good"]


def test_unhashable_key_is_an_error() -> None:
    docs, errors = read_documents("keys.yaml", "apiVersion: v1\n? [a, b]\n: value\n")
    assert docs == []
    assert len(errors) == 1
    assert errors[0].file == "keys.yaml"
    assert "invalid YAML" in errors[0].message


def test_document_lines_are_recorded_for_keys_and_items() -> None:
    text = dedent(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata:
          name: g
        spec:
          servers:
          - port:
              number: 80
              protocol: HTTP
            hosts:
            - "*"
        """
    )
    docs, errors = read_documents("g.yaml", text)
    assert errors == []
    (doc,) = docs
    assert doc.line == 1
    assert doc.lines[("spec",)] == 5
    assert doc.lines[("spec", "servers", 0)] == 7
    assert doc.lines[("spec", "servers", 0, "port", "number")] == 8
    assert doc.lines[("spec", "servers", 0, "hosts", 0)] == 11
    # unknown deeper paths fall back to the deepest known parent
    assert doc.line_of(("spec", "servers", 0, "port", "nope", 3)) == 7
    assert doc.line_of(("nothing",)) == 1


# kind: List ----------------------------------------------------------------------------------


LIST = """
apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
- apiVersion: networking.istio.io/v1
  kind: Gateway
  metadata:
    name: first
  spec:
    servers:
    - port: {number: 80, protocol: HTTP}
      hosts: ["*"]
- apiVersion: networking.istio.io/v1
  kind: Gateway
  metadata:
    name: second
    namespace: edge
  spec:
    servers:
    - port: {number: 80, protocol: HTTP}
      hosts: ["*"]
      tls:
        mode: SIMPEL
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: app
- apiVersion: v1
  kind: Secret
  metadata:
    name: s
  stringData:
    k: v
"""


def test_list_items_are_loaded_as_resources() -> None:
    result = load_yaml(LIST, "list.yaml")
    assert refs(result) == ["Gateway default/first", "Secret default/s"]
    first = find(result.resources, "Gateway", "default", "first")
    assert first.ref.location == "list.yaml:6"
    assert result.resources.secrets[0].ref.location == "list.yaml:29"
    # items keep their position in the load order, even ones that failed or were ignored
    assert first.order == 0
    assert result.resources.secrets[0].order == 3


def test_errors_inside_a_list_name_the_item() -> None:
    result = load_yaml(LIST, "list.yaml")
    assert [str(e) for e in result.errors] == [
        "list.yaml:24: Gateway edge/second: items[1].spec.servers[0].tls.mode: "
        "expected one of PASSTHROUGH, SIMPLE, MUTUAL, AUTO_PASSTHROUGH, ISTIO_MUTUAL, "
        'OPTIONAL_MUTUAL; got "SIMPEL"'
    ]


def test_ignored_kinds_inside_a_list_give_a_note_at_the_item() -> None:
    result = load_yaml(LIST, "list.yaml")
    assert notes(result) == [
        ("info", "list.yaml:25: Deployment default/app: ignored (not used by a gateway)")
    ]


def test_field_lines_of_a_list_item_are_relative_to_the_item() -> None:
    result = load_yaml(LIST, "list.yaml")
    first = find(result.resources, "Gateway", "default", "first")
    assert first.line_of("metadata.name") == 9
    assert first.line_of("spec.servers[0].hosts") == 13
    assert first.line_of("spec.servers[0].hosts[0]") == 13
    assert first.line_of("spec.servers[0].port.number") == 12
    assert first.line_of("spec.servers[7]") == 11  # nearest known parent: spec.servers


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        pytest.param("- just-a-string", "list.yaml:3: items[0]: expected a Kubernetes object"),
        pytest.param("- [1, 2]", "list.yaml:3: items[0]: expected a Kubernetes object"),
        pytest.param("- metadata: {name: x}", "list.yaml:3: items[0].kind: missing kind"),
        pytest.param(
            "- {apiVersion: v1, kind: Sekret, metadata: {name: x}}",
            'list.yaml:3: items[0].kind: unknown kind "Sekret" (did you mean "Secret"?)',
        ),
        pytest.param(
            "- {apiVersion: v2, kind: Secret, metadata: {name: x}}",
            'list.yaml:3: Secret default/x: items[0].apiVersion: expected one of v1; got "v2"',
        ),
        pytest.param(
            "- {apiVersion: v1, kind: Secret, metadata: {namespace: n}}",
            "list.yaml:3: Secret n/: items[0].metadata.name: missing required field",
        ),
    ],
)
def test_bad_list_items(item: str, expected: str) -> None:
    result = load_text(f"kind: List\nitems:\n{item}\n", "list.yaml")
    assert [str(e) for e in result.errors] == [expected]
    assert refs(result) == []


def test_empty_list_loads_nothing() -> None:
    result = load_text("apiVersion: v1\nkind: List\nitems: []\n", "list.yaml")
    assert (result.errors, result.notes, refs(result)) == ([], [], [])


# kind and apiVersion -----------------------------------------------------------------------


def test_missing_kind() -> None:
    text = "apiVersion: v1\nmetadata:\n  name: x\n"
    assert [str(e) for e in load_text(text, "k.yaml").errors] == ["k.yaml:1: kind: missing kind"]


@pytest.mark.parametrize(
    ("kind", "hint"),
    [
        ("Gatway", ' (did you mean "Gateway"?)'),
        ("gateway", ' (did you mean "Gateway"?)'),
        ("VirtualServce", ' (did you mean "VirtualService"?)'),
        ("DestinationRules", ' (did you mean "DestinationRule"?)'),
        ("ServiceEntri", ' (did you mean "ServiceEntry"?)'),
        ("EndpointSlices", ' (did you mean "EndpointSlice"?)'),
        ("Deploymnet", ' (did you mean "Deployment"?)'),
        ("Frobnicator", ""),
    ],
)
def test_unknown_kind_suggests_the_closest(kind: str, hint: str) -> None:
    text = f"kind: {kind}\napiVersion: networking.istio.io/v1\nmetadata:\n  name: x\n"
    result = load_text(text, "k.yaml")
    assert [str(e) for e in result.errors] == [f'k.yaml:1: kind: unknown kind "{kind}"{hint}']
    assert refs(result) == []


def test_unknown_kind_error_points_at_the_kind_line() -> None:
    # The usual layout has apiVersion first: the line to edit is the one with the kind.
    text = "apiVersion: networking.istio.io/v1\nkind: Gatway\nmetadata:\n  name: x\n"
    assert [str(e) for e in load_text(text, "k.yaml").errors] == [
        'k.yaml:2: kind: unknown kind "Gatway" (did you mean "Gateway"?)'
    ]


ISTIO = "networking.istio.io/v1, networking.istio.io/v1alpha3, networking.istio.io/v1beta1"


@pytest.mark.parametrize(
    ("kind", "api_version", "listed"),
    [
        ("Gateway", "networking.istio.io/v2", ISTIO),
        ("VirtualService", "v1", ISTIO),
        ("DestinationRule", "networking.istio.io/v1alpha2", ISTIO),
        ("ServiceEntry", "security.istio.io/v1", ISTIO),
        ("WorkloadEntry", "networking.istio.io", ISTIO),
        ("Service", "apps/v1", "v1"),
        ("Secret", "v2", "v1"),
        ("Pod", "core/v1", "v1"),
        ("Endpoints", "discovery.k8s.io/v1", "v1"),
        ("EndpointSlice", "discovery.k8s.io/v1beta1", "discovery.k8s.io/v1"),
        ("EndpointSlice", "v1", "discovery.k8s.io/v1"),
    ],
)
def test_wrong_api_version_lists_the_accepted_ones(
    kind: str, api_version: str, listed: str
) -> None:
    text = f"kind: {kind}\nmetadata:\n  name: x\n  namespace: ns\napiVersion: {api_version}\n"
    result = load_text(text, "v.yaml")
    assert [str(e) for e in result.errors] == [
        f'v.yaml:5: {kind} ns/x: apiVersion: expected one of {listed}; got "{api_version}"'
    ]
    assert refs(result) == []


def test_missing_api_version_does_not_claim_the_user_wrote_none() -> None:
    result = load_text("kind: Gateway\nmetadata:\n  name: g\n", "v.yaml")
    assert len(result.errors) == 1
    error = result.errors[0]
    assert (error.file, error.line, error.ref, error.path) == (
        "v.yaml",
        1,
        "Gateway default/g",
        "apiVersion",
    )
    assert '"None"' not in error.message


@pytest.mark.parametrize("version", ["v1alpha3", "v1beta1", "v1"])
@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        ("Gateway", "servers: [{port: {number: 80, protocol: HTTP}, hosts: ['*']}]"),
        ("VirtualService", "hosts: [a]"),
        ("DestinationRule", "host: a"),
        ("ServiceEntry", "hosts: [a.example.com]"),
        ("WorkloadEntry", "address: 10.0.0.1"),
    ],
)
def test_every_istio_networking_version_is_accepted(kind: str, spec: str, version: str) -> None:
    text = f"apiVersion: networking.istio.io/{version}\nkind: {kind}\n"
    text += f"metadata: {{name: x}}\nspec: {{{spec}}}\n"
    result = load_text(text, "i.yaml")
    assert result.errors == []
    assert refs(result) == [f"{kind} default/x"]
    assert result.resources.all()[0].api_version == f"networking.istio.io/{version}"


def test_every_supported_kind_lands_in_its_own_list() -> None:
    docs = {
        "Gateway": ("networking.istio.io/v1", "spec: {}"),
        "VirtualService": ("networking.istio.io/v1", "spec: {}"),
        "DestinationRule": ("networking.istio.io/v1", "spec: {host: a}"),
        "ServiceEntry": ("networking.istio.io/v1", "spec: {hosts: [a]}"),
        "WorkloadEntry": ("networking.istio.io/v1", "spec: {}"),
        "Service": ("v1", "spec: {}"),
        "Endpoints": ("v1", "subsets: []"),
        "EndpointSlice": ("discovery.k8s.io/v1", "endpoints: []"),
        "Pod": ("v1", "spec: {}"),
        "Secret": ("v1", "data: {}"),
    }
    assert set(docs) == set(KINDS)
    text = "---\n".join(
        f"apiVersion: {api}\nkind: {kind}\nmetadata: {{name: n}}\n{body}\n"
        for kind, (api, body) in docs.items()
    )
    result = load_text(text, "all.yaml")
    assert result.errors == []
    res = result.resources
    for kind in docs:
        (obj,) = res.of_kind(kind)
        assert obj.kind == kind
        assert res.find(kind, "default", "n") is obj
        assert res.find(kind, "other", "n") is None
    assert len(res.gateways) == len(res.virtual_services) == len(res.destination_rules) == 1
    assert len(res.service_entries) == len(res.workload_entries) == len(res.services) == 1
    assert len(res.endpoints) == len(res.endpoint_slices) == len(res.pods) == 1
    assert len(res.secrets) == 1
    assert [o.kind for o in res.all()] == list(docs)


# Ignored and unsupported kinds ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(IGNORED_KINDS))
def test_ignored_kinds_give_an_info_note(kind: str) -> None:
    text = f"apiVersion: whatever/v1\nkind: {kind}\nmetadata:\n  name: thing\n  namespace: ns\n"
    text += "spec:\n  anything: [goes, here]\n"
    result = load_text(secret("before") + "---\n" + text, "ignored.yaml")
    assert result.errors == []
    assert notes(result) == [
        ("info", f"ignored.yaml:6: {kind} ns/thing: ignored (not used by a gateway)")
    ]
    assert refs(result) == ["Secret default/before"]


@pytest.mark.parametrize("kind", sorted(UNSUPPORTED_ISTIO_KINDS))
def test_unsupported_istio_kinds_give_a_warning_note(kind: str) -> None:
    text = f"apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata:\n  name: thing\n"
    result = load_text(text, "istio.yaml")
    assert result.errors == []
    assert notes(result) == [
        (
            "warning",
            f"istio.yaml:1: {kind} default/thing: ignored (isthmus does not implement {kind})",
        )
    ]
    assert refs(result) == []


# metadata --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        pytest.param(
            "metadata:\n  namespace: ns\n",
            "m.yaml:1: Secret ns/: metadata.name: missing required field",
            id="no-name",
        ),
        pytest.param(
            "metadata: {}\n",
            "m.yaml:1: Secret default/: metadata.name: missing required field",
            id="empty-metadata",
        ),
        pytest.param(
            "",
            "m.yaml:1: Secret default/: metadata.name: missing required field",
            id="no-metadata",
        ),
        pytest.param(
            "metadata:\n  name: ''\n",
            "m.yaml:1: Secret default/: metadata.name: missing required field",
            id="empty-name",
        ),
    ],
)
def test_missing_metadata_name(metadata: str, expected: str) -> None:
    result = load_text(f"apiVersion: v1\nkind: Secret\n{metadata}", "m.yaml")
    assert [str(e) for e in result.errors] == [expected]
    assert refs(result) == []


def test_null_metadata_name_is_not_named_none() -> None:
    result = load_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: null\n", "m.yaml")
    assert len(result.errors) == 1
    error = result.errors[0]
    assert error.path == "metadata.name"
    assert "None" not in str(error)
    assert refs(result) == []


def test_numeric_name_is_its_text() -> None:
    result = load_ok("apiVersion: v1\nkind: Secret\nmetadata:\n  name: 1234\n")
    assert refs(result) == ["Secret default/1234"]


def test_namespace_defaults_to_default() -> None:
    result = load_ok(secret("plain") + "---\n" + secret("placed", namespace="prod"))
    plain, placed = result.resources.secrets
    assert (plain.namespace, placed.namespace) == ("default", "prod")
    assert plain.metadata.namespace is None
    assert str(plain.ref) == "Secret default/plain"
    assert plain.ref.key == "default/plain"


def test_default_namespace_can_be_chosen(tmp_path: Path) -> None:
    text = secret("plain") + "---\n" + secret("placed", namespace="prod")
    result = load_text(text, "ns.yaml", default_namespace="team-a")
    assert refs(result) == ["Secret team-a/plain", "Secret prod/placed"]
    path = write(tmp_path, "ns.yaml", text)
    result = load([str(path)], default_namespace="team-b")
    assert refs(result) == ["Secret team-b/plain", "Secret prod/placed"]


def test_errors_use_the_default_namespace_in_the_ref() -> None:
    text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nbogus: 1\n"
    result = load_text(text, "e.yaml", default_namespace="team-a")
    assert [str(e) for e in result.errors] == [
        'e.yaml:5: Secret team-a/s: bogus: unknown field "bogus"'
    ]


# Duplicates ------------------------------------------------------------------------------------


def test_duplicate_resource_warns_and_the_later_one_wins() -> None:
    text = secret("dup", value="first") + "---\n" + secret("dup", value="second")
    result = load_text(text, "dup.yaml")
    assert result.errors == []
    assert notes(result) == [
        (
            "warning",
            "dup.yaml:8: Secret default/dup is defined again (previously at dup.yaml:1); "
            "the later definition is used, as kubectl apply would",
        )
    ]
    (winner,) = result.resources.secrets
    assert winner.value("value") == b"second"
    assert winner.ref.line == 8
    assert result.resources.find("Secret", "default", "dup") is winner
    assert [o.name for o in result.resources.all()] == ["dup"]


def test_explicit_default_namespace_duplicates_an_implicit_one() -> None:
    text = secret("dup", value="a") + "---\n" + secret("dup", namespace="default", value="b")
    result = load_text(text, "dup.yaml")
    assert [level for level, _ in notes(result)] == ["warning"]
    assert result.resources.secrets[0].value("value") == b"b"


def test_duplicates_across_files_name_both_places(tmp_path: Path) -> None:
    first = write(tmp_path, "1-first.yaml", secret("dup", value="first"))
    second = write(tmp_path, "2-second.yaml", secret("other") + "---\n" + secret("dup", value="2"))
    result = load([str(tmp_path)])
    assert notes(result) == [
        (
            "warning",
            f"{second}:6: Secret default/dup is defined again (previously at {first}:1); "
            "the later definition is used, as kubectl apply would",
        )
    ]
    assert refs(result) == ["Secret default/other", "Secret default/dup"]
    assert result.resources.secrets[-1].value("value") == b"2"


def test_three_definitions_give_two_warnings_and_the_last_wins() -> None:
    text = "---\n".join(secret("dup", value=str(i)) for i in range(3))
    result = load_text(text, "dup.yaml")
    assert [n.message.split(";")[0] for n in result.notes] == [
        "Secret default/dup is defined again (previously at dup.yaml:1)",
        "Secret default/dup is defined again (previously at dup.yaml:8)",
    ]
    assert [s.value("value") for s in result.resources.secrets] == [b"2"]


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(secret("dup", namespace="other"), id="other-namespace"),
        pytest.param(secret("dup2"), id="other-name"),
        pytest.param("apiVersion: v1\nkind: Service\nmetadata:\n  name: dup\n", id="other-kind"),
    ],
)
def test_not_duplicates(second: str) -> None:
    result = load_ok(secret("dup") + "---\n" + second)
    assert result.notes == []
    assert len(result.resources.all()) == 2


def test_duplicate_inside_a_list() -> None:
    text = dedent(
        """
        kind: List
        items:
        - {apiVersion: v1, kind: Secret, metadata: {name: s}, stringData: {v: one}}
        - {apiVersion: v1, kind: Secret, metadata: {name: s}, stringData: {v: two}}
        """
    )
    result = load_text(text, "l.yaml")
    assert notes(result) == [
        (
            "warning",
            "l.yaml:4: Secret default/s is defined again (previously at l.yaml:3); "
            "the later definition is used, as kubectl apply would",
        )
    ]
    assert result.resources.secrets[0].value("v") == b"two"


# Error values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ((), ""),
        (("spec",), "spec"),
        (("spec", "tcp", 0, "route", 1, "weight"), "spec.tcp[0].route[1].weight"),
        (("items", 2, "spec"), "items[2].spec"),
        (
            ("spec", "http", 0, "match", 0, "headers", "x-user"),
            "spec.http[0].match[0].headers.x-user",
        ),
        ((0, 1), "[0][1]"),
    ],
)
def test_format_path(path: tuple[str | int, ...], text: str) -> None:
    assert format_path(path) == text


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (
            ConfigError("a.yaml", 3, "Gateway ns/g", "spec.x", "boom"),
            "a.yaml:3: Gateway ns/g: spec.x: boom",
        ),
        (ConfigError("a.yaml", 3, None, "kind", "boom"), "a.yaml:3: kind: boom"),
        (ConfigError("a.yaml", 3, None, "", "boom"), "a.yaml:3: boom"),
        (ConfigError("a.yaml", 0, None, "", "boom"), "a.yaml: boom"),
        (ConfigError("a.yaml", 0, "Secret d/s", "data", "boom"), "a.yaml: Secret d/s: data: boom"),
    ],
)
def test_config_error_text(error: ConfigError, text: str) -> None:
    assert str(error) == text


def test_config_load_error_carries_every_error() -> None:
    result = load_yaml(
        """
        apiVersion: v1
        kind: Secret
        metadata: {name: s}
        bogus: 1
        other: 2
        """
    )
    assert len(result.errors) == 2
    exc = ConfigLoadError(result.errors)
    assert exc.errors == result.errors
    assert str(exc) == (
        'test.yaml:4: Secret default/s: bogus: unknown field "bogus"\n'
        'test.yaml:5: Secret default/s: other: unknown field "other"'
    )


def test_loaded_objects_are_immutable() -> None:
    result = load_ok(
        """
        apiVersion: networking.istio.io/v1
        kind: Gateway
        metadata: {name: g}
        spec:
          servers: [{port: {number: 80, protocol: HTTP}, hosts: ["*"]}]
        """
    )
    gateway = result.resources.gateways[0]
    assert isinstance(gateway, Gateway)
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError
        gateway.spec.servers[0].port.number = 81  # type: ignore[misc]


def test_objects_know_their_source() -> None:
    result = load_ok(
        """
        # header comment
        apiVersion: v1
        kind: Secret
        metadata:
          name: s
          namespace: n
          labels:
            app: x
        stringData:
          key: value
        """,
        file="src.yaml",
    )
    (s,) = result.resources.secrets
    assert isinstance(s, Secret)
    assert (s.ref.kind, s.ref.namespace, s.ref.name) == ("Secret", "n", "s")
    assert (s.ref.file, s.ref.line, s.ref.location) == ("src.yaml", 2, "src.yaml:2")
    assert s.labels == {"app": "x"}
    assert s.line_of("stringData.key") == 10
    assert s.line_of("metadata.labels.app") == 8
    assert s.line_of("metadata.nothing.here") == 4
    assert s.line_of("") == 2


def test_duplicate_keys_are_an_error_naming_the_line() -> None:
    from isthmus.model import load_text

    text = "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\napiVersion: v1\nkind: Service\n"
    result = load_text(text, "dup.yaml")
    assert [str(e) for e in result.errors] == [
        'dup.yaml:4: invalid YAML: duplicate key "apiVersion" (a missing "---" between two '
        "documents looks like this)"
    ]
