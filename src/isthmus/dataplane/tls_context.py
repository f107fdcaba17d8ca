"""``ssl.SSLContext``\\ s from a snapshot's ``DownstreamTls`` (terminate) and ``UpstreamTls``.

A context is built once per distinct setting (see ``tls_cache``) and shared by every handshake
that uses it. What OpenSSL cannot check during the handshake — Istio's ``subjectAltNames``
allow-list, matched the way Envoy matches it — is remembered on the context
(:class:`TLSContext`) and checked right after it with :func:`check_peer`.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Mapping, Sequence

from isthmus.dataplane.tls_errors import TLSConfigError
from isthmus.dataplane.tls_material import (
    load_ca,
    load_ca_file,
    load_crl,
    load_key_pair,
    load_key_pair_files,
    read_file,
)
from isthmus.dataplane.tls_openssl import keep_session_cache_unscanned
from isthmus.dataplane.tls_policy import Policy, apply_server_policy, server_policy
from isthmus.snapshot.types import DownstreamTls, UpstreamTls

SERVER_MODES = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL")
CLIENT_MODES = ("SIMPLE", "MUTUAL")

#: Secret keys, translator's names first, then Kubernetes' and Istio's generic ones.
CERT_KEYS = ("cert", "tls.crt")
KEY_KEYS = ("key", "tls.key")
CA_KEYS = ("ca", "ca.crt", "cacert")
CRL_KEYS = ("crl", "ca.crl")

ISTIO_MUTUAL_CLIENT = (
    "ISTIO_MUTUAL needs Istio's mesh CA; outside a mesh use SIMPLE or MUTUAL with your own "
    "certificates"
)
ISTIO_MUTUAL_SERVER = (
    "ISTIO_MUTUAL needs Istio's mesh CA to verify client certificates and isthmus runs none; "
    "give the mesh's root certificate as istio_ca, or use MUTUAL with caCertificates or a "
    "credentialName whose Secret holds ca.crt"
)

PeerSocket = ssl.SSLObject | ssl.SSLSocket


class TLSContext(ssl.SSLContext):
    """An ``SSLContext`` that also knows the checks left for after the handshake."""

    #: ``subjectAltNames``: the peer certificate must carry one of these.
    peer_sans: tuple[str, ...] = ()
    #: ``OPTIONAL_MUTUAL``: a client without a certificate passes the SAN check.
    peer_cert_optional: bool = False
    #: Versions and ciphers, so an SNI front context can be made to match.
    policy: Policy | None = None


def _field(secret: Mapping[str, bytes] | None, keys: tuple[str, ...]) -> bytes | None:
    if secret:
        for key in keys:
            value = secret.get(key)
            if value:
                return value
    return None


# --- terminating (Gateway servers) -----------------------------------------------------------


def server_context(
    tls: DownstreamTls, *, alpn: Sequence[str] = ("http/1.1",), istio_ca: str | None = None
) -> TLSContext:
    """The context a Gateway server with this ``tls`` block terminates with.

    ``istio_ca`` (a CA bundle path, or PEM text) stands in for Istio's mesh CA in
    ``ISTIO_MUTUAL``; the server certificate still comes from the credential or files.
    """
    mode = tls.mode.upper()
    if mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH"):
        raise TLSConfigError(f"tls.mode {mode} passes TLS through; there is nothing to terminate")
    if mode not in SERVER_MODES:
        raise TLSConfigError(f"tls.mode {tls.mode!r}: expected one of {', '.join(SERVER_MODES)}")
    if mode == "ISTIO_MUTUAL" and not istio_ca:
        raise TLSConfigError(ISTIO_MUTUAL_SERVER)
    ctx = TLSContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.policy = server_policy(
        tls.min_protocol_version, tls.max_protocol_version, tuple(tls.cipher_suites)
    )
    apply_server_policy(ctx, ctx.policy)
    keep_session_cache_unscanned(ctx)
    ca, crl = _load_server_certificates(ctx, tls)
    if mode != "SIMPLE":
        ctx.verify_mode = ssl.CERT_OPTIONAL if mode == "OPTIONAL_MUTUAL" else ssl.CERT_REQUIRED
        if mode == "ISTIO_MUTUAL" and istio_ca:
            if istio_ca.lstrip().startswith("-----BEGIN"):
                load_ca(ctx, istio_ca.encode("ascii"), "istio_ca")
            else:
                load_ca_file(ctx, istio_ca, "istio_ca")
        elif ca is not None:
            load_ca(ctx, ca, "client CA (credential Secret)")
        elif tls.ca_certificates:
            load_ca_file(ctx, tls.ca_certificates, "caCertificates")
        else:
            raise TLSConfigError(
                f"tls.mode {mode} needs a CA for client certificates: a ca.crt/cacert key in "
                "the credential Secret (or a <name>-cacert Secret), or caCertificates"
            )
        if crl is None and tls.ca_crl:
            crl = read_file(tls.ca_crl, "caCrl")
        if crl is not None:
            load_crl(ctx, crl, "caCrl")
        ctx.peer_sans = tuple(tls.subject_alt_names)
        ctx.peer_cert_optional = mode == "OPTIONAL_MUTUAL"
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _load_server_certificates(
    ctx: ssl.SSLContext, tls: DownstreamTls
) -> tuple[bytes | None, bytes | None]:
    """Load the server certificate(s); return the CA and CRL found beside them, if any."""
    names = tuple(tls.credential_names)
    if not names:
        if not (tls.server_certificate and tls.private_key):
            raise TLSConfigError(
                "no server certificate: set credentialName(s), or serverCertificate and privateKey"
            )
        load_key_pair_files(ctx, tls.server_certificate, tls.private_key, "serverCertificate")
        return None, None
    if len(names) > 2:
        raise TLSConfigError("credentialNames: at most two (one RSA and one ECDSA certificate)")
    ca = crl = None
    key_types: list[str] = []
    for name in names:
        secret = tls.secrets.get(name)
        what = f"credentialName {name!r}"
        if secret is None:
            raise TLSConfigError(
                f"{what}: Secret not found (it is read from the gateway workload's namespace)"
            )
        cert, key = _field(secret, CERT_KEYS), _field(secret, KEY_KEYS)
        if cert is None or key is None:
            raise TLSConfigError(f"{what}: the Secret has no tls.crt/tls.key (or cert/key)")
        if len(names) > 1:
            from isthmus.dataplane.tls_certinfo import cert_info

            key_types.append(cert_info(cert).key_type)
        load_key_pair(ctx, cert, key, what)
        cacert = tls.secrets.get(f"{name}-cacert")
        ca = ca or _field(secret, CA_KEYS) or _field(cacert, CA_KEYS)
        crl = crl or _field(secret, CRL_KEYS) or _field(cacert, CRL_KEYS)
    if len(set(key_types)) < len(key_types):
        raise TLSConfigError(
            f"credentialNames: {', '.join(names)} are both {key_types[0]}; a second "
            "certificate must use the other key type (one RSA, one ECDSA)"
        )
    return ca, crl


# --- originating (DestinationRule tls) -------------------------------------------------------


def client_context(
    tls: UpstreamTls,
    *,
    host: str | None = None,
    alpn: Sequence[str] = (),
    secret: Mapping[str, bytes] | None = None,
) -> tuple[TLSContext, str | None]:
    """A context for TLS towards an upstream, and the SNI to send (``sni``, else ``host``).

    ``secret`` is the content of ``credentialName`` (else ``tls.secret``, where the translator
    put it). With
    ``subjectAltNames`` the host name is not checked; :func:`check_peer` (or
    :func:`check_server_san`) must then be called after the handshake.
    """
    mode = tls.mode.upper()
    if secret is None and tls.secret:
        secret = dict(tls.secret)
    if mode == "ISTIO_MUTUAL":
        raise TLSConfigError(ISTIO_MUTUAL_CLIENT)
    if mode not in CLIENT_MODES:
        raise TLSConfigError(f"tls.mode {tls.mode!r}: only SIMPLE and MUTUAL originate TLS")
    if tls.credential_name and secret is None:
        raise TLSConfigError(
            f"credentialName {tls.credential_name!r}: the Secret's content was not provided"
        )
    ctx = TLSContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ca = _field(secret, CA_KEYS)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        if ca is not None:
            load_ca(ctx, ca, f"credentialName {tls.credential_name!r} CA")
        elif tls.ca_certificates:
            load_ca_file(ctx, tls.ca_certificates, "caCertificates")
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        if tls.subject_alt_names:
            ctx.check_hostname = False
            ctx.peer_sans = tuple(tls.subject_alt_names)
    if mode == "MUTUAL":
        cert, key = _field(secret, CERT_KEYS), _field(secret, KEY_KEYS)
        if cert is not None and key is not None:
            load_key_pair(ctx, cert, key, f"credentialName {tls.credential_name!r}")
        elif tls.client_certificate and tls.private_key:
            load_key_pair_files(ctx, tls.client_certificate, tls.private_key, "clientCertificate")
        else:
            raise TLSConfigError(
                "tls.mode MUTUAL needs a client certificate: clientCertificate and privateKey, "
                "or a credentialName"
            )
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx, tls.sni or host


# --- after the handshake ---------------------------------------------------------------------


def san_matches(wanted: str, kind: str, value: str) -> bool:
    """Envoy's exact SAN match: DNS names case-insensitive and honouring a certificate
    wildcard (``*.example.com`` covers ``a.example.com``), IPs compared as addresses."""
    if kind == "DNS":
        want, have = wanted.lower().rstrip("."), value.lower().rstrip(".")
        if want == have:
            return True
        label, _, rest = want.partition(".")
        return have.startswith("*.") and bool(label) and rest == have[2:]
    if kind == "IP Address":
        try:
            return ipaddress.ip_address(wanted) == ipaddress.ip_address(value.strip())
        except ValueError:
            return False
    return wanted == value


def _peer_sans(ssl_object: PeerSocket) -> tuple[tuple[str, str], ...] | None:
    try:
        cert = ssl_object.getpeercert()
    except ValueError:  # handshake not done
        return None
    if not cert:  # none sent, or not verified: never trust an unverified certificate's SANs
        return None
    sans = cert.get("subjectAltName", ())
    return tuple((str(e[0]), str(e[1])) for e in sans if isinstance(e, tuple) and len(e) == 2)


def check_server_san(ssl_object: PeerSocket, sans: Sequence[str]) -> bool:
    """Does the verified upstream certificate carry one of ``sans``? (True if none given.)"""
    if not sans:
        return True
    found = _peer_sans(ssl_object)
    return found is not None and any(san_matches(w, k, v) for w in sans for k, v in found)


def check_client_san(
    ssl_object: PeerSocket, sans: Sequence[str], *, allow_missing: bool = False
) -> bool:
    """Does the verified client certificate carry one of ``sans``? (True if none given.)

    ``allow_missing`` (``OPTIONAL_MUTUAL``) lets a client that sent no certificate pass.
    """
    if not sans:
        return True
    found = _peer_sans(ssl_object)
    if found is None:
        return allow_missing and _sent_no_certificate(ssl_object)
    return any(san_matches(w, k, v) for w in sans for k, v in found)


def _sent_no_certificate(ssl_object: PeerSocket) -> bool:
    try:
        return ssl_object.getpeercert(binary_form=True) is None
    except ValueError:
        return False


def check_peer(ssl_object: PeerSocket) -> bool:
    """The post-handshake checks of the context that did the handshake (after any SNI
    switch): its ``subjectAltNames``, if it has any."""
    ctx = ssl_object.context
    if not isinstance(ctx, TLSContext) or not ctx.peer_sans:
        return True
    if ssl_object.server_side:
        return check_client_san(ssl_object, ctx.peer_sans, allow_missing=ctx.peer_cert_optional)
    return check_server_san(ssl_object, ctx.peer_sans)
