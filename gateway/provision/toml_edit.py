"""Set a few keys in a TOML file's text while keeping everything else: comments, order, other keys.

The installer's gateway.toml is documented line by line (config/gateway.example.toml); rewriting it
from a parsed dict would throw the documentation away, so provisioning edits lines instead and the
caller re-parses the result to prove the edit did what it meant (`check_values`).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from gateway.errors import ConfigError

# A value on one line: a basic string, a literal string, or anything up to a comment.
_VALUE = r"""("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^#\n]*?)"""
_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")


def toml_value(value: str | int | float | bool) -> str:
    """One scalar as TOML. JSON string escapes are valid TOML basic-string escapes (TOML 1.0 §String),
    except that TOML also forbids a raw DEL, which JSON leaves alone."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _table_span(lines: list[str], table: str) -> tuple[int, int] | None:
    """(index of the header line, index one past the table's last line), or None if absent."""
    start = None
    for i, line in enumerate(lines):
        m = _HEADER.match(line)
        if start is None:
            if m and m.group(1) == table:
                start = i
        elif m or line.lstrip().startswith("[["):
            return start, i
    return (start, len(lines)) if start is not None else None


def _set_one(lines: list[str], table: str, key: str, value: str) -> None:
    span = _table_span(lines, table)
    if span is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines.extend([f"[{table}]", f"{key} = {value}"])
        return
    start, end = span
    # An active `key = ...` line first; else a documented but commented-out one (`# ca_file = "..."
    # # why`), activated in place so the documentation stays next to it. Trailing comments are kept.
    for pattern in (rf"^(\s*)({re.escape(key)}\s*=\s*){_VALUE}(\s*#.*)?$", rf"^(\s*)#\s*({re.escape(key)}\s*=\s*){_VALUE}(\s*#.*)?$"):
        regex = re.compile(pattern)
        for i in range(start + 1, end):
            m = regex.match(lines[i])
            if m:
                lines[i] = f"{m.group(1)}{m.group(2)}{value}{m.group(4) or ''}"
                return
    lines.insert(start + 1, f"{key} = {value}")


def set_keys(text: str, table: str, values: Mapping[str, str | int | float | bool]) -> str:
    """Return `text` with `[table] key = value` set for each item, everything else untouched."""
    lines = text.splitlines()
    for key, value in values.items():
        _set_one(lines, table, key, toml_value(value))
    return "\n".join(lines) + "\n"


def check_values(text: str, source: str, expected: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Parse `text` and raise ConfigError unless every expected[table][key] came out as written
    (it would not if the file spells a table in a way the line editor does not handle, e.g. inline)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source}: not valid TOML after provisioning ({exc}); fix the file by hand"]) from None
    problems = []
    for table, keys in expected.items():
        section = doc.get(table, {})
        for key, value in keys.items():
            if not isinstance(section, dict) or section.get(key) != value:
                problems.append(f"{source}: could not set {table}.{key}; set it by hand to {toml_value(value)}")
    if problems:
        raise ConfigError(problems)
    return doc
