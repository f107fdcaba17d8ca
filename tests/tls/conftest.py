"""One private PKI for all TLS tests (key generation is the slow part)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ..tls_certs import CertAuthority, Leaf


@dataclass
class Pki:
    dir: Path
    ca: CertAuthority
    other_ca: CertAuthority
    server_ec: Leaf
    server_rsa: Leaf
    a: Leaf
    b: Leaf
    wild: Leaf
    fallback: Leaf
    upstream: Leaf
    alice: Leaf
    bob: Leaf
    mallory: Leaf
    revoked: Leaf
    expired: Leaf
    other_client: Leaf
    crl: bytes


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = CertAuthority.create(d / "ca", "Test CA")
    other = CertAuthority.create(d / "other", "Other CA", key_type="rsa")
    hosts = ("example.com", "www.example.com", "localhost")
    revoked = ca.issue("revoked", client=True, dns=("revoked.test",))
    return Pki(
        dir=d,
        ca=ca,
        other_ca=other,
        server_ec=ca.issue("server-ec", dns=hosts),
        server_rsa=ca.issue("server-rsa", dns=hosts, key_type="rsa"),
        a=ca.issue("a", dns=("a.example.com",)),
        b=ca.issue("b", dns=("b.example.com",)),
        wild=ca.issue("wild", dns=("*.wild.example.com",)),
        fallback=ca.issue("fallback", dns=("fallback.test",)),
        upstream=ca.issue("upstream", dns=("upstream.test", "api.internal"), ips=("127.0.0.1",)),
        alice=ca.issue(
            "alice", client=True, dns=("alice.test",), uris=("spiffe://td/ns/default/sa/alice",)
        ),
        bob=ca.issue(
            "bob", client=True, dns=("bob.test",), uris=("spiffe://td/ns/default/sa/bob",)
        ),
        mallory=other.issue("mallory", client=True, dns=("alice.test",)),
        revoked=revoked,
        expired=ca.expired("old", client=True, dns=("old.test",)),
        other_client=other.issue("other-client", client=True),
        crl=ca.crl([revoked]),
    )
