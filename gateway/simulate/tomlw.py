"""A minimal TOML writer for the configs the simulator generates (strings, numbers, booleans, lists,
tables, arrays of tables). Generated files only: hand-written configs keep their comments elsewhere."""

from __future__ import annotations

import json
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() and k.isascii() else json.dumps(k, ensure_ascii=False)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dumps(doc: dict[str, Any], _prefix: str = "") -> str:
    lines: list[str] = []
    scalars = {k: v for k, v in doc.items() if not isinstance(v, dict) and not _is_table_array(v)}
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in doc.items():
        name = f"{_prefix}{_key(k)}"
        if isinstance(v, dict):
            body = dumps(v, name + ".")
            lines.append(f"\n[{name}]")
            lines.append(body)
        elif _is_table_array(v):
            for item in v:
                lines.append(f"\n[[{name}]]")
                lines.append(dumps(item, name + "."))
    return "\n".join(x for x in lines if x != "").strip() + "\n"
