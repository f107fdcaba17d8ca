"""A closed parser is freed by reference counting alone: no cycle per connection is left for
the garbage collector."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from isthmus.proto.http1 import RequestParser, ResponseParser


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_closed_request_parser_is_freed_at_once(no_collector: None) -> None:
    parser = RequestParser()
    parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\n")
    ref = weakref.ref(parser)
    parser.close()
    assert parser.feed(b"Host: a\r\n\r\n") == []  # closed: data is ignored
    del parser
    assert ref() is None


def test_a_closed_response_parser_is_freed_at_once(no_collector: None) -> None:
    parser = ResponseParser("GET")
    parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    ref = weakref.ref(parser)
    parser.close()
    del parser
    assert ref() is None


def test_without_close_the_parsers_would_wait_for_the_collector(no_collector: None) -> None:
    """What the two tests above guard against (so they cannot pass vacuously)."""
    parser = RequestParser()
    ref = weakref.ref(parser)
    del parser
    assert ref() is not None
    gc.collect()
    assert ref() is None
