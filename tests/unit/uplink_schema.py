"""A tiny JSON Schema (2020-12) checker for the subset gateway/uplink/schemas/ uses.

jsonschema is not in the venv (asked for in the report); this covers type, const, enum, required,
properties, additionalProperties, items, prefixItems, minItems, min/maxLength, pattern, minimum.
An unknown keyword raises, so a schema cannot silently use more than this checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SCHEMAS = Path(__file__).resolve().parents[2] / "gateway" / "uplink" / "schemas"
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
_IGNORED = {"$schema", "$id", "title", "description"}
_KNOWN = _IGNORED | {"type", "const", "enum", "required", "properties", "additionalProperties", "items", "prefixItems",
                     "minItems", "minLength", "maxLength", "pattern", "minimum"}


def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.json").read_text())


def errors(schema: dict[str, Any], value: Any, path: str = "$") -> list[str]:
    unknown = set(schema) - _KNOWN
    if unknown:
        raise ValueError(f"schema keyword(s) not supported by the checker: {sorted(unknown)}")
    out: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [f"{path}: {value!r} is not of type {types}"]
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        out.append(f"{path}: {value!r} != {schema['const']!r}")
    if "enum" in schema and not any(value == e and type(value) is type(e) for e in schema["enum"]):
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", 1 << 60):
            out.append(f"{path}: length {len(value)} out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and _TYPES["number"](value) and value < schema["minimum"]:
        out.append(f"{path}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        out += [f"{path}: missing {k}" for k in schema.get("required", []) if k not in value]
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k, v in value.items():
            if k in props:
                out += errors(props[k], v, f"{path}.{k}")
            elif extra is False:
                out.append(f"{path}: unexpected key {k}")
            elif isinstance(extra, dict):
                out += errors(extra, v, f"{path}.{k}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than {schema['minItems']} items")
        prefix = schema.get("prefixItems", [])
        for i, v in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if sub is not None:
                out += errors(sub, v, f"{path}[{i}]")
    return out


TOPIC_SCHEMA = {"alarm": "record", "event": "record", "telemetry": "telemetry", "status": "status", "reply": "reply",
                "cmd": "command", "relay": "command"}


def check_message(topic: str, payload: bytes) -> list[str]:
    """Errors of one MQTT message against the schema its topic (cg/v1/<gw>/<leaf>) names."""
    leaf = topic.rsplit("/", 1)[-1]
    return errors(load(TOPIC_SCHEMA[leaf]), json.loads(payload))
