"""Turn msgspec validation errors into the messages installers read:
    gateway.toml: devices[3].address: 300 is not a Modbus slave id (1..247)
naming the file, the key path, the value and what is allowed (the credentials file's values never echoed).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")
_MISSING = re.compile(r"Object missing required field `(?P<key>[^`]+)`")
_BOUND = re.compile(r"Expected `(?P<type>\w+)` (?P<op>>=|<=|>|<) (?P<bound>\S+)")


def _lookup(raw: Any, path: str) -> Any:
    cur = raw
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        key, idx = part
        try:
            cur = cur[int(idx)] if idx else cur[key]
        except (KeyError, IndexError, TypeError):
            return None
    return cur


def _field_type(schema: Any, path: str) -> Any:
    """The annotated type at `path` inside `schema` (struct fields, list items, dict values)."""
    import typing

    cur = schema
    for key, idx in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        while typing.get_origin(cur) is typing.Annotated:
            cur = typing.get_args(cur)[0]
        if typing.get_origin(cur) in (typing.Union, __import__("types").UnionType):
            args = [a for a in typing.get_args(cur) if a is not type(None)]
            cur = args[0] if len(args) == 1 else cur
        if idx:
            params = typing.get_args(cur)
            cur = params[0] if params else None
        elif hasattr(cur, "__struct_fields__"):
            cur = typing.get_type_hints(cur, include_extras=True).get(key)
        elif typing.get_origin(cur) is dict:
            cur = typing.get_args(cur)[1]
        else:
            return None
    while typing.get_origin(cur) is typing.Annotated:
        cur = typing.get_args(cur)[0]
    return cur


def _choices(schema: Any, path: str) -> str:
    import enum
    import typing

    t = _field_type(schema, path)
    if typing.get_origin(t) in (typing.Union, __import__("types").UnionType):
        t = next((a for a in typing.get_args(t) if a is not type(None)), None)
    if typing.get_origin(t) is typing.Literal:
        return ", ".join(repr(a) for a in typing.get_args(t))
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return ", ".join(repr(m.value) for m in t)
    return ""


_EXPECTED = re.compile(r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`")


def _allowed(schema: type | None, path: str) -> str:
    """The allowed keys of the struct at `path`, for 'unknown key' messages."""
    if schema is None or not hasattr(schema, "__struct_fields__"):
        return ""
    return ", ".join(schema.__struct_fields__)


def format_validation(
    file: str, prefix: str, exc: msgspec.ValidationError, raw: Any, schema: type | None, redact: bool = False
) -> str:
    """Turn a msgspec ValidationError into `file: path: value is wrong (what is allowed)`.

    With `redact` (the credentials file) the offending value is never echoed.
    """
    m = _AT.match(str(exc))
    msg, path = (m.group("msg"), m.group("path") or "") if m else (str(exc), "")
    where = (prefix + path).lstrip(".") if prefix else path.lstrip(".")
    if u := _UNKNOWN.match(msg):
        key = f"{where}.{u.group('key')}" if where else u.group("key")
        target = schema if not path else None
        allowed = _allowed(target, path)
        return f"{file}: {key}: unknown key" + (f" (allowed: {allowed})" if allowed else "")
    if u := _MISSING.match(msg):
        key = f"{where}.{u.group('key')}" if where else u.group("key")
        return f"{file}: {key}: required key is missing"
    value = "<redacted>" if redact else _lookup(raw, path)
    if b := _BOUND.match(msg):
        return f"{file}: {where}: {value!r} is out of range (must be {b.group('op')} {b.group('bound')})"
    if msg.startswith("Invalid enum value"):
        choices = _choices(schema, path)
        return f"{file}: {where}: {value!r} is not allowed" + (f" (one of: {choices})" if choices else "")
    if e := _EXPECTED.match(msg):
        return f"{file}: {where}: {value!r} is a {e.group('got')}, expected {e.group('want')}"
    if msg.startswith("Expected `str` matching regex"):
        return f"{file}: {where}: {value!r} has the wrong format (must match {msg.split('regex ', 1)[1]})"
    return f"{file}: {where}: {value!r}: {msg}"
