"""Read YAML like ``kubectl apply -f``: files, directories (recursive), multi-document files.

Besides the plain Python value of each document we keep the line of every key and list item,
so a validation error deep inside a resource can point at the line the user has to edit.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from isthmus.model.errors import ConfigError

try:  # the C loader is much faster on large inputs; fall back to pure Python
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Path = tuple[str | int, ...]
YAML_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(slots=True)
class Document:
    """One YAML document: its value and where each part of it came from."""

    file: str
    index: int
    line: int
    value: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of the deepest known part of ``path`` (falls back to the document start)."""
        for end in range(len(path), -1, -1):
            found = self.lines.get(path[:end])
            if found is not None:
                return found
        return self.line


def expand_paths(paths: Iterable[str]) -> tuple[list[str], list[ConfigError]]:
    """Files as given; directories walked recursively for YAML files, in sorted order."""
    files: list[str] = []
    errors: list[ConfigError] = []
    for path in paths:
        if os.path.isdir(path):
            found: list[str] = []
            seen: set[str] = set()
            for root, dirs, names in os.walk(path, followlinks=True):
                real = os.path.realpath(root)
                if real in seen:  # a symlink loop
                    dirs.clear()
                    continue
                seen.add(real)
                found.extend(os.path.join(root, n) for n in names if n.endswith(YAML_SUFFIXES))
            # kubectl walks a tree in lexical path order: b/c/y.yaml before b/x.yml before c.yaml
            files.extend(sorted(found, key=lambda f: os.path.relpath(f, path).split(os.sep)))
        elif os.path.isfile(path) or path == "-":
            files.append(path)
        else:
            errors.append(ConfigError(path, 0, None, "", "no such file or directory"))
    return files, errors


def read_documents(file: str, text: str) -> tuple[list[Document], list[ConfigError]]:
    """Split ``text`` into documents, skipping empty ones; a syntax error names its line."""
    docs: list[Document] = []
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = exc.problem or str(exc)
        return [], [ConfigError(file, line, None, "", f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return [], [ConfigError(file, 0, None, "", f"invalid YAML: {exc}")]
    builder = _Builder()
    for index, node in enumerate(nodes):
        if node is None:
            continue
        lines: dict[Path, int] = {}
        try:
            value = builder.build(node, (), lines)
        except DuplicateKey as exc:
            return docs, [ConfigError(file, exc.line, None, "", f"invalid YAML: {exc}")]
        except yaml.YAMLError as exc:
            return docs, [
                ConfigError(file, node.start_mark.line + 1, None, "", f"invalid YAML: {exc}")
            ]
        if value is None:
            continue
        docs.append(Document(file, index, node.start_mark.line + 1, value, lines))
    return docs, []


def load_documents(paths: Iterable[str]) -> tuple[list[Document], list[ConfigError]]:
    """Every document in every file under ``paths`` plus every error met on the way."""
    files, errors = expand_paths(paths)
    docs: list[Document] = []
    for file in files:
        try:
            if file == "-":
                import sys

                text = sys.stdin.read()
            else:
                with open(file, encoding="utf-8") as fh:
                    text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(ConfigError(file, 0, None, "", f"cannot read: {exc}"))
            continue
        found, errs = read_documents(file, text)
        docs.extend(found)
        errors.extend(errs)
    return docs, errors


class DuplicateKey(yaml.YAMLError):
    def __init__(self, line: int, key: str) -> None:
        super().__init__(
            f'duplicate key "{key}" (a missing "---" between two documents looks like this)'
        )
        self.line = line


class _Builder:
    """Turns composed nodes into plain values while recording the line of every path."""

    def __init__(self) -> None:
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            self._constructor.flatten_mapping(node)
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) and key is not None:
                    raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: unhashable key")
                child = (*path, str(key))
                if key in out:  # PyYAML keeps the last silently; kubectl's strict decoding refuses
                    raise DuplicateKey(key_node.start_mark.line + 1, str(key))
                out[key] = self.build(value_node, child, lines)
                lines[child] = key_node.start_mark.line + 1
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), lines) for i, item in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)


def iter_items(value: Any) -> Iterator[tuple[int | None, Any]]:
    """The items of a ``kind: List`` document, or the document itself."""
    if isinstance(value, dict) and value.get("kind") == "List":
        items = value.get("items")
        yield from enumerate(items if isinstance(items, list) else [])
    else:
        yield None, value
