"""Config errors that name the file, line, resource and field path, as users need to fix them."""

from __future__ import annotations

from dataclasses import dataclass


def format_path(path: tuple[str | int, ...]) -> str:
    """Render ``("spec", "tcp", 0, "route")`` as ``spec.tcp[0].route``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, slots=True)
class ConfigError:
    """One problem in one input document.

    ``ref`` is ``"Kind namespace/name"`` once the document is known to be a resource.
    """

    file: str
    line: int
    ref: str | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [where]
        if self.ref:
            parts.append(self.ref)
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


class ConfigLoadError(Exception):
    """Raised when a set of inputs cannot be loaded; carries every error found."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))
