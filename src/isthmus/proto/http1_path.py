"""Request path normalization as Envoy does it at an Istio gateway, before routing.

``normalize_path: true`` runs Chromium's path canonicalizer (RFC 3986 section 6.2.2): escapes of
unreserved characters are decoded (``%61`` -> ``a``, ``%2e`` -> ``.``), other escapes are kept
exactly as sent (``%2F`` stays, hex case included), ``\\`` becomes ``/``, characters that may not
appear in a path are percent-encoded, and dot-segments are removed (section 5.2.4). Then
``merge_slashes: true`` collapses runs of ``/``. The query is never touched.

Two choices are stricter than Envoy: a ``%`` that does not start a valid escape and ``%00`` are
refused (``None``, answered with 400) instead of passed through.
"""

from __future__ import annotations

import re

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

#: A character that might change under normalization. A path without one, without ``//`` and
#: without ``/.`` is already canonical, as nearly every path is (a character class alone is
#: three times faster than one regex with the two sequences as alternatives).
odd_path_char = re.compile(r"[^A-Za-z0-9/\-._~!$&'()*+,;=:@\[\]]").search

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})?")
#: Characters Chromium escapes in paths (and any non-ASCII, as UTF-8), besides ``%`` and ``\``.
_MUST_ESCAPE = re.compile(r"[^A-Za-z0-9/\-._~!$&'()*+,;=:@\[\]%\\]")


class _Invalid(Exception):
    pass


def _decode_unreserved(match: re.Match[str]) -> str:
    hex_digits = match.group(1)
    if hex_digits is None or hex_digits == "00":
        raise _Invalid
    char = chr(int(hex_digits, 16))
    return char if char in _UNRESERVED else match.group(0)


def _escape(match: re.Match[str]) -> str:
    return "".join(f"%{byte:02X}" for byte in match.group(0).encode("utf-8"))


def normalize_path(raw: str, merge_slashes: bool = True) -> str | None:
    """The canonical form of an origin-form path (``/...``, optionally with ``?query``).

    ``None`` means the request must be refused with 400: the path does not start with ``/``
    or holds a broken or NUL escape.
    """
    path, sep, query = raw.partition("?")
    if not path.startswith("/"):
        return None
    if odd_path_char(path) is None and "//" not in path and "/." not in path:
        return raw
    if "%" in path:
        try:
            path = _ESCAPE.sub(_decode_unreserved, path)
        except _Invalid:
            return None
    if "\x00" in path:
        return None
    path = _MUST_ESCAPE.sub(_escape, path.replace("\\", "/"))
    return _remove_dot_segments(path, merge_slashes) + sep + query


def _remove_dot_segments(path: str, merge_slashes: bool) -> str:
    segments = path.split("/")
    last = len(segments) - 1
    out: list[str] = []
    for index in range(1, last + 1):
        segment = segments[index]
        if segment == "." or segment == "..":
            if segment == ".." and out:
                out.pop()
            if index == last:
                out.append("")  # "/a/." and "/a/b/.." name a directory: keep the slash
        else:
            out.append(segment)
    if merge_slashes and "" in out[:-1]:
        # Envoy merges after normalizing, so "/a//../b" is "/a/b", not "/b".
        trailing = out[-1] == ""
        out = [segment for segment in out if segment]
        if trailing and out:
            out.append("")
    return "/" + "/".join(out)
