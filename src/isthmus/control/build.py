"""One config build: load every path, validate, translate; reject the whole set on any error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from isthmus.analyze import locate
from isthmus.model import ConfigError, Note, load
from isthmus.snapshot import Snapshot
from isthmus.translate import translate
from isthmus.translate.diagnostics import Diagnostic
from isthmus.translate.identity import GatewayIdentity


@dataclass
class Build:
    """The outcome of one build; ``snapshot`` is None when the config is rejected."""

    snapshot: Snapshot | None
    errors: list[ConfigError] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def rejected(self) -> bool:
        return self.snapshot is None

    def problems(self) -> list[str]:
        """Why the build was rejected, one line each."""
        lines = [str(e) for e in self.errors]
        lines.extend(str(d) for d in self.diagnostics if d.invalid)
        return lines


def build(
    paths: Sequence[str],
    identity: GatewayIdentity,
    version: str | None = None,
    *,
    mesh: bool = False,
) -> Build:
    loaded = load(paths)
    if loaded.errors:
        return Build(None, loaded.errors, [], loaded.notes)
    snapshot, diagnostics = translate(loaded.resources, identity, version, mesh=mesh)
    diagnostics = locate(diagnostics, loaded.resources)
    if any(d.invalid for d in diagnostics):
        return Build(None, [], diagnostics, loaded.notes)
    return Build(snapshot, [], diagnostics, loaded.notes)
