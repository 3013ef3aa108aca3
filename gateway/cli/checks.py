"""The commissioning checklist behind `gateway selftest`: one small function per item, each returning
PASS/FAIL lines with the reason and the fix, so a test can break exactly one item."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.cli import render

MIN_FREE_PCT = 10.0  # below this an SD card's wear levelling and journald both suffer
TLS_TIMEOUT_S = 5.0
START_HINT = "sudo systemctl start courtyard-gateway; wait one heartbeat period and run selftest again"


STATUSES = ("pass", "warn", "fail", "skip")


@dataclass
class Check:
    """One line of the checklist. `ok` is False only for FAIL (WARN and SKIP do not block service);
    `status` and `group` were added for the grouped report (docs/CLI.md: fields are only added)."""

    name: str
    ok: bool
    reason: str
    fix: str = ""
    status: str = ""  # pass | warn | fail | skip; derived from ok when not given
    group: str = ""
    fold: str = ""  # lines with the same status and fold text print as one (36 sensors not heard yet)

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "pass" if self.ok else "fail"
        self.ok = self.status != "fail"


def warn(name: str, reason: str, fix: str) -> Check:
    return Check(name, True, reason, fix, status="warn")


def skip(name: str, reason: str, fix: str = "") -> Check:
    return Check(name, True, reason, fix, status="skip")


@dataclass
class Env:
    """Everything the checks look at, gathered once (tests build one with a broken item)."""

    config_path: str
    cfg: Any = None  # gateway.config.Config, None when invalid
    config_problems: list[str] = field(default_factory=list)
    status: dict[str, Any] | None = None  # the daemon's `status`, None when it is not running
    devices: list[dict[str, Any]] | None = None
    ports: list[dict[str, Any]] | None = None
    daemon_error: str = ""
    kernel_synced: Callable[[], bool] | None = None
    disk_usage: Callable[[str], Any] = shutil.disk_usage


def check_config(env: Env) -> list[Check]:
    if env.cfg is None:
        more = f" (+{len(env.config_problems) - 3} more)" if len(env.config_problems) > 3 else ""
        return [Check("config", False, "; ".join(env.config_problems[:3]) + more, f"gateway config check {env.config_path}")]
    c = env.cfg
    return [Check("config", True, f"{Path(env.config_path).name} valid: gateway {c.identity.gateway_id}, "
                                  f"{len(c.ports)} ports, {len(c.devices)} devices")]


def check_daemon(env: Env) -> list[Check]:
    if env.status is None:
        if "permission denied" in env.daemon_error:
            from gateway.cli.status import GROUP_HINT

            return [Check("daemon", False, env.daemon_error, GROUP_HINT)]
        return [Check("daemon", False, env.daemon_error or "not running", START_HINT)]
    return [Check("daemon", True, f"running, up {render.age(env.status.get('uptime_s'))}")]


def check_trouble(env: Env) -> list[Check]:
    """Each fault the daemon's trouble monitor signals in the guard room is a FAIL here too."""
    faults = (env.status or {}).get("trouble")
    if faults is None:
        return []
    return [Check(f"fault {f.get('source')}", False, f"{f.get('reason')} (since {render.wall(f.get('since_wall_s'))})",
                  "gateway status; gateway logs (the guard room's trouble lamp is on until it clears)") for f in faults]


def check_credentials(env: Env) -> list[Check]:
    up = env.cfg.uplink
    files = [(k, getattr(up, k)) for k in ("credentials_file", "key_file") if getattr(up, k)]
    if not files:
        return [Check("credentials", True, "no credentials file or key configured (anonymous broker)")]
    out = []
    for key, path in files:
        try:
            st = os.stat(path)
        except OSError as exc:
            out.append(Check("credentials", False, f"uplink.{key} {path}: {exc.strerror}", "gateway provision (writes it with mode 0600)"))
            continue
        mode = stat.S_IMODE(st.st_mode)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            out.append(Check("credentials", False, f"{path} is mode {mode:04o}: group or others can read the secrets "
                                                   "(the daemon refuses to start)", f"chmod 600 {path}"))
        else:
            out.append(Check("credentials", True, f"{path} mode {mode:04o}, owner uid {st.st_uid}"))
    return out


