"""Certificate facts for ``istioctl proxy-config secret``-style output and config checks.

``cryptography`` is imported when a certificate is first read, not when the data plane is
imported: the data plane itself only needs the standard library's ``ssl``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from isthmus.dataplane.tls_errors import TLSConfigError


@dataclass(frozen=True, slots=True)
class CertInfo:
    """One certificate: ``serial`` as an integer (``serial_hex`` as istioctl prints it)."""

    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    subject: str
    issuer: str
    sans: tuple[str, ...]
    key_type: str

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")

    def valid_at(self, when: dt.datetime | None = None) -> bool:
        when = when or dt.datetime.now(dt.UTC)
        return self.not_before <= when <= self.not_after


def cert_info(pem: bytes) -> CertInfo:
    """Facts about the first certificate in ``pem`` (a leaf, when it is a chain)."""
    infos = cert_chain_info(pem)
    return infos[0]


def cert_chain_info(pem: bytes) -> tuple[CertInfo, ...]:
    """Facts about every certificate in ``pem``, in order."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise TLSConfigError(f"not a PEM certificate: {exc}") from exc
    if not certs:
        raise TLSConfigError("no PEM certificate found")
    key_types: tuple[tuple[type, str], ...] = (
        (rsa.RSAPublicKey, "RSA"),
        (ec.EllipticCurvePublicKey, "ECDSA"),
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
        (dsa.DSAPublicKey, "DSA"),
    )
    out: list[CertInfo] = []
    for cert in certs:
        try:
            san_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            sans = tuple(str(v) for v in san_ext.value.get_values_for_type(x509.DNSName))
            sans += tuple(
                str(v) for v in san_ext.value.get_values_for_type(x509.UniformResourceIdentifier)
            )
            sans += tuple(str(v) for v in san_ext.value.get_values_for_type(x509.IPAddress))
            sans += tuple(str(v) for v in san_ext.value.get_values_for_type(x509.RFC822Name))
        except x509.ExtensionNotFound:
            sans = ()
        key = cert.public_key()
        key_type = next((n for cls, n in key_types if isinstance(key, cls)), type(key).__name__)
        out.append(
            CertInfo(
                serial=cert.serial_number,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                subject=cert.subject.rfc4514_string(),
                issuer=cert.issuer.rfc4514_string(),
                sans=sans,
                key_type=key_type,
            )
        )
    return tuple(out)
