"""The simulated courtyard: every driver's simulator in one process, described by one TOML file, plus
the gateway config that points the real daemon at it (`gateway run --config OUT.toml` runs unmodified).

    courtyard.toml --> Courtyard --> ModbusSimulator (RTU pty + TCP), LoRa module sim (pty),
                                     NB-IoT modem sim (pty), SMS modem sim (pty), uplink FaultProxy
                   --> OUT.toml (ports = pty paths, uplink = proxy -> --broker)

Scenarios run from the file's [[scenario]] list and live from `gateway simulate trigger`.
"""

from __future__ import annotations

import asyncio
import os
import random
import tomllib
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec
from gateway.config.write import dumps_config

from gateway.config.schema import Contact
from gateway.simulate.proxy import FaultProxy, Mode

if TYPE_CHECKING:
    from drivers.cellular.simnbiot import SmokeSensorSim


class SimDevice(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    id: str
    profile: str
    address: int | str
    building: str = ""
    unit: str = ""
    room: str = ""
    resident: str = "common_area"
    contacts: list[str] = []


class Bus(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    devices: list[SimDevice] = []
    baud: int = 9600
    poll_period_s: float = 2.0


class Step(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    at_s: float  # seconds after start (real time; scenarios are for people watching)
    trigger: str
    device: str = ""
    duration_s: float = 10.0


class CourtyardFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    gateway_id: str
    community: str = ""
    courtyard: str = ""
    profiles_dir: str = "../profiles"  # relative to the courtyard file
    contacts: list[Contact] = []
    modbus_rtu: Bus | None = None
    modbus_tcp: Bus | None = None
    lora: Bus | None = None
    lorawan: Bus | None = None  # LoRaWAN detectors behind a simulated packet forwarder (address = DevAddr hex)
    nbiot: Bus | None = None
    sms: bool = True
    gb26875_centre: bool = False  # a simulated district fire remote-monitoring centre (GB/T 26875.3)
    rules: list[dict[str, Any]] = []  # copied into the gateway config (validated when it loads)
    notify: dict[str, Any] = {}
    scenario: list[Step] = []
    # Phone number -> drivers.cellular.simcall.Callee fields, e.g. {answer_after_rings = 2, key = "1"} (issue 22).
    callees: dict[str, dict[str, Any]] = {}


def load(path: Path) -> CourtyardFile:
    with path.open("rb") as f:
        return msgspec.convert(tomllib.load(f), CourtyardFile)


# Which device types each trigger applies to; with no device named, one of these is picked.
TRIGGER_TYPES: dict[str, tuple[str, ...]] = {
    "smoke": ("smoke",),
    "gas": ("gas",),
    "hydrant_opened": ("hydrant",),
    "pump_fault": ("pump_station",),
    "manhole_tilted": ("manhole",),
    "water_flow": ("water_flow",),
    "leak": ("water_leak",),  # LoRaWAN leak sensors (issue 19)
    "door_open": ("door",),
    "battery_low": ("smoke", "gas", "manhole", "water_flow", "hydrant", "water_leak"),
    "silent": ("smoke", "gas", "manhole", "water_flow", "hydrant", "pump_station", "water_leak", "door"),
    "clear": ("smoke", "gas", "hydrant", "pump_station", "manhole", "water_flow", "water_leak", "door"),
    "uplink_outage": (),
    "test_button": ("smoke", "gas", "water_flow", "manhole", "hydrant", "pump_station", "relay_box", "water_leak", "door"),
    "sos": ("sos_button",),  # care for residents living alone (issue 22)
    "door_opened": ("door_contact",),
    "water_used": ("water_meter",),
}


class Courtyard:
    """Owns every simulator; start() creates the ptys and writes the gateway config."""

    def __init__(self, spec: CourtyardFile, spec_path: Path, out_config: Path, broker_url: str, time_scale: float = 1.0) -> None:
        self.spec = spec
        self.spec_path = spec_path
        self.out = out_config
        self.workdir = out_config.parent / (out_config.stem + ".run")
        self.broker = urlsplit(broker_url)
        self.time_scale = time_scale
        self.profiles_dir = (spec_path.parent / spec.profiles_dir).resolve()
        self.types = {d.id: self._profile_type(d.profile) for d in self._all_devices()}
        self.rng = random.Random()
        self.sims: dict[str, Any] = {}
        self.proxy: FaultProxy | None = None
        self.events: list[dict[str, Any]] = []  # what the simulator did, for the demo's live view
        self._tasks: set[asyncio.Task[None]] = set()
        # Set by the protocol parts (gateway/simulate/parts.py, lorawan_part.py) as they start.
        self.tcp_port = 0  # the Modbus TCP simulator's bound port
        self.lorawan_port = 0  # the gateway's GWMP port the packet forwarder sends to
        self.lorawan_muted: set[str] = set()  # LoRaWAN devices gone silent (scenario "silent")
        self.nbiot_sensors: dict[str, SmokeSensorSim] = {}  # device id -> its simulated detector
        # Secrets made at the first ask, fresh at each run (they go to the 0600 credentials file).
        self.lora_keys: dict[str, str] | None = None
        self.lorawan_keys: dict[str, str] | None = None
        self.command_key: str | None = None

    # ---- description ------------------------------------------------------------------------
    def _all_devices(self) -> list[SimDevice]:
        out: list[SimDevice] = []
        for bus in (self.spec.modbus_rtu, self.spec.modbus_tcp, self.spec.lora, self.spec.lorawan, self.spec.nbiot):
            if bus is not None:
                out.extend(bus.devices)
        return out

    def _profile_type(self, profile: str) -> str:
        with (self.profiles_dir / f"{profile}.toml").open("rb") as f:
            kind: str = tomllib.load(f)["type"]  # the profile schema's `type`, a string
        return kind

    def tty(self, name: str) -> str:
        return str(self.workdir / f"tty-{name}")

    # ---- run --------------------------------------------------------------------------------
    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        from gateway.simulate import parts

        await parts.start_all(self)
        host, port = self.broker.hostname or "127.0.0.1", self.broker.port or 1883
        self.proxy = FaultProxy(host, port)
        await self.proxy.start()
        self.write_gateway_config()
        for step in self.spec.scenario:
            self._spawn(self._scheduled(step))

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.proxy is not None:
            await self.proxy.stop()
        from gateway.simulate import parts

        await parts.stop_all(self)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _scheduled(self, step: Step) -> None:
        await asyncio.sleep(step.at_s)
        try:
            await self.trigger(step.trigger, step.device, step.duration_s)
        except (KeyError, ValueError) as exc:
            self.note("scenario_failed", trigger=step.trigger, error=str(exc))

    def note(self, what: str, **fields: Any) -> None:
        entry = {"what": what, **fields}
        self.events.append(entry)
        del self.events[:-1000]
        print("sim:", what, " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)

    async def trigger(self, name: str, device: str = "", duration_s: float = 10.0) -> dict[str, Any]:
        if name not in TRIGGER_TYPES:
            raise ValueError(f"unknown scenario {name!r} (one of: {', '.join(sorted(TRIGGER_TYPES))})")
        if name == "uplink_outage":
            assert self.proxy is not None
            self.proxy.set_mode(Mode.CUT)
            self.note("uplink_outage_started", duration_s=duration_s)
            self._spawn(self._restore_uplink(duration_s))
            return {"trigger": name, "duration_s": duration_s}
        if not device:
            candidates = [d for d, t in self.types.items() if t in TRIGGER_TYPES[name]]
            if not candidates:
                raise ValueError(f"no device of type {'/'.join(TRIGGER_TYPES[name])} in this courtyard")
            device = self.rng.choice(sorted(candidates))
        if device not in self.types:
            raise KeyError(f"unknown device {device!r}")
        from gateway.simulate import parts

        await parts.trigger(self, name, device, duration_s)
        self.note("triggered", scenario=name, device=device)
        return {"trigger": name, "device": device}

    async def _restore_uplink(self, duration_s: float) -> None:
        await asyncio.sleep(duration_s)
        if self.proxy is not None:
            self.proxy.set_mode(Mode.PASS)
            self.note("uplink_outage_ended")

    # ---- the gateway's config ---------------------------------------------------------------
    def write_gateway_config(self) -> None:
        from gateway.simulate import parts

        state = self.workdir / "state"
        state.mkdir(exist_ok=True)
        assert self.proxy is not None
        doc: dict[str, Any] = {
            "profiles_dir": str(self.profiles_dir),
            "identity": {"gateway_id": self.spec.gateway_id, "community": self.spec.community, "courtyard": self.spec.courtyard},
            # The simulated courtyard runs without a time daemon: trust this machine's clock.
            "clock": {"sync": "assume_synced"},
            "uplink": {"broker_url": f"mqtt://127.0.0.1:{self.proxy.port}", "reconnect_cap_s": 5.0, "keepalive_s": 10},
            # commit_interval_s stays the default (1 s): with write-behind (issue 17) readings are published
            # at once whatever it is, and 0.2 s (from before write-behind) wrote nearly every reading
            # before its PUBACK came back, 0.6 GB a day (docs/BENCHMARKS.md "demo courtyard").
            "store": {"path": str(state / "outbox.db")},
            "control": {"socket": str(self.workdir / "control.sock")},
            "ports": parts.ports(self),
            "contacts": [msgspec.to_builtins(c) for c in self.spec.contacts],
            "devices": [self._device_entry(d, port) for port, d in parts.device_ports(self)],
        }
        if self.spec.rules:
            doc["rules"] = self.spec.rules
        if self.spec.notify:
            doc["notify"] = self.spec.notify
        extra = parts.extra_sections(self)
        doc.update(extra)
        creds = parts.credentials(self)
        if creds:
            cpath = self.out.parent / (self.out.stem + ".credentials.toml")
            fd = os.open(cpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(dumps_config(creds))
            os.chmod(cpath, 0o600)
            doc["uplink"]["credentials_file"] = str(cpath)
        self.out.write_text("# Generated by `gateway simulate --courtyard`: do not edit, it is rewritten at each start.\n" + dumps_config(doc))

    @staticmethod
    def _device_entry(d: SimDevice, port: str) -> dict[str, Any]:
        e: dict[str, Any] = {"id": d.id, "profile": d.profile, "port": port, "address": d.address, "resident": d.resident}
        for k in ("building", "unit", "room"):
            if getattr(d, k):
                e[k] = getattr(d, k)
        if d.contacts:
            e["contacts"] = list(d.contacts)
        return e
