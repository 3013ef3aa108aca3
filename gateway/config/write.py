"""Writing a config document as TOML the way people write ours (config/gateway.example.toml): tables as
`[name]` sections and every array of tables (`[[contacts]]`, `[[devices]]`, `[[rules]]`) as `[[name]]`
blocks; tomli_w writes the values.

tomli_w >= 1.1 writes short arrays of tables inline (`contacts = [{...}, ...]`); TOML then forbids any later
`[[contacts]]`, so a generated or fleet-patched config could no longer take a commissioning import
(gateway/commission/importer.py appends its own `[[contacts]]` and `[[devices]]`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from tomli_w import dumps

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps_config(doc: dict[str, Any]) -> str:
    return "\n\n".join(_sections("", doc, aot=False)) + "\n"


def _sections(header: str, table: dict[str, Any], aot: bool) -> list[str]:
    flat = {k: v for k, v in table.items() if not isinstance(v, dict) and not _aot(v)}
    body = dumps(flat).rstrip("\n")
    head = (f"[[{header}]]" if aot else f"[{header}]") if header else ""
    out = ["\n".join(x for x in (head, body) if x)] if head or body else []
    for key, value in table.items():
        sub = f"{header}.{_key(key)}" if header else _key(key)
        if isinstance(value, dict):
            out += _sections(sub, value, aot=False)
        elif _aot(value):
            for element in value:
                out += _sections(sub, element, aot=True)
    return out


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key, ensure_ascii=False)


def _aot(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(x, dict) for x in value)
