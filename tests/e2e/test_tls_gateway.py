"""TLS at the gateway and towards upstreams, with certificates the tests make."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from isthmus.samples.http_echo import start_http_echo
from tests.e2e.harness import background, free_port, isthmus_run, thread_server
from tests.e2e.http_util import (
    build_request,
    http_gateway,
    http_service,
    read_response,
    virtual_service,
)
from tests.tls_certs import CertAuthority, Leaf, tls_secret

DATA = Path(__file__).parent.parent / "data"


def https_get(
    port: int, host: str, ca: CertAuthority, path: str = "/", cert: Leaf | None = None
) -> tuple[int, bytes, dict[str, str]]:
    context = ssl.create_default_context(cafile=str(ca.path))
    if cert is not None:
        context.load_cert_chain(str(cert.cert_path), str(cert.key_path))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as s,
    ):
        s.sendall(build_request(path, host=host))
        r = read_response(s)  # type: ignore[arg-type]
        return r.status, r.body, r.headers


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def bookinfo(
    ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, int]]:
    """Seed 004's HTTPS variant: httpsRedirect on 80, SIMPLE with credentialName on 443."""
    config = tmp_path_factory.mktemp("bookinfo-tls")
    http_port, https_port = free_port(), free_port()
    leaf = ca.issue("bookinfo", dns=["bookinfo.example.com"])
    with background() as bg:
        backend = bg.run(start_http_echo(0, "productpage")).sockets[0].getsockname()[1]
        seed = (DATA / "seeds" / "004" / "v3-https" / "bookinfo.yaml").read_text()
        seed = seed.replace("number: 80\n", f"number: {http_port}\n").replace(
            "number: 443\n", f"number: {https_port}\n"
        )
        (config / "bookinfo.yaml").write_text(seed)
        (config / "productpage.yaml").write_text(
            http_service("productpage", [(backend, "v1")], port=9080)
            + tls_secret("bookinfo-credential", "istio-system", leaf)
        )
        with isthmus_run(config):
            yield http_port, https_port


def test_https_with_credential_name(bookinfo: tuple[int, int], ca: CertAuthority) -> None:
    status, body, headers = https_get(bookinfo[1], "bookinfo.example.com", ca, "/productpage")
    assert status == 200 and b'"productpage"' in body
    assert headers["server"] == "istio-envoy"
    assert b'"x-forwarded-proto": "https"' in body


def test_http_redirects_to_https(bookinfo: tuple[int, int]) -> None:
    with socket.create_connection(("127.0.0.1", bookinfo[0]), timeout=10) as s:
        s.sendall(build_request("/productpage?a=1", host="bookinfo.example.com"))
        r = read_response(s)
    assert r.status == 301
    assert r.headers["location"] == "https://bookinfo.example.com/productpage?a=1"


def test_unknown_sni_is_closed(bookinfo: tuple[int, int], ca: CertAuthority) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https_get(bookinfo[1], "other.example.com", ca)


def test_secret_in_another_namespace_is_not_used(ca: CertAuthority, tmp_path: Path) -> None:
    port = free_port()
    leaf = ca.issue("bookinfo", dns=["bookinfo.example.com"])
    seed = (DATA / "seeds" / "004" / "v3-https" / "bookinfo.yaml").read_text()
    seed = seed.replace("number: 80\n", f"number: {free_port()}\n").replace(
        "number: 443\n", f"number: {port}\n"
    )
    (tmp_path / "b.yaml").write_text(seed + tls_secret("bookinfo-credential", "default", leaf))
    with isthmus_run(tmp_path) as gw, pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https_get(port, "bookinfo.example.com", ca)
    text = "".join(gw.output)
    assert "IST0101" in text and "gateway workload's namespace (istio-system)" in text


def mutual_config(port: int, leaf: Leaf, ca: CertAuthority, backend: int, mode: str) -> str:
    return (
        f"""---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: https, protocol: HTTPS}}
    hosts: ["secure.example.com"]
    tls: {{mode: {mode}, credentialName: secure}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: istio-system}}
spec:
  hosts: ["secure.example.com"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: app.default.svc.cluster.local, port: {{number: 80}}}}}}]
"""
        + tls_secret("secure", "istio-system", leaf, ca.pem)
        + http_service("app", [(backend, "v1")])
    )


