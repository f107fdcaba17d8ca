"""Shared pieces of the typed resource model: the strict base class and value types.

Resources are pydantic models: immutable, camelCase on the wire, and unknown fields rejected
(the error suggests the closest known name).  Value types carry their own error messages so a
user reads ``expected an integer ≥ 0, got "20%"`` instead of pydantic's internals.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError


class Model(BaseModel):
    """Base of every resource part: frozen, strict about unknown fields, camelCase aliases."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        hide_input_in_errors=True,
    )


class LenientModel(Model):
    """For Kubernetes parts isthmus reads only a little of (Pod spec, status): extra keys kept."""

    model_config = ConfigDict(extra="allow")


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("isthmus", message)


def _int_in(low: int, high: int | None, what: str) -> BeforeValidator:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise fail(f"expected {what}, got {_describe(value)}")
        if isinstance(value, str):
            if not re.fullmatch(r"[0-9]+", value.strip()):
                raise fail(f"expected {what}, got {_describe(value)}")
            number = int(value)
        else:
            number = value
        if number < low or (high is not None and number > high):
            raise fail(f"expected {what}, got {number}")
        return number

    return BeforeValidator(check)


NonNegInt = Annotated[int, _int_in(0, None, "an integer ≥ 0")]
PositiveInt = Annotated[int, _int_in(1, None, "an integer ≥ 1")]
PortNumber = Annotated[int, _int_in(1, 65535, "a port number between 1 and 65535")]
Weight = NonNegInt

_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_DURATION_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(value: Any) -> float:
    """Seconds from a Go/protobuf duration such as ``10s``, ``1.5s``, ``100ms``, ``1h30m``."""
    if not isinstance(value, str) or not value:
        raise fail(f'expected a duration such as "10s" or "250ms", got {_describe(value)}')
    text = value.strip()
    pos = 0
    total = 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise fail(f'expected a duration such as "10s" or "250ms", got {_describe(value)}')
        total += float(m.group(1)) * _DURATION_SECONDS[m.group(2)]
        pos = m.end()
    return total


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _percent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"expected a percentage between 0 and 100, got {_describe(value)}")
    if not 0 <= value <= 100:
        raise fail(f"expected a percentage between 0 and 100, got {value}")
    return float(value)


Percentage = Annotated[float, BeforeValidator(_percent)]


def enum_of(*choices: str, upper: bool = False) -> BeforeValidator:
    """A string among ``choices``; ``upper`` accepts any case, as Istio does for protocols."""

    allowed = frozenset(choices)

    def check(value: Any) -> str:
        if isinstance(value, str):
            candidate = value.upper() if upper else value
            if candidate in allowed:
                return candidate
        listed = ", ".join(choices)
        raise fail(f"expected one of {listed}; got {_describe(value)}")

    return BeforeValidator(check)


def _string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise fail(f"expected a string, got {_describe(value)}")
    return str(value)


Str = Annotated[str, BeforeValidator(_string)]
"""A string; YAML numbers (``version: 1``) are accepted as their text, like Kubernetes labels."""


def _int_or_string(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise fail(f"expected a port number or name, got {_describe(value)}")
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


IntOrString = Annotated[int | str, BeforeValidator(_int_or_string)]