def _open_serial(path: str) -> None:
    import serial

    # exclusive: the same flock the drivers take, so "opens" also means "nobody else has it".
    serial.Serial(path, timeout=0, exclusive=True).close()


def check_ports(env: Env) -> list[Check]:
    held = {p["port"]: p for p in env.ports or []}
    health = (env.status or {}).get("drivers", {})
    out = []
    for name, (driver, port) in env.cfg.ports.items():
        path, host = getattr(port, "path", None), getattr(port, "host", None)
        label = f"port {name}"
        if path:
            real = os.path.realpath(path)
            where = path if real == path else f"{path} -> {real}"  # the by-id/by-path mapping (protocols §6)
            if name in held:
                detail = (health.get(name) or {}).get("detail") or {}
                if detail.get("port_open", True):
                    out.append(Check(label, True, f"{where}: open in the daemon ({driver})"))
                else:
                    out.append(Check(label, False, f"{where}: the daemon cannot open it: {detail.get('port_error') or 'closed'}",
                                     "check the USB adapter and cable; ls -l /dev/serial/by-id/ /dev/serial/by-path/"))
                continue
            try:
                _open_serial(path)
                out.append(Check(label, True, f"{where}: opens ({driver})"))
            except Exception as exc:  # noqa: BLE001 - pyserial raises SerialException/OSError/ValueError
                out.append(Check(label, False, f"{path}: {exc}",
                                 "plug in the adapter; list the stable names with ls -l /dev/serial/by-id/ /dev/serial/by-path/"))
        elif host:
            tcp_port = getattr(port, "port", 502)
            try:
                socket.create_connection((host, tcp_port), timeout=3.0).close()
                out.append(Check(label, True, f"{host}:{tcp_port} accepts connections ({driver})"))
            except OSError as exc:
                out.append(Check(label, False, f"{host}:{tcp_port}: {exc}", "check the network cable and the device's IP address"))
    return out


def check_lora_modules(env: Env) -> list[Check]:
    """LoRa modules: registers match the config (when M0/M1 are wired) and every keyed sensor has its key."""
    held = {p["port"] for p in env.ports or []}
    health = (env.status or {}).get("drivers", {})
    out = []
    for name, (driver, port) in env.cfg.ports.items():
        if driver != "lora_e22":
            continue
        label = f"lora module {name}"
        if name in held:
            detail = (health.get(name) or {}).get("detail") or {}
            module = str(detail.get("module", "pending"))
            if module == "skipped":
                out.append(skip(label, "register check skipped: M0/M1 not wired", "set m0_gpio/m1_gpio to let the gateway read the module's registers"))
            elif module == "pending":
                out.append(skip(label, "register check pending: the daemon has not read the module yet", "run selftest again in a minute"))
            else:
                ok = module == "verified"
                out.append(Check(label, ok, "registers verified" if ok else module,
                                 "" if ok else "set the module's address/channel/air rate to the config with its tool, or fix the config"))
            for dev_id, why in (detail.get("misconfigured") or {}).items():
                out.append(Check(f"device {dev_id}", False, why, f"add lora_keys.{dev_id} (32 hex chars) to the credentials file, then restart"))
            continue
        if port.m0_gpio is None:
            out.append(skip(label, "register check skipped: M0/M1 not wired", "set m0_gpio/m1_gpio to let the gateway read the module's registers"))
            continue
        import asyncio

        from drivers.lora import e22

        try:
            asyncio.run(e22.verify(port))
            out.append(Check(label, True, "registers verified"))
        except Exception as exc:  # noqa: BLE001 - ModuleMismatch, DeviceTimeout, FrameError, OSError: each is a FAIL
            out.append(Check(label, False, str(exc), "check the module's wiring and power; set its registers to the config"))
    return out


