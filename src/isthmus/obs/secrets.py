"""Certificate facts for ``/config_dump`` and ``proxy-config secret``; never key material.

Names follow Istio's SDS resource names: ``kubernetes://NAME`` for a ``credentialName``'s
certificate chain and ``kubernetes://NAME-cacert`` for its CA; ``file-cert:CERT~KEY`` and
``file-root:CA`` for certificates given as file paths.  Each item says where it is used.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from isthmus.snapshot.types import Snapshot


@dataclass
class SecretItem:
    """One certificate (chain) or CA bundle as ``istioctl proxy-config secret`` shows it."""

    name: str
    type: str
    pem: bytes | None = None
    path: str | None = None
    used_by: list[str] | None = None

    def facts(self, now: dt.datetime | None = None) -> dict[str, Any]:
        """JSON-able facts: status, validity, serial (as istioctl prints it), dates, subject."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "used_by": self.used_by or [],
        }
        if self.path is not None:
            out["path"] = self.path
        try:
            pem = self.pem if self.pem is not None else _read(self.path or "")
            info = _first_certificate(pem)
        except (OSError, ValueError) as exc:
            out.update(status="WARMING", valid=False, error=str(exc))
            return out
        now = now or dt.datetime.now(dt.UTC)
        out.update(
            status="ACTIVE",
            valid=info["not_before"] <= now <= info["not_after"],
            serial_number=format(info["serial"], "032x"),
            not_after=_rfc3339(info["not_after"]),
            not_before=_rfc3339(info["not_before"]),
            not_after_epoch=info["not_after"].timestamp(),
            subject=info["subject"],
            issuer=info["issuer"],
            sans=list(info["sans"]),
            key_type=info["key_type"],
            certificates=info["count"],
        )
        return out


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@functools.lru_cache(maxsize=256)
def _first_certificate(pem: bytes) -> dict[str, Any]:
    # The data plane's parser, imported here so that reading obs needs no TLS stack.
    from isthmus.dataplane.tls_certinfo import cert_chain_info
    from isthmus.dataplane.tls_errors import TLSConfigError

    try:
        chain = cert_chain_info(pem)
    except TLSConfigError as exc:
        raise ValueError(str(exc)) from exc
    first = chain[0]
    return {
        "serial": first.serial,
        "not_before": first.not_before,
        "not_after": first.not_after,
        "subject": first.subject,
        "issuer": first.issuer,
        "sans": first.sans,
        "key_type": first.key_type,
        "count": len(chain),
    }


def _credential(name: str) -> str:
    return name if name.startswith("kubernetes://") else f"kubernetes://{name}"


def _collect(snapshot: Snapshot) -> Iterator[tuple[SecretItem, str]]:
    for listener in snapshot.listeners:
        for chain in listener.filter_chains:
            tls = chain.tls
            if tls is None:
                continue
            user = f"listener {listener.name} filter chain {chain.name}"
            for name in tls.credential_names:
                material = tls.secrets.get(name, {})
                yield SecretItem(_credential(name), "Cert Chain", material.get("cert")), user
                if "ca" in material:
                    yield SecretItem(_credential(name) + "-cacert", "CA", material["ca"]), user
            if tls.server_certificate:
                key = tls.private_key or ""
                path = tls.server_certificate
                item = SecretItem(f"file-cert:{path}~{key}", "Cert Chain", path=path)
                yield item, user
            if tls.ca_certificates:
                path = tls.ca_certificates
                yield SecretItem(f"file-root:{path}", "CA", path=path), user
    for cluster in snapshot.clusters.values():
        up = cluster.tls
        if up is None:
            continue
        user = f"cluster {cluster.name}"
        if up.credential_name:
            material = dict(up.secret)
            name = _credential(up.credential_name)
            if "cert" in material:
                yield SecretItem(name, "Cert Chain", material["cert"]), user
            if "ca" in material:
                yield SecretItem(name + "-cacert", "CA", material["ca"]), user
        if up.client_certificate:
            path = up.client_certificate
            key = up.private_key or ""
            yield SecretItem(f"file-cert:{path}~{key}", "Cert Chain", path=path), user
        if up.ca_certificates:
            path = up.ca_certificates
            yield SecretItem(f"file-root:{path}", "CA", path=path), user


def secret_items(snapshot: Snapshot) -> list[SecretItem]:
    """Every certificate the snapshot uses, once per name, with all its users."""
    found: dict[str, SecretItem] = {}
    for item, user in _collect(snapshot):
        existing = found.setdefault(item.name, item)
        existing.used_by = [*(existing.used_by or []), user]
    return list(found.values())


def certificate_expiries(snapshot: Snapshot) -> dict[str, float]:
    """Credential name → ``notAfter`` (Unix seconds) of each readable certificate chain."""
    out: dict[str, float] = {}
    for item in secret_items(snapshot):
        if item.type != "Cert Chain":
            continue
        facts = item.facts()
        if "not_after_epoch" in facts:
            out[item.name] = facts["not_after_epoch"]
    return out
