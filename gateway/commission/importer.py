"""`gateway commission import SHEET --config FILE`: the sheet's devices and contacts go into one marked
section at the end of the gateway config (the hand-written rest, comments included, is left as it
is), the LoRa keys into the credentials file (0600). Re-importing merges by id: a second sheet for
another building adds to the section, the same sheet again changes nothing.

Nothing is written unless the whole result validates (rows, then `load_config` on the merged text).
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.commission.rows import Imported, Validator
from gateway.commission.sheet import read_sheet
from gateway.errors import ConfigError
from gateway.provision.files import write_atomic
from gateway.provision.toml_edit import check_values, set_keys, toml_value

BEGIN = "# ---- BEGIN gateway commission import: devices and contacts from the installers' sheet; re-import to change ----"
END = "# ---- END gateway commission import ----"


@dataclass
class ImportResult:
    devices: int
    contacts: int
    keys: int
    config_changed: bool
    credentials_changed: bool
    credentials_file: str


def split_region(text: str) -> tuple[str, str, str]:
    """(before, region body, after) of the import section; region empty when absent."""
    if BEGIN not in text:
        return text, "", ""
    before, _, rest = text.partition(BEGIN)
    body, _, after = rest.partition(END)
    return before, body, after


def _table(name: str, entry: dict[str, Any]) -> str:
    lines = [f"[[{name}]]"]
    for k, v in entry.items():
        if isinstance(v, list):
            lines.append(f"{k} = [{', '.join(toml_value(x) for x in v)}]")
        else:
            lines.append(f"{k} = {toml_value(v)}")
    return "\n".join(lines)


def render_region(devices: list[dict[str, Any]], contacts: list[dict[str, Any]]) -> str:
    parts = [BEGIN]
    parts += [_table("contacts", c) for c in contacts]
    parts += [_table("devices", d) for d in devices]
    parts.append(END)
    return "\n\n".join(parts) + "\n"


def _merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {e["id"]: e for e in old}
    by_id.update({e["id"]: e for e in new})
    return list(by_id.values())


def _profiles_and_ports(config_path: Path, raw: dict[str, Any]) -> tuple[dict[str, tuple[str, str, bool]], dict[str, str], dict[str, str]]:
    from drivers.registry import DRIVERS
    from gateway.config.load import load_profiles

    errors: list[str] = []
    pdir = raw.get("profiles_dir", "profiles")
    profiles = load_profiles((config_path.parent / str(pdir)).resolve(), errors)
    if errors:
        raise ConfigError(errors)
    prof: dict[str, tuple[str, str, bool]] = {name: (str(p.type), p.protocol, bool((p.lora or {}).get("keyed", True))) for name, p in profiles.items()}
    ports = {name: str(sec.get("driver", "")) for name, sec in (raw.get("ports") or {}).items() if isinstance(sec, dict)}
    drivers: dict[str, str] = {name: spec.protocol for name, spec in DRIVERS.items()}
    return prof, ports, drivers


def validate(sheet: Path, config_path: Path) -> tuple[Imported, str, dict[str, Any]]:
    """Read and check the sheet against the config; raise ConfigError with every problem."""
    text = config_path.read_text(encoding="utf-8")
    before, region, after = split_region(text)
    try:
        raw = tomllib.loads(text)
        outside = tomllib.loads(before + after)
        old = tomllib.loads(region)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{config_path.name}: not valid TOML: {exc}"]) from None
    headers, rows = read_sheet(sheet)
    result = Validator(sheet.name, headers, *_profiles_and_ports(config_path, raw)).run(rows)
    hand = {d.get("id") for d in outside.get("devices", [])}
    for d in result.devices:
        if d["id"] in hand:
            result.errors.append(f"{sheet.name}: device {d['id']} is also written by hand in {config_path.name}: remove one of them")
    if not rows:
        result.errors.append(f"{sheet.name}: no device rows under the header")
    if result.errors:
        raise ConfigError(result.errors)
    return result, before.rstrip("\n") + "\n\n" + render_region(
        _merge(old.get("devices", []), result.devices), _merge(old.get("contacts", []), result.contacts)) + after.lstrip("\n"), raw


def _check_merged(config_path: Path, text: str) -> None:
    """load_config on the merged text, beside the real file (profiles_dir and credentials resolve alike)."""
    from gateway.config import load_config

    fd, tmp = tempfile.mkstemp(prefix=".commission-", suffix=".toml", dir=config_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        load_config(tmp)
    except ConfigError as exc:
        name = Path(tmp).name
        raise ConfigError([p.replace(name, config_path.name) for p in exc.problems]) from None
    finally:
        os.unlink(tmp)


def import_sheet(sheet: Path, config_path: Path, credentials: Path | None = None, dry_run: bool = False) -> ImportResult:
    result, merged, raw = validate(sheet, config_path)
    _check_merged(config_path, merged)
    cred = credentials or (Path(str(raw.get("uplink", {}).get("credentials_file", ""))) if raw.get("uplink", {}).get("credentials_file") else None)
    if result.keys and cred is None:
        raise ConfigError([f"{config_path.name}: uplink.credentials_file is not set: the LoRa keys need a 0600 credentials file "
                           "(gateway provision, or --credentials FILE)"])
    config_changed = cred_changed = False
    if not dry_run:
        config_changed = merged != config_path.read_text(encoding="utf-8")
        if config_changed:
            mode = os.stat(config_path).st_mode & 0o7777
            write_atomic(config_path, merged.encode(), mode)
        if result.keys and cred is not None:
            old = cred.read_text(encoding="utf-8") if cred.exists() else ""
            new = set_keys(old, "lora_keys", result.keys)
            check_values(new, cred.name, {"lora_keys": result.keys})
            cred_changed = write_atomic(cred, new.encode(), 0o600)
    return ImportResult(len(result.devices), len(result.contacts), len(result.keys), config_changed, cred_changed, str(cred or ""))
