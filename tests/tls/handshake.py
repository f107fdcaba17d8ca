"""Real TLS handshakes over a socketpair, the server side on a thread; no network."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography import x509

TIMEOUT = 10.0


@dataclass
class Outcome:
    """Both ends of one handshake: the sockets if they got through, else the errors."""

    client: ssl.SSLSocket | None
    server: ssl.SSLSocket | None
    client_error: BaseException | None
    server_error: BaseException | None
    sni_seen: list[str | None] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.client is not None and self.server is not None

    @property
    def served_serial(self) -> int:
        """The serial of the certificate the server presented (verified or not)."""
        assert self.client is not None, self.client_error
        der = self.client.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    @property
    def cipher(self) -> str:
        """The negotiated cipher suite, as the client saw it."""
        assert self.client is not None, (self.client_error, self.server_error)
        negotiated = self.client.cipher()
        assert negotiated is not None
        return negotiated[0]

    @property
    def client_serial(self) -> int | None:
        """The serial of the client certificate the server received, if any."""
        assert self.server is not None, self.server_error
        der = self.server.getpeercert(binary_form=True)
        return None if der is None else x509.load_der_x509_certificate(der).serial_number

    def roundtrip(self, payload: bytes = b"ping") -> bytes:
        """Client sends ``payload``; the server echoes it back."""
        assert self.client is not None and self.server is not None
        self.client.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += self.server.recv(len(payload) - len(got))
        self.server.sendall(got)
        back = b""
        while len(back) < len(payload):
            back += self.client.recv(len(payload) - len(back))
        return back

    def shutdown(self) -> None:
        """A clean close_notify exchange (OpenSSL forgets sessions of unclean closes)."""
        assert self.client is not None and self.server is not None
        server = self.server
        thread = threading.Thread(target=server.unwrap, daemon=True)
        thread.start()
        self.client.unwrap()
        thread.join(TIMEOUT)
        self.close()

    def close(self) -> None:
        for sock in (self.client, self.server):
            if sock is not None:
                sock.close()


def handshake(
    server_ctx: ssl.SSLContext | Callable[[socket.socket], ssl.SSLSocket],
    client_ctx: ssl.SSLContext,
    sni: str | None = "localhost",
    *,
    session: ssl.SSLSession | None = None,
) -> Outcome:
    """Handshake ``client_ctx`` (sending ``sni``) against ``server_ctx``.

    ``server_ctx`` may instead be a function that wraps the server's raw socket itself (to
    sniff the ClientHello first). In TLS 1.3 the client finishes before the server has checked
    the client certificate, so a rejection shows as ``server_error``; the client then sees it
    on its first read, which this helper does for it.
    """
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    result: dict[str, object] = {}

    def serve() -> None:
        try:
            if isinstance(server_ctx, ssl.SSLContext):
                result["server"] = server_ctx.wrap_socket(a, server_side=True)
            else:
                result["server"] = server_ctx(a)
        except Exception as exc:  # reported to the test
            result["error"] = exc
            a.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client: ssl.SSLSocket | None
    client_error: BaseException | None = None
    try:
        client = client_ctx.wrap_socket(b, server_hostname=sni, session=session)
    except (ssl.SSLError, OSError) as exc:
        client, client_error = None, exc
        b.close()
    thread.join(TIMEOUT)
    server = result.get("server")
    server_error = result.get("error")
    assert server is None or isinstance(server, ssl.SSLSocket)
    assert server_error is None or isinstance(server_error, BaseException)
    if client is not None and server is None:
        try:
            client.recv(1)
        except (ssl.SSLError, OSError) as exc:
            client_error = exc
        client.close()
        client = None
        client_error = client_error or ConnectionError("server closed")
    return Outcome(client, server, client_error, server_error)


def client_ctx(
    ca_pem: bytes | None = None,
    *,
    cert: tuple[str, str] | None = None,
    maximum: ssl.TLSVersion | None = None,
    minimum: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    alpn: list[str] | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A plain Python client: trusts ``ca_pem`` (else verifies nothing)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca_pem is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=ca_pem.decode())
        ctx.check_hostname = check_hostname
    if cert is not None:
        ctx.load_cert_chain(*cert)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 clients, on purpose
        if minimum is not None:
            ctx.minimum_version = minimum
        if maximum is not None:
            ctx.maximum_version = maximum
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
