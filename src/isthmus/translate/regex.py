"""Regexes with RE2 semantics, as Istio/Envoy evaluate them (google-re2)."""

from __future__ import annotations

from typing import Any

import re2


def compile_re2(pattern: str) -> tuple[Any | None, str]:
    """(compiled, "") or (None, why it does not compile under RE2)."""
    try:
        return re2.compile(pattern), ""
    except Exception as exc:  # re2 raises its own error type; any failure means invalid
        return None, str(exc) or "invalid regular expression"
