"""Which resource something came from; shared by the model, the snapshot and diagnostics.

Kept free of third-party imports so the snapshot (stdlib only) can carry it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResourceRef:
    """``Kind namespace/name`` plus the file and line it was read from."""

    kind: str
    namespace: str
    name: str
    file: str = ""
    line: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def location(self) -> str:
        """``file:line``; just the origin when it has no lines (an API object)."""
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"