@pytest.mark.parametrize("mode", ["MUTUAL", "OPTIONAL_MUTUAL"])
def test_mutual_tls(ca: CertAuthority, tmp_path: Path, mode: str) -> None:
    port = free_port()
    leaf = ca.issue("secure", dns=["secure.example.com"])
    client = ca.issue("client", dns=["client.example.com"], client=True)
    other = CertAuthority.create(tmp_path / "other", name="other CA")
    stranger = other.issue("stranger", client=True)
    with background() as bg:
        backend = bg.run(start_http_echo(0, "app")).sockets[0].getsockname()[1]
        (tmp_path / "c.yaml").write_text(mutual_config(port, leaf, ca, backend, mode))
        with isthmus_run(tmp_path):
            assert https_get(port, "secure.example.com", ca, cert=client)[0] == 200
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                https_get(port, "secure.example.com", ca, cert=stranger)
            if mode == "MUTUAL":
                with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                    https_get(port, "secure.example.com", ca)
            else:
                assert https_get(port, "secure.example.com", ca)[0] == 200


ROUTE_TO_APP_443 = "  - route: [{destination: {host: app, port: {number: 443}}}]\n"


def tls_echo_server(leaf: Leaf, name: str) -> Callable[[socket.socket], None]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(leaf.cert_path), str(leaf.key_path))

    def handle(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as s:
            while data := s.recv(65536):
                s.sendall(name.encode() + b":" + data)

    return handle


def test_passthrough_routes_by_sni_without_terminating(ca: CertAuthority, tmp_path: Path) -> None:
    port = free_port()
    a_leaf = ca.issue("a", dns=["a.example.com"])
    b_leaf = ca.issue("b", dns=["b.example.com"])
    with (
        thread_server(tls_echo_server(a_leaf, "A")) as a,
        thread_server(tls_echo_server(b_leaf, "B")) as b,
    ):
        (tmp_path / "c.yaml").write_text(
            f"""---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: tls, protocol: TLS}}
    hosts: ["*.example.com"]
    tls: {{mode: PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: sni, namespace: default}}
spec:
  hosts: ["*.example.com"]
  gateways: [istio-system/gw]
  tls:
  - match: [{{sniHosts: [a.example.com]}}]
    route: [{{destination: {{host: a, port: {{number: 443}}}}}}]
  - match: [{{sniHosts: [b.example.com]}}]
    route: [{{destination: {{host: b, port: {{number: 443}}}}}}]
"""
            + http_service("a", [(a.port, "v1")], port=443)
            + http_service("b", [(b.port, "v1")], port=443)
        )
        with isthmus_run(tmp_path):
            context = ssl.create_default_context(cafile=str(ca.path))
            for host, tag in (("a.example.com", b"A"), ("b.example.com", b"B")):
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                    context.wrap_socket(raw, server_hostname=host) as s,
                ):
                    # the backend's own certificate proves the gateway did not terminate
                    assert s.getpeercert()["subjectAltName"] == (("DNS", host),)
                    s.sendall(b"ping")
                    assert s.recv(64) == tag + b":ping"
            with (
                pytest.raises((ssl.SSLError, ConnectionError, OSError)),
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="c.example.com"),
            ):
                pass


def test_origination_checks_sni_and_san(ca: CertAuthority, tmp_path: Path) -> None:
    port = free_port()
    leaf = ca.issue("backend", dns=["backend.internal"])
    seen_sni: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(leaf.cert_path), str(leaf.key_path))
    context.sni_callback = lambda s, name, c: seen_sni.append(name)  # type: ignore[assignment,misc,return-value]

    def https_backend(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as s:
            reader = s.makefile("rb")
            while reader.readline() not in (b"\r\n", b""):
                pass
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\noriginated")

    with thread_server(https_backend) as backend:
        for san, expected in (("backend.internal", 200), ("wrong.internal", 503)):
            (tmp_path / "c.yaml").write_text(
                http_gateway(port)
                + virtual_service(ROUTE_TO_APP_443)
                + f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app, namespace: default}}
spec:
  host: app
  trafficPolicy:
    tls:
      mode: SIMPLE
      sni: backend.internal
      caCertificates: {ca.path}
      subjectAltNames: [{san}]
