"""A private CA for tests: RSA and ECDSA leaves, client certificates, expired ones, CRLs.

Everything is made with ``cryptography`` and written as PEM into a directory the caller owns
(``tmp_path``), so tests get both the bytes (for Secrets) and the paths (for file settings)::

    ca = CertAuthority.create(tmp_path)
    server = ca.issue("server", dns=("example.com",))
    client = ca.issue("alice", client=True, uris=("spiffe://td/ns/default/sa/alice",))
    crl = ca.crl([client])
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["rsa", "ecdsa"]
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)


def new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Leaf:
    """An issued certificate, its key, and where both were written."""

    name: str
    cert: x509.Certificate
    cert_pem: bytes
    key_pem: bytes
    cert_path: Path
    key_path: Path
    ca_pem: bytes
    ca_path: Path

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def serial_hex(self) -> str:
        """As ``ssl.SSLSocket.getpeercert()['serialNumber']`` prints it."""
        text = f"{self.serial:X}"
        return text if len(text) % 2 == 0 else "0" + text

    def secret(self, *, ca: bool = False, crl: bytes | None = None) -> dict[str, bytes]:
        """The translator's view of a Kubernetes TLS Secret holding this certificate."""
        data = {"cert": self.cert_pem, "key": self.key_pem}
        if ca:
            data["ca"] = self.ca_pem
        if crl is not None:
            data["crl"] = crl
        return data


@dataclass
class CertAuthority:
    """A self-signed root that issues leaves into ``directory``."""

    directory: Path
    name: str
    key: PrivateKey
    cert: x509.Certificate

    @classmethod
    def create(
        cls, directory: Path, name: str = "isthmus test CA", key_type: KeyType = "ecdsa"
    ) -> CertAuthority:
        directory.mkdir(parents=True, exist_ok=True)
        key = new_key(key_type)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _HOUR)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        ca = cls(directory, name, key, cert)
        ca.path.write_bytes(ca.pem)
        return ca

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "-")

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def path(self) -> Path:
        return self.directory / f"{self.slug}.ca.crt"

    def issue(
        self,
        name: str,
        *,
        dns: Iterable[str] = ("localhost",),
        ips: Iterable[str] = (),
        uris: Iterable[str] = (),
        key_type: KeyType = "ecdsa",
        client: bool = False,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
    ) -> Leaf:
        """A leaf for ``name`` (the CN), valid from an hour ago for a day unless told."""
        key = new_key(key_type)
        now = _now()
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        sans += [x509.UniformResourceIdentifier(u) for u in uris]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - _HOUR)
            .not_valid_after(not_after or now + _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        private = key_pem(key)
        stem = f"{self.slug}.{name}.{cert.serial_number:x}"
        cert_path = self.directory / f"{stem}.crt"
        key_path = self.directory / f"{stem}.key"
        cert_path.write_bytes(cert_pem)
        key_path.write_bytes(private)
        key_path.chmod(0o600)
        return Leaf(name, cert, cert_pem, private, cert_path, key_path, self.pem, self.path)

    def expired(self, name: str, **kwargs: Any) -> Leaf:
        now = _now()
        return self.issue(name, not_before=now - 10 * _DAY, not_after=now - _DAY, **kwargs)

    def not_yet_valid(self, name: str, **kwargs: Any) -> Leaf:
        now = _now()
        return self.issue(name, not_before=now + _DAY, not_after=now + 10 * _DAY, **kwargs)

    def crl(self, revoked: Iterable[Leaf] = ()) -> bytes:
        """A CRL revoking ``revoked``; also written to ``<ca>.crl``."""
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(now - _HOUR)
            .next_update(now + _DAY)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .add_extension(x509.CRLNumber(1), critical=False)
        )
        for leaf in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(leaf.serial)
                .revocation_date(now - _HOUR)
                .build()
            )
        pem = builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        self.crl_path.write_bytes(pem)
        return pem

    @property
    def crl_path(self) -> Path:
        return self.directory / f"{self.slug}.crl"


def tls_secret(name: str, namespace: str, leaf: Leaf, ca: bytes | None = None) -> str:
    """A kubernetes.io/tls Secret holding ``leaf`` (and ``ca`` as ``ca.crt``), as YAML."""
    data = {"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem}
    if ca is not None:
        data["ca.crt"] = ca
    encoded = ", ".join(f"{k}: {base64.b64encode(v).decode()}" for k, v in data.items())
    return f"""---
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {namespace}}}
type: kubernetes.io/tls
data: {{{encoded}}}
"""
