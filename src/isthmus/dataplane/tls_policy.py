"""Protocol versions, cipher suites and key-exchange groups: Mozilla "intermediate" by default.

Defaults for terminating contexts follow Mozilla's Server Side TLS *intermediate* profile
(guidelines 5.7): TLS 1.2 and 1.3; for TLS 1.2 the nine AEAD suites below (ECDHE and DHE with
AES-GCM or ChaCha20-Poly1305, ffdhe2048 for DHE); the client picks among them ("server cipher
preference: off"); groups X25519, P-256, P-384; no compression; no renegotiation; no TLS 1.2
session tickets (a ticket key that lives as long as the context would undo forward secrecy).
TLS 1.3 suites are OpenSSL's defaults, which are exactly Mozilla's three; like Envoy, isthmus
does not let them be configured.

``minProtocolVersion`` below TLS 1.2 is honoured as Istio allows it: OpenSSL 3 then needs
security level 0 (TLS 1.0/1.1 sign with SHA-1/MD5) and CBC suites, since none of the AEAD
suites exist before TLS 1.2. :data:`LEGACY_CBC_CIPHERS` are added to the defaults in that case
(they are what Envoy offered by default before it dropped them).

``cipherSuites`` takes the names Envoy documents (BoringSSL's, which are OpenSSL's for every
suite both have), BoringSSL's equal-preference groups ``[A|B]`` (flattened: OpenSSL has no
equal preference), and the IANA names BoringSSL also accepts, mapped by
:data:`IANA_TO_OPENSSL`. TLS 1.3 names are accepted and ignored. Any other name is an error.
"""

from __future__ import annotations

import functools
import ssl
import warnings
from dataclasses import dataclass

from isthmus.dataplane.tls_errors import TLSConfigError
from isthmus.dataplane.tls_material import load_dh_params
from isthmus.dataplane.tls_openssl import set_groups

PROTOCOL_VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSV1_0": ssl.TLSVersion.TLSv1,
    "TLSV1_1": ssl.TLSVersion.TLSv1_1,
    "TLSV1_2": ssl.TLSVersion.TLSv1_2,
    "TLSV1_3": ssl.TLSVersion.TLSv1_3,
}

MOZILLA_INTERMEDIATE_CIPHERS: tuple[str, ...] = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-CHACHA20-POLY1305",
)

LEGACY_CBC_CIPHERS: tuple[str, ...] = (
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-SHA",
    "AES256-SHA",
)

#: Mozilla's groups; a post-quantum hybrid goes first where OpenSSL (3.5+) has it.
ECDH_GROUPS: tuple[str, ...] = ("X25519", "P-256", "P-384")
PQ_GROUPS: tuple[str, ...] = ("X25519MLKEM768",)

#: IANA (RFC) names → OpenSSL names, for every TLS ≤1.2 suite BoringSSL implements.
IANA_TO_OPENSSL: dict[str, str] = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-PSK-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA": "ECDHE-PSK-AES128-CBC-SHA",
    "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA": "ECDHE-PSK-AES256-CBC-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_PSK_WITH_AES_128_CBC_SHA": "PSK-AES128-CBC-SHA",
    "TLS_PSK_WITH_AES_256_CBC_SHA": "PSK-AES256-CBC-SHA",
}

TLS13_SUITES = frozenset(
    {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}
)

_KNOWN_NAMES = frozenset(IANA_TO_OPENSSL.values()) | set(MOZILLA_INTERMEDIATE_CIPHERS)

#: RFC 7919 ffdhe2048, the DH group Mozilla prescribes for the DHE suites.
FFDHE2048 = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""

SERVER_OPTIONS_ON = ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_TICKET
SERVER_OPTIONS_OFF = ssl.OP_CIPHER_SERVER_PREFERENCE