"""
                + http_service("app", [(backend.port, "v1")], port=443)
            )
            with isthmus_run(tmp_path):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(build_request("/", host="x"))
                    r = read_response(s)
                assert r.status == expected, r.body
    assert "backend.internal" in seen_sni


def test_certificate_file_rotation_keeps_open_connections(
    ca: CertAuthority, tmp_path: Path
) -> None:
    port = free_port()
    first = ca.issue("rot1", dns=["rotate.example.com"])
    second = ca.issue("rot2", dns=["rotate.example.com"])
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(first.cert_pem)
    key.write_bytes(first.key_pem)
    config = tmp_path / "config"
    config.mkdir()
    with background() as bg:
        backend = bg.run(start_http_echo(0, "app")).sockets[0].getsockname()[1]
        (config / "c.yaml").write_text(
            f"""---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: https, protocol: HTTPS}}
    hosts: ["rotate.example.com"]
    tls: {{mode: SIMPLE, serverCertificate: {cert}, privateKey: {key}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: vs, namespace: istio-system}}
spec:
  hosts: ["rotate.example.com"]
  gateways: [gw]
  http:
  - route: [{{destination: {{host: app.default.svc.cluster.local, port: {{number: 80}}}}}}]
"""
            + http_service("app", [(backend, "v1")])
        )
        context = ssl.create_default_context(cafile=str(ca.path))
        with isthmus_run(config):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            old = context.wrap_socket(raw, server_hostname="rotate.example.com")
            assert old.getpeercert()["serialNumber"] == first.serial_hex
            cert.write_bytes(second.cert_pem)
            key.write_bytes(second.key_pem)
            deadline = time.monotonic() + 10
            serial = first.serial_hex
            while serial == first.serial_hex and time.monotonic() < deadline:
                time.sleep(0.3)
                with (
                    socket.create_connection(("127.0.0.1", port), timeout=10) as r2,
                    context.wrap_socket(r2, server_hostname="rotate.example.com") as s2,
                ):
                    serial = s2.getpeercert()["serialNumber"]
            assert serial == second.serial_hex
            old.sendall(build_request("/still-open", host="rotate.example.com"))
            assert read_response(old).status == 200  # type: ignore[arg-type]
            old.close()


def test_auto_passthrough_routes_by_istio_sni(ca: CertAuthority, tmp_path: Path) -> None:
    port = free_port()
    v1 = ca.issue("v1", dns=["reviews.default.svc.cluster.local"])
    with thread_server(tls_echo_server(v1, "V1")) as backend:
        (tmp_path / "c.yaml").write_text(
            f"""---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: cross-network, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {port}, name: tls, protocol: TLS}}
    hosts: ["*.local"]
    tls: {{mode: AUTO_PASSTHROUGH}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets: [{{name: v1, labels: {{version: v1}}}}]
"""
            + http_service("reviews", [(backend.port, "v1")], port=9080)
        )
        with isthmus_run(tmp_path):
            context = ssl.create_default_context(cafile=str(ca.path))
            context.check_hostname = False
            sni = "outbound_.9080_.v1_.reviews.default.svc.cluster.local"
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=sni) as s,
            ):
                s.sendall(b"hi")
                assert s.recv(64) == b"V1:hi"
            with (
                pytest.raises((ssl.SSLError, ConnectionError, OSError)),
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname="outbound_.9080_.v9_.reviews.x"),
            ):
                pass


def test_istio_mutual_needs_a_ca_flag(ca: CertAuthority, tmp_path: Path) -> None:
    port = free_port()
    leaf = ca.issue("secure", dns=["secure.example.com"])
    client = ca.issue("workload", client=True)
    with background() as bg:
        backend = bg.run(start_http_echo(0, "app")).sockets[0].getsockname()[1]
        text = mutual_config(port, leaf, ca, backend, "ISTIO_MUTUAL")
        (tmp_path / "c.yaml").write_text(text)
        refused = pytest.raises((ssl.SSLError, ConnectionError, OSError))
        with isthmus_run(tmp_path) as gw, refused:
            https_get(port, "secure.example.com", ca, cert=client)
        assert "ISTIO_MUTUAL needs Istio's mesh CA" in "".join(gw.output)
        with isthmus_run(tmp_path, "--istio-ca", str(ca.path)):
            assert https_get(port, "secure.example.com", ca, cert=client)[0] == 200
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                https_get(port, "secure.example.com", ca)


def test_mutual_origination_with_credential_name(ca: CertAuthority, tmp_path: Path) -> None:
    port = free_port()
    server = ca.issue("backend", dns=["backend.internal"])
    client = ca.issue("gateway-client", client=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.path))
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(str(server.cert_path), str(server.key_path))
    peers: list[str] = []

    def https_backend(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as s:
            peers.append(dict(x[0] for x in s.getpeercert()["subject"])["commonName"])
            reader = s.makefile("rb")
            while reader.readline() not in (b"\r\n", b""):
                pass
            s.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    with thread_server(https_backend) as backend:
        (tmp_path / "c.yaml").write_text(
            http_gateway(port)
            + virtual_service(ROUTE_TO_APP_443)
            + """---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: app, namespace: default}
