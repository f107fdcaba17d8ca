"""The TLS handshake client of ``bench/tls.py``, each run as its own process (no shared GIL).

    python bench/tls_load.py hs PORT SNI START SECONDS    new TLS connections in a loop
    python bench/tls_load.py probe PORT SNI               one connection: what was negotiated

``hs``: until ``START + SECONDS`` (wall clock, so several processes line their windows up):
connect to 127.0.0.1:PORT, a full TLS handshake with SNI (never a resumed session: no session
is ever offered), ``GET /`` with ``Host: SNI`` on it, read the whole response, close.  Prints
one JSON line: ``count``, ``seconds``, ``errors``, ``error`` and ``cpu`` (this process's CPU
seconds over the window, start-up excluded).  The certificate is not verified
(the handshake's signature is still checked: that is TLS 1.3's CertificateVerify), so the
client does no more work than it must.

``probe``: one such exchange; prints the protocol, cipher, the server certificate's key type,
whether the server sent a session ticket, the status and the body, as JSON.

Blocking sockets with kernel-side timeouts (``SO_RCVTIMEO``/``SO_SNDTIMEO``, see
``tcpload.py``): a stalled proxy ends a run instead of hanging it.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
import time

HOST = "127.0.0.1"
IO_TIMEOUT = 5.0
MAX_RESPONSE = 1 << 20


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tv = struct.pack("ll", int(IO_TIMEOUT), 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(tls: ssl.SSLSocket) -> tuple[int, bytes, bytes]:
    """(status, head, body) of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            raise OSError(f"closed before the response headers ({len(data)} bytes)")
        data += chunk
        if len(data) > MAX_RESPONSE:
            raise OSError("response headers too large")
    head, _, body = data.partition(b"\r\n\r\n")
    length = -1
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length < 0:
        raise OSError("response without Content-Length")
    while len(body) < length:
        chunk = tls.recv(65536)
        if not chunk:
            raise OSError("closed in the response body")
        body += chunk
    parts = head.split(b" ", 2)
    return int(parts[1]), head, body


def handshakes(port: int, sni: str, start_at: float, seconds: float) -> None:
    ctx = client_context()
    addr = (HOST, port)
    request = f"GET / HTTP/1.1\r\nHost: {sni}\r\nUser-Agent: tls_load\r\n\r\n".encode()
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    perf = time.perf_counter
    cpu0 = time.process_time()
    start = perf()
    end = start + seconds
    count = errors = 0
    last_error: str | None = None
    now = start
    while now < end:
        sock = _socket()
        try:
            sock.connect(addr)
            with ctx.wrap_socket(sock, server_hostname=sni) as tls:
                tls.sendall(request)
                status, _, _ = read_response(tls)
            if status == 200:
                count += 1
            else:
                errors += 1
                last_error = f"status {status}"
        except (OSError, ValueError) as exc:
            errors += 1
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.001)  # e.g. no ephemeral port left: do not spin
        finally:
            sock.close()
        now = perf()
        if errors > 10000:
            break
    cpu = time.process_time() - cpu0
    result = {"count": count, "seconds": now - start, "errors": errors, "error": last_error}
    print(json.dumps({**result, "cpu": cpu}))


def probe(port: int, sni: str) -> None:
    ctx = client_context()
    sock = _socket()
    try:
        sock.connect((HOST, port))
        with ctx.wrap_socket(sock, server_hostname=sni) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\n\r\n".encode())
            status, _, body = read_response(tls)
            cert = tls.getpeercert(binary_form=True) or b""
            session = tls.session
            out = {
                "version": tls.version(),
                "cipher": (tls.cipher() or ("?",))[0],
                "alpn": tls.selected_alpn_protocol(),
                "key": _key_type(cert),
                "ticket": bool(session is not None and session.has_ticket),
                "status": status,
                "body": body.decode("latin-1"),
            }
    except (OSError, ValueError) as exc:
        out = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        sock.close()
    print(json.dumps(out))


def _key_type(der: bytes) -> str:
    """ECDSA or RSA, from the certificate's SubjectPublicKeyInfo algorithm OID."""
    if b"\x2a\x86\x48\xce\x3d\x02\x01" in der:  # 1.2.840.10045.2.1 id-ecPublicKey
        return "ECDSA"
    if b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01" in der:  # 1.2.840.113549.1.1.1 rsaEncryption
        return "RSA"
    return "?"


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("hs", "probe"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "hs":
            handshakes(int(argv[1]), argv[2], float(argv[3]), float(argv[4]))
        else:
            probe(int(argv[1]), argv[2])
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