def _device_fix(env: Env, dev: dict[str, Any], daemon_running: bool) -> str:
    """A fix that works in the current state: the bus probes need the daemon stopped, the walk test needs it running."""
    driver = env.cfg.ports.get(dev.get("port"), ("?", None))[0] if env.cfg else "?"
    building = dev.get("location", "").split("栋")[0] if "栋" in (dev.get("location") or "") else ""
    if driver.startswith("modbus"):
        port = env.cfg.ports[dev["port"]][1]
        where = getattr(port, "path", None) or getattr(port, "host", "")
        probe = f"gateway modbus scan {where}" + ("" if getattr(port, "path", None) else f" --tcp-port {getattr(port, 'port', 502)}")
        return (f"check A/B wiring, termination, slave id and baud; gateway poll {dev['id']}" if daemon_running
                else f"check A/B wiring, termination, slave id and baud; {probe}")
    if driver.startswith("lora"):
        if daemon_running:
            return (f"check its battery and key; press its test button during "
                    f"`gateway commission walk{' --building ' + building if building else ''}`")
        return f"check its battery and key, press its test button; gateway lora listen {dev.get('port')}"
    return "check the device's power, SIM and registration; press its test button during `gateway commission walk`"


def check_devices(env: Env) -> list[Check]:
    if env.devices is None:
        return [Check("devices", False, "daemon not running: cannot tell which devices were heard", START_HINT)]
    uptime = float((env.status or {}).get("uptime_s") or 0.0)
    out = []
    for dev in env.devices:
        label = f"device {dev['id']}"
        age_s, hb = dev.get("last_seen_age_s"), dev.get("heartbeat_s") or 0
        where = f" ({dev.get('type')}{', ' + dev['location'] if dev.get('location') else ''})"
        before = " (before the restart)" if dev.get("restored") else ""
        fix = _device_fix(env, dev, True)
        if age_s is None and hb and uptime < hb:
            # A 12 h heartbeat cannot have come yet: not a fault, but not proven either.
            c = warn(label, f"not heard since the daemon started {render.age(uptime)} ago; it reports every {render.age(hb)}{where}", fix)
            c.fold = f"not heard since the daemon started {render.age(uptime)} ago"
            out.append(c)
        elif age_s is None:
            out.append(Check(label, False, f"never answered or heard{where}", fix))
        elif dev.get("state") == "offline":
            out.append(Check(label, False, f"offline, last heard {render.age(age_s)} ago{before}{where}", fix))
        elif hb and age_s > hb:
            out.append(Check(label, False, f"last heard {render.age(age_s)} ago{before}, beyond its heartbeat of {render.age(hb)}{where}", fix))
        else:
            out.append(Check(label, True, f"heard {render.age(age_s)} ago{before}{where}"))
    return out


def check_broker(env: Env) -> list[Check]:
    up = env.cfg.uplink
    url = urlsplit(up.broker_url)
    if url.scheme != "mqtts":
        return [Check("broker", False, f"{up.broker_url} is not TLS", "use mqtts://HOST:8883 in uplink.broker_url")]
    host, port = url.hostname or "", url.port or 8883
    try:
        ctx = ssl.create_default_context(cafile=up.ca_file or None)
        if up.cert_file:
            ctx.load_cert_chain(up.cert_file, up.key_file or None)
        with socket.create_connection((host, port), timeout=TLS_TIMEOUT_S) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                version = tls.version()
    except ssl.SSLCertVerificationError as exc:
        return [Check("broker", False, f"{host}:{port}: certificate not trusted: {exc.verify_message}",
                      "set uplink.ca_file to the platform's CA (gateway provision --ca FILE)")]
    except (OSError, ssl.SSLError) as exc:
        return [Check("broker", False, f"{host}:{port}: {exc}", "check the network/APN, DNS and firewall (port 8883 outbound)")]
    health = (env.status or {}).get("uplink") or {}
    if health.get("config_fault"):  # the handshake works from here, yet the daemon's uplink is refused (issue 15)
        reason = str(health.get("reason", ""))
        return [Check("broker", False, f"{host}:{port} TLS ok, but the daemon's uplink is down: {reason}: {health.get('detail', '')}".rstrip(": "),
                      _UPLINK_FIXES.get(reason, "see docs/uplink.md \"Down reasons\""))]
    uplink = health.get("state")
    return [Check("broker", True, f"{host}:{port} TLS ok ({version})" + (f"; daemon uplink {uplink}" if uplink else ""))]