spec:
  host: app
  trafficPolicy:
    tls: {mode: MUTUAL, credentialName: client-credential, sni: backend.internal}
"""
            + tls_secret("client-credential", "istio-system", client, ca.pem)
            + http_service("app", [(backend.port, "v1")], port=443)
        )
        with isthmus_run(tmp_path), socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(build_request("/", host="x"))
            assert read_response(s).status == 200
    assert peers == ["gateway-client"]


def _https_server(port: int, host: str, leaf: Leaf, name: str) -> str:
    return f"""  - port: {{number: {port}, name: {name}, protocol: HTTPS}}
    hosts: ["{host}"]
    tls: {{mode: SIMPLE, serverCertificate: {leaf.cert_path}, privateKey: {leaf.key_path}}}
"""


def test_https_listener_changes_between_one_and_two_servers_under_load(
    ca: CertAuthority, tmp_path: Path
) -> None:
    """One HTTPS server on a port is served by the loop directly, two by sniffing the SNI:
    adding and removing the second serves the port anew without refusing anyone."""
    import threading

    port = free_port()
    a = ca.issue("direct-a", dns=["a.example.com"])
    b = ca.issue("direct-b", dns=["b.example.com"])
    config = tmp_path / "config"
    config.mkdir()

    def write(servers: str) -> None:
        (config / "gw.yaml").write_text(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\n"
            "metadata: {name: gw, namespace: istio-system}\n"
            "spec:\n  selector: {istio: ingressgateway}\n  servers:\n" + servers
        )

    one = _https_server(port, "a.example.com", a, "https-a")
    two = one + _https_server(port, "b.example.com", b, "https-b")
    with background() as bg:
        backend = bg.run(start_http_echo(0, "app")).sockets[0].getsockname()[1]
        (config / "routes.yaml").write_text(
            virtual_service(
                "  - route: [{destination: {host: app, port: {number: 80}}}]\n",
                hosts='["a.example.com", "b.example.com"]',
            )
            + http_service("app", [(backend, "v1")])
        )
        write(one)
        failures: list[str] = []
        done = 0
        stop = threading.Event()

        def load() -> None:
            nonlocal done
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    assert https_get(port, "a.example.com", ca)[0] == 200
                    done += 1
                except (OSError, AssertionError) as exc:
                    failures.append(repr(exc))

        with isthmus_run(config, "--reload-quiet-ms", "50"):
            thread = threading.Thread(target=load, daemon=True)
            thread.start()
            try:
                with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                    https_get(port, "b.example.com", ca)  # no server for b yet
                write(two)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        if https_get(port, "b.example.com", ca)[0] == 200:
                            break
                    except (ssl.SSLError, OSError):
                        time.sleep(0.2)
                assert https_get(port, "b.example.com", ca)[0] == 200
                write(one)
                refused = False
                deadline = time.monotonic() + 20
                while not refused and time.monotonic() < deadline:
                    time.sleep(0.2)
                    try:
                        https_get(port, "b.example.com", ca)
                    except (ssl.SSLError, OSError):
                        refused = True
                assert refused  # b is gone again
                time.sleep(0.5)
            finally:
                stop.set()
                thread.join(timeout=30)
        assert failures == [], failures[:3]
        assert done > 10
