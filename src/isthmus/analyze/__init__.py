"""``istioctl analyze`` for isthmus: what translating for this gateway found, plus checks over
the whole config; each finding once, errors first."""

from __future__ import annotations

from dataclasses import replace

from isthmus.analyze.checks import ALL_CHECKS
from isthmus.model import ResourceSet
from isthmus.translate import translate
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.identity import GatewayIdentity
from isthmus.translate.registry import Registry

__all__ = ["analyze", "locate"]
_LEVEL_ORDER = {"Error": 0, "Warning": 1, "Info": 2}


def analyze(resources: ResourceSet, identity: GatewayIdentity | None = None) -> list[Diagnostic]:
    identity = identity or GatewayIdentity()
    _snapshot, found = translate(resources, identity)
    registry = Registry.build(resources)
    for check in ALL_CHECKS:
        found.extend(check(resources, registry, identity))
    unique = locate(list(dict.fromkeys(found)), resources)
    return sorted(
        unique,
        key=lambda x: (
            _LEVEL_ORDER[x.level],
            x.ref.file if x.ref else "",
            x.line,
            x.field_path,
        ),
    )


def locate(diagnostics: list[Diagnostic], resources: ResourceSet) -> list[Diagnostic]:
    """Point each diagnostic at the line of its field, not just its resource."""
    out = []
    for diag in diagnostics:
        obj = resources.find(diag.ref.kind, diag.ref.namespace, diag.ref.name) if diag.ref else None
        out.append(replace(diag, line=obj.line_of(diag.field_path)) if obj is not None else diag)
    return out
