"""One config build: load every path, validate, translate; reject the whole set on any error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from isthmus.analyze import locate
from isthmus.model import ConfigError, Note
from isthmus.model.resources import parse_documents
from isthmus.snapshot import Snapshot
from isthmus.sources.base import SourceState
from isthmus.sources.files import FileSource
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
    """Build from files and directories (what ``-f PATH`` means everywhere)."""
    return build_state(FileSource(paths).read(), identity, version, mesh=mesh)


def build_state(
    state: SourceState,
    identity: GatewayIdentity,
    version: str | None = None,
    *,
    mesh: bool = False,
) -> Build:
    """Build from whatever a source read; the store's revision, if any, names the snapshot."""
    loaded = parse_documents(list(state.documents), list(state.errors))
    if loaded.errors:
        return Build(None, loaded.errors, [], loaded.notes)
    version = version or state.revision
    snapshot, diagnostics = translate(loaded.resources, identity, version, mesh=mesh)
    diagnostics = locate(diagnostics, loaded.resources)
    if any(d.invalid for d in diagnostics):
        return Build(None, [], diagnostics, loaded.notes)
    return Build(snapshot, [], diagnostics, loaded.notes)
