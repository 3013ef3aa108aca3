"""Cross-checks of `[[rules]]` and `[notify]` against devices, profiles and contacts, with precise messages.

Called from gateway.config.check.cross_check: `check_rules(cfg, file, errors)`.
"""

from __future__ import annotations

import string
import zoneinfo
from typing import Any

from gateway.actions.schema import Notify
from gateway.actions.sms import PLACEHOLDERS  # one list, beside the renderer that fills them
from gateway.model import ContactRole, DeviceType
from gateway.rules.schema import CLEARED_BY, Condition, CorrelateRule, EventRule, InactivityRule, Match, RateRule, ThresholdRule


def profile_field_names(profile: Any) -> set[str]:
    """Fields a profile can deliver: its declared [fields] and its register names (any protocol table)."""
    names = set(profile.fields)
    for table in (profile.modbus, profile.lora, profile.nbiot):
        for reg in (table or {}).get("registers", []) if isinstance(table, dict) else []:
            if isinstance(reg, dict) and isinstance(reg.get("name"), str):
                names.add(reg["name"])
    return names


def _check_match(m: Match, where: str, cfg: Any, errors: list[str]) -> list[Any]:
    """Report unknown ids/profiles; return the matched device entries."""
    ids = {d.id for d in cfg.devices}
    for j, dev in enumerate(m.devices):
        if dev not in ids:
            errors.append(f"{where}.devices[{j}]: {dev!r} is not a device id (known: {', '.join(sorted(ids)) or 'none'})")
    for j, prof in enumerate(m.profiles):
        if prof not in cfg.profiles:
            errors.append(f"{where}.profiles[{j}]: {prof!r} is not a known profile (known: {', '.join(sorted(cfg.profiles)) or 'none'})")
    if not (m.devices or m.types or m.profiles):
        return list(cfg.devices)
    types = set(m.types)
    return [
        d for d in cfg.devices
        if d.id in m.devices or d.profile in m.profiles or (d.profile in cfg.profiles and cfg.profiles[d.profile].type in types)
    ]


def _check_field(field: str, matched: list[Any], where: str, cfg: Any, errors: list[str]) -> None:
    profiles = sorted({d.profile for d in matched if d.profile in cfg.profiles})
    if profiles and not any(field in profile_field_names(cfg.profiles[p]) for p in profiles):
        errors.append(f"{where}.field: {field!r} is not a field of the matched profiles ({', '.join(profiles)})")


def _check_condition(c: Condition, where: str, cfg: Any, errors: list[str]) -> None:
    matched = _check_match(c, where, cfg, errors)
    if (c.event is None) == (c.field is None):
        errors.append(f"{where}: give exactly one of `event` (an event kind) or `field` (a reading test)")
    elif c.field is not None:
        _check_field(c.field, matched, where, cfg, errors)


def check_rules(cfg: Any, file: str, errors: list[str]) -> None:
    """Append every rule/notify problem to `errors` (cfg: gateway.config.schema.Config)."""
    notify: Notify = cfg.notify or Notify()
    seen: dict[str, int] = {}
    for i, rule in enumerate(cfg.rules):
        where = f"{file}: rules[{i}]"
        if rule.id in seen:
            errors.append(f"{where}.id: {rule.id!r} duplicates rules[{seen[rule.id]}]")
        seen.setdefault(rule.id, i)
        matched = _check_match(rule, where, cfg, errors)
        if "sounder" in rule.actions and not notify.sounder.device:
            errors.append(f"{where}.actions: 'sounder' needs [notify.sounder] device = the relay box id")
        if "call" in rule.actions and not any("call" in t.actions for t in notify.tiers):
            errors.append(f"{where}.actions: 'call' needs a [[notify.tiers]] whose actions include \"call\"")
        if isinstance(rule, EventRule) and rule.auto_clear:
            no_clear = [str(k) for k in rule.events if k not in CLEARED_BY]
            if no_clear:
                errors.append(
                    f"{where}.auto_clear: events {', '.join(no_clear)} have no clearing event; "
                    f"set auto_clear = false (clear by acknowledge + clear command)"
                )
        if isinstance(rule, ThresholdRule):
            _check_field(rule.field, matched, where, cfg, errors)
            if rule.clear is not None:
                high = rule.op in (">", ">=")
                if (high and rule.clear > rule.limit) or (not high and rule.clear < rule.limit):
                    side = "at or below" if high else "at or above"
                    errors.append(f"{where}.clear: {rule.clear!r} must be {side} the limit {rule.limit!r} for op {rule.op!r} (hysteresis)")
        if isinstance(rule, RateRule):
            _check_field(rule.field, matched, where, cfg, errors)
        if isinstance(rule, CorrelateRule):
            _check_condition(rule.a, f"{where}.a", cfg, errors)
            _check_condition(rule.b, f"{where}.b", cfg, errors)
        if isinstance(rule, InactivityRule):
            _check_inactivity(rule, where, cfg, errors)
    _check_notify(notify, cfg, file, errors, uses_sms=any("sms" in r.actions or "call" in r.actions for r in cfg.rules))


