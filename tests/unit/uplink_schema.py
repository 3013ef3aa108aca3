"""The uplink's JSON Schemas (gateway/uplink/schemas/, draft 2020-12) applied with jsonschema: every message the
tests see on the broker is checked against the schema its topic names (docs/uplink.md)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parents[2] / "gateway" / "uplink" / "schemas"
TOPIC_SCHEMA = {"alarm": "record", "event": "record", "telemetry": "telemetry", "status": "status", "reply": "reply", "table": "table",
                "cmd": "command", "relay": "command"}


@functools.cache
def _schema_text(name: str) -> str:
    return (SCHEMAS / f"{name}.json").read_text()


def load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(_schema_text(name))
    Draft202012Validator.check_schema(schema)  # a typo in a schema is an error, not a schema that accepts all
    return schema


@functools.cache
def _registry() -> Registry:
    """Every schema by its $id, so one can $ref another (telemetry.json's v2 `tab` is table.json's table)."""
    docs = [json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.json"))]
    return Registry().with_resources((d["$id"], Resource.from_contents(d)) for d in docs)


def errors(schema: dict[str, Any], value: Any) -> list[str]:
    """Every violation, as `$.path: message`; [] when `value` is valid."""
    return [f"{e.json_path}: {e.message}" for e in Draft202012Validator(schema, registry=_registry()).iter_errors(value)]


def check_message(topic: str, payload: bytes) -> list[str]:
    """Errors of one MQTT message against the schema its topic (cg/v1/<gw>/<leaf>) names."""
    leaf = topic.rsplit("/", 1)[-1]
    return errors(load(TOPIC_SCHEMA[leaf]), json.loads(payload))
