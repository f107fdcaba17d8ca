"""normalize_path: Envoy's normalize_path + merge_slashes, as a table."""

from __future__ import annotations

import pytest

from isthmus.proto.http1 import normalize_path

CASES = [
    # already canonical: returned as is
    ("/", "/"),
    ("/index.html", "/index.html"),
    ("/a/b/", "/a/b/"),
    ("/a/.hidden/..b/c.d", "/a/.hidden/..b/c.d"),
    ("/api/v1;matrix=1/x:y@z", "/api/v1;matrix=1/x:y@z"),
    # dot-segments (RFC 3986 5.2.4)
    ("/a/./b/../c", "/a/c"),
    ("/a/b/c/./../../g", "/a/g"),
    ("/..", "/"),
    ("/../a", "/a"),
    ("/../../a/../..", "/"),
    ("/.", "/"),
    ("/./", "/"),
    ("/a/.", "/a/"),
    ("/a/..", "/"),
    ("/a/b/..", "/a/"),
    ("/a/b/../", "/a/"),
    # slashes merged (after dot-segments, as Envoy orders them)
    ("//a///b", "/a/b"),
    ("//", "/"),
    ("/a//", "/a/"),
    ("/a//../b", "/a/b"),
    ("/a//b/..", "/a/"),
    # percent-decoding of unreserved characters only
    ("/%61", "/a"),
    ("/%41%7a%30%2D%2e%5F%7E", "/Az0-._~"),
    ("/%2F", "/%2F"),
    ("/%2f", "/%2f"),
    ("/a%2Fb/../c", "/c"),
    ("/%25", "/%25"),
    ("/%252e%252e/x", "/%252e%252e/x"),
    ("/%3F%23", "/%3F%23"),
    ("/%2e%2e/x", "/x"),
    ("/a/%2E%2e/b", "/b"),
    ("/%2e%2e%2fadmin", "/..%2fadmin"),
    # Chromium's extras: backslash is a slash, unsafe characters escaped
    ("/a\\b", "/a/b"),
    ("/\\..\\admin", "/admin"),
    ('/a"b<c>d', "/a%22b%3Cc%3Ed"),
    ("/{x}|^`", "/%7Bx%7D%7C%5E%60"),
    ("/caf\u00e9", "/caf%C3%A9"),
    # the query is never touched
    ("/a/../b?x=/../y&z=%61", "/b?x=/../y&z=%61"),
    ("/a?", "/a?"),
    # refused: not origin-form, broken or NUL escapes
    ("", None),
    ("a/b", None),
    ("*", None),
    ("http://a/b", None),
    ("/%", None),
    ("/%4", None),
    ("/%zz", None),
    ("/%00", None),
    ("/a%2", None),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_normalize_path(raw: str, expected: str | None) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("//a///b", "//a///b"), ("/a//b/..", "/a//"), ("/a//../b", "/a/b"), ("/%61//", "/a//")],
)
def test_without_merge_slashes(raw: str, expected: str) -> None:
    assert normalize_path(raw, merge_slashes=False) == expected


def test_normalizing_twice_changes_nothing() -> None:
    for raw, expected in CASES:
        if expected is not None:
            assert normalize_path(expected) == expected, raw