def protocol_range(min_name: str, max_name: str) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """Istio's ``minProtocolVersion``/``maxProtocolVersion``; ``TLS_AUTO`` = 1.2 / no max."""
    lo = ssl.TLSVersion.TLSv1_2 if min_name in ("", "TLS_AUTO") else PROTOCOL_VERSIONS.get(min_name)
    hi = (
        ssl.TLSVersion.MAXIMUM_SUPPORTED
        if max_name in ("", "TLS_AUTO")
        else PROTOCOL_VERSIONS.get(max_name)
    )
    if lo is None:
        raise TLSConfigError(
            f"minProtocolVersion {min_name!r}: expected one of TLS_AUTO, TLSV1_0..TLSV1_3"
        )
    if hi is None:
        raise TLSConfigError(
            f"maxProtocolVersion {max_name!r}: expected one of TLS_AUTO, TLSV1_0..TLSV1_3"
        )
    if hi != ssl.TLSVersion.MAXIMUM_SUPPORTED and hi < lo:
        raise TLSConfigError(
            f"maxProtocolVersion {max_name} is below minProtocolVersion {min_name}"
        )
    return lo, hi


@functools.lru_cache(maxsize=512)
def _openssl_knows(name: str) -> bool:
    """Is ``name`` exactly one TLS ≤1.2 suite of this OpenSSL (not a keyword like ``HIGH``)?"""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.set_ciphers(f"{name}:@SECLEVEL=0")
    except ssl.SSLError:
        return False
    names = [c["name"] for c in probe.get_ciphers() if c["name"] not in TLS13_SUITES]
    return names == [name]


def openssl_cipher_names(suites: tuple[str, ...]) -> tuple[str, ...]:
    """``cipherSuites`` as OpenSSL names, in order, without duplicates or TLS 1.3 names."""
    out: list[str] = []
    for entry in suites:
        entry = entry.strip()
        group = entry[1:-1].split("|") if entry.startswith("[") and entry.endswith("]") else [entry]
        for raw in group:
            name = raw.strip()
            if name in TLS13_SUITES:
                continue
            name = IANA_TO_OPENSSL.get(name.upper(), name)
            if not _openssl_knows(name) and name in _KNOWN_NAMES:
                raise TLSConfigError(
                    f"cipherSuites: {raw!r} is not available in this build of {ssl.OPENSSL_VERSION}"
                )
            if not _openssl_knows(name):
                raise TLSConfigError(
                    f"cipherSuites: unknown cipher suite {raw!r}; use Envoy/OpenSSL names "
                    "(ECDHE-ECDSA-AES128-GCM-SHA256) or IANA names "
                    "(TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)"
                )
            if name not in out:
                out.append(name)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Policy:
    """What a context negotiates, apart from its certificates and trust."""

    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
    ciphers: tuple[str, ...] = MOZILLA_INTERMEDIATE_CIPHERS

    @property
    def legacy(self) -> bool:
        return self.minimum < ssl.TLSVersion.TLSv1_2

    @property
    def cipher_string(self) -> str:
        return ":".join(self.ciphers) + (":@SECLEVEL=0" if self.legacy else "")


def server_policy(min_name: str, max_name: str, cipher_suites: tuple[str, ...]) -> Policy:
    lo, hi = protocol_range(min_name, max_name)
    ciphers = openssl_cipher_names(cipher_suites)
    if not ciphers:
        ciphers = MOZILLA_INTERMEDIATE_CIPHERS
        if lo < ssl.TLSVersion.TLSv1_2:
            ciphers += LEGACY_CBC_CIPHERS
    return Policy(lo, hi, ciphers)


def apply_server_policy(ctx: ssl.SSLContext, policy: Policy) -> None:
    ctx.options = (ctx.options | SERVER_OPTIONS_ON) & ~SERVER_OPTIONS_OFF
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 when asked for
        ctx.minimum_version = policy.minimum
        ctx.maximum_version = policy.maximum
    try:
        ctx.set_ciphers(policy.cipher_string)
    except ssl.SSLError as exc:
        raise TLSConfigError(f"cipherSuites: none usable ({exc.reason})") from exc
    if any(c.startswith("DHE-") for c in policy.ciphers):
        load_dh_params(ctx, FFDHE2048)
    set_groups(ctx, PQ_GROUPS + ECDH_GROUPS) or set_groups(ctx, ECDH_GROUPS)