def _check_inactivity(rule: InactivityRule, where: str, cfg: Any, errors: list[str]) -> None:
    """Sources must name what they measure, and the devices must say which flat they are in (issue 22)."""
    try:
        zoneinfo.ZoneInfo(rule.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        errors.append(f"{where}.timezone: {rule.timezone!r} is not a known time zone (e.g. 'Asia/Shanghai')")
    for j, src in enumerate(rule.sources):
        at = f"{where}.sources[{j}]"
        if not (src.devices or src.types or src.profiles):
            errors.append(f"{at}: name the activity devices (devices, types or profiles); every device would count")
        matched = _check_match(src, at, cfg, errors)
        if src.activity in ("change", "volume"):
            if src.field is None:
                errors.append(f"{at}.field: activity {src.activity!r} needs the reading field to watch")
            else:
                _check_field(src.field, matched, at, cfg, errors)
        for d in matched:
            if not d.location.room:
                errors.append(f"{at}: device {d.id!r} has no location.room: the rule cannot tell whose flat it is in")


def _check_notify(notify: Notify, cfg: Any, file: str, errors: list[str], uses_sms: bool) -> None:
    try:
        zoneinfo.ZoneInfo(notify.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        errors.append(f"{file}: notify.timezone: {notify.timezone!r} is not a known time zone (e.g. 'Asia/Shanghai')")
    texts = {f"templates.{n}": getattr(notify.templates, n) for n in ("raised", "escalated")}
    texts.update({"call.message": notify.call.message, "call.prompt": notify.call.prompt})  # issue 22
    for name, text in texts.items():
        try:
            used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
        except ValueError as exc:
            errors.append(f"{file}: notify.{name}: {exc}")
            continue
        unknown = sorted(used - PLACEHOLDERS)
        if unknown:
            errors.append(
                f"{file}: notify.{name}: unknown placeholder {{{unknown[0]}}} (allowed: {', '.join(sorted(PLACEHOLDERS))})"
            )
    snd = notify.sounder
    if snd.device:
        dev = next((d for d in cfg.devices if d.id == snd.device), None)
        if dev is None:
            errors.append(f"{file}: notify.sounder.device: {snd.device!r} is not a device id")
        elif dev.profile in cfg.profiles:
            prof = cfg.profiles[dev.profile]
            if prof.type != DeviceType.RELAY_BOX:
                errors.append(f"{file}: notify.sounder.device: {snd.device!r} is a {prof.type} device, not a relay_box")
            outputs = set(((prof.modbus or {}).get("outputs") or {}))
            for key in ("sounder_outputs", "strobe_outputs"):
                for j, out in enumerate(getattr(snd, key)):
                    if out not in outputs:
                        errors.append(
                            f"{file}: notify.sounder.{key}[{j}]: {out!r} is not an output of profile {dev.profile!r} "
                            f"(outputs: {', '.join(sorted(outputs)) or 'none'})"
                        )
    trouble_dev = notify.trouble.device or snd.device
    if trouble_dev and notify.trouble.outputs:
        dev = next((d for d in cfg.devices if d.id == trouble_dev), None)
        if dev is None:
            errors.append(f"{file}: notify.trouble.device: {trouble_dev!r} is not a device id")
        elif dev.profile in cfg.profiles:
            outputs = set(((cfg.profiles[dev.profile].modbus or {}).get("outputs") or {}))
            for j, out in enumerate(notify.trouble.outputs):
                if out not in outputs:
                    errors.append(
                        f"{file}: notify.trouble.outputs[{j}]: {out!r} is not an output of profile {dev.profile!r} "
                        f"(outputs: {', '.join(sorted(outputs)) or 'none'}; set outputs = [] if no fault lamp is fitted)"
                    )
    last = -1.0
    roles_present = {c.role for c in cfg.contacts}
    for i, tier in enumerate(notify.tiers):
        if tier.after_s <= last:
            errors.append(f"{file}: notify.tiers[{i}].after_s: {tier.after_s!r} must be later than the tier before ({last!r})")
        last = tier.after_s
        for j, role in enumerate(tier.roles):
            # Relatives come from each device's own contacts; every other role must reach someone
            # (once some rule sends SMS: a gateway without SMS rules needs no contacts at all).
            if uses_sms and role != ContactRole.RELATIVE and role not in roles_present:
                errors.append(f"{file}: notify.tiers[{i}].roles[{j}]: no contact has role {str(role)!r}")
