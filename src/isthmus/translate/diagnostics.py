"""Diagnostics as ``istioctl analyze`` prints them, returned (never logged) by pure code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from isthmus.refs import ResourceRef

Level = Literal["Error", "Warning", "Info"]

# Istio's analyzer codes (pkg/config/analysis/msg/messages.yaml) that isthmus reports.
REFERENCED_RESOURCE_NOT_FOUND = "IST0101"
CONFLICTING_MESH_GATEWAY_VS_HOSTS = "IST0109"
VIRTUAL_SERVICE_UNREACHABLE_RULE = "IST0130"
VIRTUAL_SERVICE_INEFFECTIVE_MATCH = "IST0131"
VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY = "IST0132"
CONFLICTING_GATEWAYS = "IST0145"
EXTERNAL_NAME_INVALID_PORT_NAME = "IST0150"
INVALID_GATEWAY_CREDENTIAL = "IST0161"
GATEWAY_PORT_NOT_DEFINED_ON_SERVICE = "IST0162"
SUBSET_SELECTS_NO_PODS = "IST0173"
UNKNOWN_DESTINATION_RULE_HOST = "IST0174"
# Istio's validation webhook would refuse these; there is no analyzer code, so use its wording.
INVALID_CONFIG = "IST0002"
# isthmus's own: things an Istio gateway would do that isthmus cannot, stated plainly.
UNSUPPORTED = "ISM0001"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding.  ``invalid`` means Istio would reject the resource at apply time."""

    code: str
    level: Level
    ref: ResourceRef | None
    field_path: str
    message: str
    invalid: bool = False
    line: int = 0

    @property
    def location(self) -> str:
        """``file:line`` of the field when known, else of the resource."""
        if self.ref is None or not self.ref.file:
            return ""
        line = self.line or self.ref.line
        return f"{self.ref.file}:{line}" if line else self.ref.file

    def __str__(self) -> str:
        where = ""
        if self.ref is not None:
            loc = f" {self.location}" if self.location else ""
            where = f" ({self.ref}{loc})"
        return f"{self.level} [{self.code}]{where} {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "level": self.level,
            "resource": str(self.ref) if self.ref else None,
            "origin": self.location or None,
            "field": self.field_path,
            "message": self.message,
        }


def error(code: str, ref: ResourceRef | None, path: str, message: str) -> Diagnostic:
    return Diagnostic(code, "Error", ref, path, message)


def warning(code: str, ref: ResourceRef | None, path: str, message: str) -> Diagnostic:
    return Diagnostic(code, "Warning", ref, path, message)


def info(code: str, ref: ResourceRef | None, path: str, message: str) -> Diagnostic:
    return Diagnostic(code, "Info", ref, path, message)


def invalid(ref: ResourceRef | None, path: str, message: str) -> Diagnostic:
    return Diagnostic(INVALID_CONFIG, "Error", ref, path, message, invalid=True)
