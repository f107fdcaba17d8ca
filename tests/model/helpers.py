"""Small helpers shared by the model tests."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from isthmus.model import LoadResult, ResourceSet, load_text

TESTS = Path(__file__).resolve().parent.parent
SEEDS = TESTS / "data" / "seeds"
MODEL_DATA = TESTS / "data" / "model"


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def load_yaml(text: str, file: str = "test.yaml", **kwargs: str) -> LoadResult:
    """Load dedented ``text`` as if it were the file ``file``."""
    return load_text(dedent(text), file, **kwargs)


def load_ok(text: str, file: str = "test.yaml", **kwargs: str) -> LoadResult:
    """Load ``text`` and insist on no errors."""
    result = load_yaml(text, file, **kwargs)
    assert [str(e) for e in result.errors] == []
    return result


def error_strings(text: str, file: str = "test.yaml") -> list[str]:
    return [str(e) for e in load_yaml(text, file).errors]


def refs(result: LoadResult) -> list[str]:
    return [str(obj.ref) for obj in result.resources.all()]


def notes(result: LoadResult) -> list[tuple[str, str]]:
    return [(n.level, str(n)) for n in result.notes]


def find(resources: ResourceSet, kind: str, namespace: str, name: str) -> Any:
    """The loaded object ``kind namespace/name``; fails the test when it is missing."""
    obj = resources.find(kind, namespace, name)
    assert obj is not None, f"{kind} {namespace}/{name} not loaded"
    return obj
