"""Cross-checks between sections, in one place: references resolve, ids and addresses are unique,
each device's profile fits its port's driver and its address is valid on that bus."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.config import schema as s


def cross_check(
    cfg: s.Config, file: str, devices: list[Any], errors: list[str],
    broken_ports: AbstractSet[str] = frozenset(), broken_contacts: AbstractSet[str] = frozenset(),
) -> dict[str, Any]:
    """Append every cross-section problem to `errors`; return the profiles' driver-typed sections.

    References to ports or contacts that exist but failed validation are not reported again.
    """
    from drivers.registry import DRIVERS
    from gateway.config.load import convert

    _check_uplink(cfg.uplink, file, errors)

    # Profiles: the [<protocol>] table is validated by a driver serving that protocol.
    profile_specs: dict[str, Any] = {}
    by_protocol = {spec.protocol: spec for spec in DRIVERS.values()}
    for name, prof in cfg.profiles.items():
        spec = by_protocol.get(prof.protocol)
        section = getattr(prof, prof.protocol)
        if spec is None or spec.profile_schema is None:
            continue
        if section is None:
            errors.append(f"profiles/{name}.toml: {prof.protocol}: required table [{prof.protocol}] is missing")
            continue
        typed = convert(f"profiles/{name}.toml", prof.protocol, section, spec.profile_schema, errors)
        if typed is not None:
            profile_specs[name] = typed

    contact_ids: set[str] = set()
    for i, c in enumerate(cfg.contacts):
        if c.id in contact_ids:
            errors.append(f"{file}: contacts[{i}].id: {c.id!r} is used by another contact")
        contact_ids.add(c.id)

    seen_ids: dict[str, int] = {}
    seen_addr: dict[tuple[str, Any], str] = {}
    for i, d in enumerate(devices):
        if d is None:
            continue
        where = f"{file}: devices[{i}]"
        if d.id in seen_ids:
            errors.append(f"{where}.id: {d.id!r} duplicates devices[{seen_ids[d.id]}]")
        seen_ids.setdefault(d.id, i)
        dev_prof = cfg.profiles.get(d.profile)
        if dev_prof is None:
            known = ", ".join(sorted(cfg.profiles)) or "none found"
            errors.append(f"{where}.profile: {d.profile!r} is not a known profile (known: {known})")
        port = cfg.ports.get(d.port)
        if port is None and d.port not in broken_ports:
            known = ", ".join(sorted(cfg.ports)) or "none configured"
            errors.append(f"{where}.port: {d.port!r} is not a configured port (configured: {known})")
        if dev_prof is not None and port is not None:
            spec = DRIVERS[port[0]]
            if spec.protocol != dev_prof.protocol:
                errors.append(
                    f"{where}.profile: {d.profile!r} is a {dev_prof.protocol} device but port {d.port!r} "
                    f"runs the {port[0]} driver ({spec.protocol})"
                )
        if port is not None:
            problem = DRIVERS[port[0]].check_address(d.address)
            if problem:
                errors.append(f"{where}.address: {problem}")
            elif (d.port, d.address) in seen_addr:
                errors.append(
                    f"{where}.address: {d.address!r} on port {d.port!r} is already used by device "
                    f"{seen_addr[(d.port, d.address)]!r}"
                )
            seen_addr.setdefault((d.port, d.address), d.id)
        for j, ref in enumerate(d.contacts):
            if ref not in contact_ids and ref not in broken_contacts:
                errors.append(f"{where}.contacts[{j}]: {ref!r} is not a contact id (known: {', '.join(sorted(contact_ids)) or 'none'})")

    from gateway.rules.check import check_rules

    check_rules(cfg, file, errors)
    return profile_specs


def _check_uplink(up: s.Uplink, file: str, errors: list[str]) -> None:
    url = urlsplit(up.broker_url)
    if url.scheme not in ("mqtt", "mqtts") or not url.hostname:
        errors.append(f"{file}: uplink.broker_url: {up.broker_url!r} is not mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
    else:
        try:
            url.port
        except ValueError:
            errors.append(f"{file}: uplink.broker_url: {up.broker_url!r} has an invalid port")
        if url.username or url.password:
            errors.append(f"{file}: uplink.broker_url: must not contain a user or password (put them in the credentials file)")
    if bool(up.cert_file) != bool(up.key_file):
        errors.append(f"{file}: uplink.cert_file/key_file: give both the client certificate and its key, or neither")
    if (up.cert_file or up.ca_file) and url.scheme == "mqtt":
        errors.append(f"{file}: uplink.broker_url: TLS files are set but the URL is mqtt:// (use mqtts://)")
    if up.reconnect_base_s > up.reconnect_cap_s:
        errors.append(f"{file}: uplink.reconnect_base_s: {up.reconnect_base_s!r} is above reconnect_cap_s ({up.reconnect_cap_s!r})")


def uplink_warnings(up: s.Uplink, file: str) -> list[str]:
    """Problems the daemon starts with anyway (issue 15 item 3): a client certificate not yet signed is the
    normal state of a freshly provisioned gateway; the uplink is down with that reason, the alarms run."""
    return [f"{file}: uplink.{key}: {getattr(up, key)!r} does not exist (the uplink stays down until it does)"
            for key in ("ca_file", "cert_file", "key_file") if getattr(up, key) and not Path(getattr(up, key)).is_file()]
