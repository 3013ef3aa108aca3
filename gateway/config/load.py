"""Read a gateway TOML file into a Config, converting section by section so every error is reported
(messages: gateway/config/messages.py)."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from gateway.actions.schema import Notify
from gateway.config import schema as s
from gateway.config.messages import format_validation
from gateway.errors import ConfigError
from gateway.panel.config import PanelSection
from gateway.rules.schema import Rule
from gateway.power.config import PowerSection
from gateway.selfcheck.config import SelfCheckSection
from gateway.uplink.gb26875.config import GB26875Section

if TYPE_CHECKING:
    from drivers.base import DriverSpec

# Sections a later stage adds without a typed Config field yet land in Config.extra, typed by the schema
# registered here (explicit, no scanning): name -> (schema type, is_list). Prefer a typed field on Config.
EXTRA_SECTIONS: dict[str, tuple[type, bool]] = {}
EXTRA_SECTIONS["power"] = (PowerSection, False)  # gateway/power/config.py, issue 23
EXTRA_SECTIONS["selfcheck"] = (SelfCheckSection, False)  # gateway/selfcheck/config.py, issue 23
EXTRA_SECTIONS["panel"] = (PanelSection, False)  # gateway/panel/config.py, issue 24: the local web panel

_CORE = {
    "identity": s.Identity,
    "clock": s.ClockSection,
    "log": s.LogSection,
    "uplink": s.Uplink,
    "store": s.Store,
    "control": s.Control,
}
_TOP_KEYS = {*_CORE, "ports", "devices", "contacts", "profiles_dir", "rules", "notify", "gb26875"}

def convert(file: str, prefix: str, raw: Any, schema: type, errors: list[str], redact: bool = False) -> Any | None:
    """Convert one section; on failure append a formatted message and return None."""
    try:
        return msgspec.convert(raw, schema)
    except msgspec.ValidationError as exc:
        errors.append(format_validation(file, prefix, exc, raw, schema, redact))
        return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except PermissionError:
        raise ConfigError([f"{path}: permission denied"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path.name}: not valid TOML: {exc}"]) from None


def load_profiles(directory: Path, errors: list[str]) -> dict[str, s.Profile]:
    profiles: dict[str, s.Profile] = {}
    if not directory.is_dir():
        errors.append(f"profiles_dir: {str(directory)!r} is not a directory")
        return profiles
    for path in sorted(directory.glob("*.toml")):
        try:
            raw = _read_toml(path)
        except ConfigError as exc:
            errors.extend(exc.problems)
            continue
        prof = convert(f"profiles/{path.name}", "", raw, s.Profile, errors)
        if prof is not None:
            profiles[path.stem] = prof
    return profiles


class _Reader:
    """One config file being read: its raw TOML, its name for messages and the problems found so far.
    Each section has its own method; a section that fails reports and yields None (or is left out)."""

    def __init__(self, file: str, raw: dict[str, Any], errors: list[str]) -> None:
        self.file, self.raw, self.errors = file, raw, errors

    def unknown_sections(self) -> None:
        for key in self.raw:
            if key not in _TOP_KEYS and key not in EXTRA_SECTIONS:
                allowed = ", ".join(sorted(_TOP_KEYS | set(EXTRA_SECTIONS)))
                self.errors.append(f"{self.file}: {key}: unknown section (allowed: {allowed})")

    def core(self) -> dict[str, Any]:
        """The fixed sections; one that failed is replaced by a placeholder so the cross-checks still run and
        report everything else in the same pass (the errors list guarantees the placeholder is never used)."""
        placeholders = {"identity": {"gateway_id": "invalid"}, "uplink": {"broker_url": "mqtt://invalid"}}
        core: dict[str, Any] = {}
        for name, schema in _CORE.items():
            section = self.raw.get(name, {})
            if not isinstance(section, dict):
                self.errors.append(f"{self.file}: {name}: must be a table ([{name}])")
                value = None
            else:
                value = self.section(name, section, schema)
            core[name] = value if value is not None else msgspec.convert(placeholders.get(name, {}), schema)
        return core

    def section(self, where: str, raw: Any, schema: type) -> Any | None:
        return convert(self.file, where, raw, schema, self.errors)

    def ports(self, drivers: Mapping[str, DriverSpec]) -> tuple[dict[str, tuple[str, Any]], set[str]]:
        """[ports.<name>] converted by their driver's schema; and the names present but invalid (already
        reported, so references to them are not)."""
        ports: dict[str, tuple[str, Any]] = {}
        broken: set[str] = set()
        raw_ports = self.raw.get("ports", {})
        if not isinstance(raw_ports, dict):
            self.errors.append(f"{self.file}: ports: must be a table of [ports.<name>] sections")
            raw_ports = {}
        known = ", ".join(sorted(drivers))
        for pname, praw in raw_ports.items():
            where = f"ports.{pname}"
            if not isinstance(praw, dict):
                self.errors.append(f"{self.file}: {where}: must be a table")
                continue
            broken.add(pname)
            praw = dict(praw)
            driver = praw.pop("driver", None)
            if driver is None:
                self.errors.append(f"{self.file}: {where}.driver: required key is missing (one of: {known})")
                continue
            spec = drivers.get(driver)
            if spec is None:
                self.errors.append(f"{self.file}: {where}.driver: {driver!r} is not a known driver (one of: {known})")
                continue
            port = self.section(where, praw, spec.port_schema)
            if port is not None:
                ports[pname] = (driver, port)
                broken.discard(pname)
        return ports, broken

    def array(self, name: str, schema: Any) -> list[Any]:
        """An array of tables; an entry that failed is None (so indexes still line up with the file)."""
        items = self.raw.get(name, [])
        if not isinstance(items, list):
            self.errors.append(f"{self.file}: {name}: must be an array of tables ([[{name}]])")
            return []
        return [self.section(f"{name}[{i}]", item, schema) for i, item in enumerate(items)]

    def optional(self, name: str, schema: type) -> Any | None:
        return self.section(name, self.raw[name], schema) if name in self.raw else None

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (schema, is_list) in EXTRA_SECTIONS.items():
            if name in self.raw:
                out[name] = tuple(self.array(name, schema)) if is_list else self.optional(name, schema)
        return out

    def profiles(self, config_dir: Path) -> dict[str, s.Profile]:
        pdir = self.raw.get("profiles_dir", "profiles")
        if not isinstance(pdir, str):
            self.errors.append(f"{self.file}: profiles_dir: {pdir!r} must be a path string")
            pdir = "profiles"
        return load_profiles((config_dir / pdir).resolve(), self.errors)


def load_config(path: str | os.PathLike[str]) -> s.Config:
    """Load and fully validate a gateway config; raise ConfigError listing every problem."""
    from drivers.registry import DRIVERS  # the registry imports every driver: keep it off import time
    from gateway.config.check import cross_check

    path = Path(path)
    file = path.name
    raw = _read_toml(path)
    errors: list[str] = []
    read = _Reader(file, raw, errors)
    read.unknown_sections()
    core = read.core()
    ports, broken_ports = read.ports(DRIVERS)
    devices = read.array("devices", s.DeviceEntry)
    contacts = read.array("contacts", s.Contact)
    rules = read.array("rules", Rule)
    notify, gb26875 = read.optional("notify", Notify), read.optional("gb26875", GB26875Section)
    # Deprecated aliases for code written before the typed fields (cfg.extra["notify"]): additive change.
    extra = {**{k: v for k, v in (("notify", notify), ("gb26875", gb26875)) if v is not None}, **read.extra()}
    profiles = read.profiles(path.parent)
    cfg = s.Config(
        source=str(path),
        identity=core["identity"],
        clock=core["clock"],
        log=core["log"],
        uplink=core["uplink"],
        store=core["store"],
        control=core["control"],
        ports=ports,
        devices=tuple(d for d in devices if d is not None),
        contacts=tuple(c for c in contacts if c is not None),
        profiles=profiles,
        profile_specs={},
        rules=tuple(r for r in rules if r is not None),
        notify=notify,
        gb26875=gb26875,
        extra=extra,
    )
    broken_contacts = {str(c.get("id")) for c, ok in zip(raw.get("contacts", []) or [], contacts) if ok is None and isinstance(c, dict)}
    profile_specs = cross_check(cfg, file, devices, errors, broken_ports, broken_contacts)
    if errors:
        raise ConfigError(errors)
    return msgspec.structs.replace(cfg, profile_specs=profile_specs)


def load_credentials(path: str | os.PathLike[str]) -> s.Credentials:
    """Load the secrets file, refusing one that group or others can read (or that is a symlink to one)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError([f"{path}: credentials file not found"]) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            [
                f"{path}: credentials file is accessible by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
            ]
        )
    raw = _read_toml(path)
    errors: list[str] = []
    creds: s.Credentials | None = convert(path.name, "", raw, s.Credentials, errors, redact=True)
    if errors or creds is None:
        raise ConfigError(errors)
    return creds
