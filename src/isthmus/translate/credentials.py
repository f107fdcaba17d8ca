"""Gateway TLS settings and their certificates, read from Secrets of the workload's namespace.

``credentialName`` is always looked up in the namespace of the gateway *workload*, never the
Gateway resource's (reading it from the Gateway's namespace was CVE-2021-34824).
"""

from __future__ import annotations

from isthmus.model import ResourceSet, Secret
from isthmus.snapshot.types import DownstreamTls
from isthmus.translate import diagnostics as d
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.gateways import BoundServer
from isthmus.translate.identity import GatewayIdentity

KEY_LAYOUTS = (("tls.crt", "tls.key", "ca.crt", "ca.crl"), ("cert", "key", "cacert", "crl"))


def secret_name(credential: str) -> str:
    return credential.removeprefix("kubernetes://")


def find_secret(resources: ResourceSet, namespace: str, name: str) -> Secret | None:
    found: Secret | None = resources.find("Secret", namespace, name)
    return found


def credential_material(secret: Secret) -> dict[str, bytes] | None:
    """``{"cert", "key", "ca"?, "crl"?}`` from either key layout, or None if incomplete."""
    for cert_key, key_key, ca_key, crl_key in KEY_LAYOUTS:
        cert, key = secret.value(cert_key), secret.value(key_key)
        if cert is not None or key is not None:
            if cert is None or key is None:
                return None
            out = {"cert": cert, "key": key}
            ca, crl = secret.value(ca_key), secret.value(crl_key)
            if ca is not None:
                out["ca"] = ca
            if crl is not None:
                out["crl"] = crl
            return out
    # A CA-only secret (``<name>-cacert``) has just the CA key.
    for _c, _k, ca_key, _crl in KEY_LAYOUTS:
        ca = secret.value(ca_key)
        if ca is not None:
            return {"ca": ca}
    return None


def downstream_tls(
    server: BoundServer, resources: ResourceSet, identity: GatewayIdentity
) -> tuple[DownstreamTls | None, list[Diagnostic]]:
    tls = server.server.tls
    ref, path = server.gateway.ref, f"{server.path}.tls"
    diags: list[Diagnostic] = []
    if tls is None:
        return None, [d.invalid(ref, path, "server must have TLS settings")]
    names = list(tls.credential_names) or ([tls.credential_name] if tls.credential_name else [])
    secrets: dict[str, dict[str, bytes]] = {}
    for k, credential in enumerate(names):
        field = f"{path}.credentialNames[{k}]" if tls.credential_names else f"{path}.credentialName"
        name = secret_name(credential)
        secret = find_secret(resources, identity.namespace, name)
        if secret is None:
            elsewhere = [s.ref for s in resources.secrets if s.name == name]
            hint = ""
            if elsewhere:
                where = ", ".join(f"{r.namespace}" for r in elsewhere)
                hint = (
                    f"; a Secret of that name exists in namespace {where}, but gateway "
                    f"credentials are read only from the gateway workload's namespace "
                    f"({identity.namespace})"
                )
            diags.append(
                d.error(
                    d.REFERENCED_RESOURCE_NOT_FOUND,
                    ref,
                    field,
                    f'Referenced credentialName not found: "{identity.namespace}/{name}"{hint}',
                )
            )
            continue
        material = credential_material(secret)
        if material is None or "cert" not in material:
            diags.append(
                d.error(
                    d.INVALID_GATEWAY_CREDENTIAL,
                    ref,
                    field,
                    f"{secret.ref} has no certificate and key (tls.crt/tls.key or cert/key)",
                )
            )
            continue
        if "ca" not in material:
            ca_secret = find_secret(resources, identity.namespace, f"{name}-cacert")
            ca_material = credential_material(ca_secret) if ca_secret else None
            if ca_material and "ca" in ca_material:
                material["ca"] = ca_material["ca"]
        secrets[name] = material
    if names and not secrets:
        return None, diags
    files = tls.server_certificate and tls.private_key
    if tls.mode != "ISTIO_MUTUAL" and not names and not files:
        diags.append(
            d.invalid(
                ref,
                path,
                f"{tls.mode} TLS requires credentialName or serverCertificate and privateKey",
            )
        )
        return None, diags
    if (
        tls.mode == "MUTUAL"
        and not tls.ca_certificates
        and not any("ca" in m for m in secrets.values())
    ):
        diags.append(
            d.error(
                d.INVALID_GATEWAY_CREDENTIAL,
                ref,
                path,
                "MUTUAL TLS needs a CA to check client certificates: add ca.crt "
                "to the credential, a <name>-cacert Secret or caCertificates",
            )
        )
        return None, diags
    return DownstreamTls(
        mode=tls.mode,
        credential_names=tuple(secrets),
        server_certificate=tls.server_certificate,
        private_key=tls.private_key,
        ca_certificates=tls.ca_certificates,
        ca_crl=tls.ca_crl,
        subject_alt_names=tuple(tls.subject_alt_names),
        min_protocol_version=(
            "TLSV1_2" if tls.min_protocol_version == "TLS_AUTO" else tls.min_protocol_version
        ),
        max_protocol_version=tls.max_protocol_version,
        cipher_suites=tuple(tls.cipher_suites),
        secrets=secrets,
    ), diags
