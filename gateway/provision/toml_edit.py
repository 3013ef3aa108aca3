"""Set a few keys in the installer's gateway.toml while keeping everything else: comments, order, other keys.

The file is documented line by line (config/gateway.example.toml); tomlkit edits it in place and writes
back every byte it was not asked to change (issue 16: a library instead of a hand-written line editor).
The caller re-parses the result with tomllib to prove the edit did what it meant (`check_values`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Comment, Table

from gateway.errors import ConfigError

Scalar = str | int | float | bool


def toml_value(value: Scalar) -> str:
    """One scalar as TOML text (a string as a basic string with TOML escapes)."""
    return tomlkit.item(value).as_string()


def _activate(table: Table, key: str) -> bool:
    """Uncomment a documented `# key = ...  # why` line of `table` in place, so the value lands next to its
    documentation instead of at the table's end; False if the table documents no such key."""
    commented = re.compile(rf"^#\s*({re.escape(key)}\s*=.*)$", re.S)
    for _, item in table.value.body:
        if isinstance(item, Comment) and (m := commented.match(item.trivia.comment)):
            item.trivia.comment = m.group(1)
            return True
    return False


def set_keys(text: str, table: str, values: Mapping[str, Scalar]) -> str:
    """Return `text` with `[table] key = value` set for each item, everything else untouched."""
    try:
        doc = tomlkit.parse(text)
        section = doc.get(table)
        if section is None:
            doc.add(table, tomlkit.table())
        elif isinstance(section, Table) and [k for k in values if k not in section and _activate(section, k)]:
            doc = tomlkit.parse(tomlkit.dumps(doc))  # the uncommented lines become keys
        target = doc[table]
        for key, value in values.items():
            target[key] = value  # tomlkit keeps the line's trailing comment
        return tomlkit.dumps(doc)
    except (TOMLKitError, TypeError) as exc:  # e.g. `table` is not a table in this file
        raise ConfigError([f"cannot set [{table}] {', '.join(values)}: {exc}; set them by hand"]) from None


def check_values(text: str, source: str, expected: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Parse `text` and raise ConfigError unless every expected[table][key] came out as written."""
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
