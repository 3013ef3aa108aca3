"""The configured devices as sheet rows (`gateway commission export`): the hand-over list, and the
template the demo's commissioning script imports back (scripts/commission-demo.sh)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from gateway.model import ResidentCategory

RESIDENT_TEXT = {ResidentCategory.ELDERLY_ALONE: "独居老人", ResidentCategory.DISABLED: "残疾",
                 ResidentCategory.ORDINARY: "普通", ResidentCategory.COMMON_AREA: "公共区域"}
ROLE_TEXT = {"relative": "家属", "guard_room": "门卫", "grid_worker": "网格员", "safety_manager": "安全员"}


def export_rows(config_path: Path, with_keys: bool = False) -> list[dict[str, str]]:
    from gateway.config import load_config, load_credentials

    cfg = load_config(config_path)
    keys = {}
    if with_keys and cfg.uplink.credentials_file:
        keys = load_credentials(cfg.uplink.credentials_file).lora_keys
    contacts = {c.id: c for c in cfg.contacts}
    rows = []
    for d in cfg.devices:
        mine = [contacts[c] for c in d.contacts if c in contacts]
        rows.append({
            "building": d.building, "unit": d.unit, "room": d.room, "id": d.id, "profile": d.profile, "port": d.port,
            "address": str(d.address), "key": keys.get(d.id, ""), "resident": RESIDENT_TEXT[ResidentCategory(d.resident)],
            "contact_name": "；".join(c.name for c in mine), "contact_role": "；".join(ROLE_TEXT.get(str(c.role), str(c.role)) for c in mine),
            "contact_phone": "；".join(c.phone for c in mine),
        })
    return rows


def without_devices(text: str) -> str:
    """A config's text with its [[devices]] tables and relatives' [[contacts]] removed (the demo starts
    from the gateway's own sections and imports the rest from the sheet)."""
    out: list[str] = []
    skipping = False
    for block in text.split("\n\n"):
        stripped = block.strip()
        if stripped.startswith("[[devices]]") or (stripped.startswith("[[contacts]]") and 'role = "relative"' in block):
            skipping = True
            continue
        if stripped.startswith("[") and not stripped.startswith("[[devices]]"):
            skipping = False
        if not skipping:
            out.append(block)
    result = "\n\n".join(out)
    tomllib.loads(result)  # still valid TOML, or the caller hears about it
    return result
