"""TLS for the data plane: contexts from a snapshot's ``tls`` settings, SNI, rotation.

The pieces live in ``tls_*`` modules; this one is what the rest of isthmus imports:

* :func:`server_context` — a Gateway server's ``tls`` (SIMPLE, MUTUAL, OPTIONAL_MUTUAL,
  ISTIO_MUTUAL with ``istio_ca``) as a terminating context, Mozilla "intermediate" defaults.
* :func:`client_context` — a DestinationRule's ``tls`` (SIMPLE, MUTUAL) for origination.
* :func:`check_peer`, :func:`check_client_san`, :func:`check_server_san` — the
  ``subjectAltNames`` checks that run after the handshake.
* :class:`SniRouter` — several servers on one port, chosen by SNI.
* :class:`ContextCache` — contexts by content, so rotated Secrets/files reach new handshakes.
* :func:`cert_info` — serial, validity, subject and SANs of a certificate.
* :class:`TLSConfigError` — a ``tls`` block that cannot be served, and why.
"""

from __future__ import annotations

from isthmus.dataplane.tls_cache import ContextCache, secrets_digest
from isthmus.dataplane.tls_certinfo import CertInfo, cert_chain_info, cert_info
from isthmus.dataplane.tls_context import (
    TLSContext,
    check_client_san,
    check_peer,
    check_server_san,
    client_context,
    san_matches,
    server_context,
)
from isthmus.dataplane.tls_errors import TLSConfigError
from isthmus.dataplane.tls_policy import (
    IANA_TO_OPENSSL,
    MOZILLA_INTERMEDIATE_CIPHERS,
    openssl_cipher_names,
)
from isthmus.dataplane.tls_sni import SniRouter

__all__ = [
    "IANA_TO_OPENSSL",
    "MOZILLA_INTERMEDIATE_CIPHERS",
    "CertInfo",
    "ContextCache",
    "SniRouter",
    "TLSConfigError",
    "TLSContext",
    "cert_chain_info",
    "cert_info",
    "check_client_san",
    "check_peer",
    "check_server_san",
    "client_context",
    "openssl_cipher_names",
    "san_matches",
    "secrets_digest",
    "server_context",
]