# What an installer does about each configuration fault the daemon's uplink reports (gateway/uplink/faults.py).
_UPLINK_FIXES = {
    "cert_missing": "install the client certificate and key signed by the platform at uplink.cert_file / key_file (no restart needed)",
    "cert_expired": "have the platform sign a new client certificate; check the clock",
    "cert_invalid": "uplink.cert_file/key_file must be the PEM certificate and its matching key",
    "credentials_invalid": "gateway provision (writes the credentials file with mode 0600)",
    "not_authorized": "the broker refuses this gateway's identity: check mqtt_username/password or the certificate CN = gateway id",
    "publish_refused": "the broker ACL must let this gateway write cg/v1/<gateway id>/... (config/broker/courtyard.acl)",
    "tls_client_refused": "the broker does not trust this client certificate: sign it with the district CA",
}


def check_clock(env: Env) -> list[Check]:
    if env.status is not None:
        synced, source = bool(env.status.get("clock_synced")), "daemon"
    elif env.cfg.clock.sync == "assume_synced":
        synced, source = True, "clock.sync = assume_synced"
    else:
        from gateway.clock import kernel_clock_synced

        synced, source = (env.kernel_synced or kernel_clock_synced)(), "kernel"
    if synced:
        return [Check("clock", True, f"synchronised ({source})")]
    return [Check("clock", False, f"not synchronised ({source}): alarm times are provisional until NTP syncs",
                  "timedatectl status; enable NTP (timedatectl set-ntp true) and check the uplink")]


def check_disk(env: Env) -> list[Check]:
    store = env.cfg.store
    directory = Path(store.path).parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    du = env.disk_usage(str(directory))
    db = sum(os.path.getsize(p) for p in (store.path, store.path + "-wal") if os.path.exists(p))
    need = max(0, store.max_bytes + store.ballast_bytes - db)  # room for the outbox to reach its cap
    free_pct = 100.0 * du.free / du.total if du.total else 0.0
    reason = f"{directory}: {render.size(du.free)} free ({free_pct:.0f}%), the outbox may grow by {render.size(need)}"
    if du.free < need or free_pct < MIN_FREE_PCT:
        return [Check("disk", False, reason, "free space (journalctl --vacuum-size=50M, old files) or lower store.max_bytes")]
    return [Check("disk", True, reason)]


CHECKS: list[Callable[[Env], list[Check]]] = [
    check_config, check_daemon, check_trouble, check_credentials, check_ports, check_lora_modules, check_devices, check_broker,
    check_clock, check_disk,
]


GROUPS: dict[Callable[[Env], list[Check]], str] = {
    check_config: "config", check_daemon: "daemon", check_trouble: "daemon", check_credentials: "security",
    check_ports: "ports and radios", check_lora_modules: "ports and radios", check_devices: "devices", check_broker: "uplink",
    check_clock: "system", check_disk: "system",
}


def run_checks(env: Env) -> list[Check]:
    out: list[Check] = []
    for fn in CHECKS:
        group = GROUPS.get(fn, "other")
        if env.cfg is None and fn not in (check_config, check_daemon):
            continue  # everything else reads the config: one FAIL for it says it all
        try:
            found = fn(env)
        except Exception as exc:  # noqa: BLE001 - a check that crashes is a FAIL with its reason, not a traceback
            found = [Check(fn.__name__.removeprefix("check_"), False, f"check crashed: {type(exc).__name__}: {exc}")]
        for c in found:
            c.group = c.group or group
        out.extend(found)
    return out
