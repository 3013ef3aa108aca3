"""The daemon: wires the stages and runs them on one asyncio loop.

    serial / radio / TCP                                            street platform (MQTT)
           |                                                                  ^
    drivers/<protocol> --Reading/Event--> pipeline --> rules --Alarm--> actions (sounder, SMS, escalation)
           |                                 |                                |
           +---------------------------------+----> store (SQLite outbox) ----+--> uplink (MQTT, GB 26875)
    cli --control socket--> control

Start order: store -> uplink -> control -> drivers -> rules/actions -> pipeline (the drivers run before
the rules start because restoring active alarms drives the sounder coils through them; what drivers
emit meanwhile waits in the pipeline). Stop: drivers, then the pipeline drains into the rules and the
store, then the rest in reverse (telegraf agent.Run). Every long-running stage is a supervised task.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import msgspec

import gateway
from gateway import log as logsetup
from gateway.clock import Clock
from gateway.config import Config, Credentials, load_credentials
from gateway.errors import CommandRejected, ModemUnavailable
from gateway.model import Device, RecordClass
from gateway.control import handlers as control_handlers
from gateway.control.server import ControlServer
from gateway.pipeline import Pipeline
from gateway.supervise import Supervisor
from gateway.systemd import Notifier

STOP_BUDGET_S = 4.0  # SIGTERM to exit, all stages together (issue 2: within 5 s)


def resolve_devices(cfg: Config) -> dict[str, Device]:
    out: dict[str, Device] = {}
    for d in cfg.devices:
        prof = cfg.profiles[d.profile]
        out[d.id] = Device(
            id=d.id,
            profile=d.profile,
            type=prof.type,
            port=d.port,
            address=d.address,
            location=d.location,
            resident=d.resident,
            contacts=tuple(d.contacts),
            heartbeat_s=prof.heartbeat_s,
        )
    return out


def downlink_handlers(control: dict[str, Any]) -> dict[str, Any]:
    """Platform commands reuse the control-socket handlers (one implementation, two doors)."""

    async def poll_now(args: dict[str, Any]) -> dict[str, Any]:
        return {"items": await control["poll"](args)}

    return {
        "ack_alarm": control.pop("platform_ack"),
        "silence": control.pop("platform_silence"),
        "poll_now": poll_now,
        "set_log_level": control["set_log_level"],
    }


class DaemonActions:
    """The ActionContext the rule engine acts through: drivers for coils and SMS, the uplink for state."""

    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    async def actuate(self, command: Any) -> None:
        await self.d.actuate(command)

    async def send_sms(self, number: str, text: str) -> None:
        sender = next((drv for drv in self.d.drivers.values() if hasattr(drv, "send_sms")), None)
        if sender is None:
            raise ModemUnavailable("no SMS modem configured (add a [ports.*] with driver = \"sms_ec200\")")
        await sender.send_sms(number, text)

    def uplink_down_for_s(self) -> float:
        # No uplink at all counts as down forever, so "SMS only when the uplink is down" still goes out.
        if self.d.uplink is None:
            return float("inf")
        return self.d.uplink.down_for_s()

    def notify_uplink(self) -> None:
        if self.d.uplink is not None:
            self.d.uplink.notify_alarm()


class Daemon:
    def __init__(self, cfg: Config, clock: Clock | None = None, notifier: Notifier | None = None, credentials: Credentials | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or Clock(cfg.clock.sync)
        self.notifier = notifier or Notifier()
        self.credentials = credentials or Credentials()
        self.log = logsetup.get(component="daemon")
        self.devices = resolve_devices(cfg)
        self.supervisor = Supervisor(self.log, self.clock)
        self.drivers: dict[str, Any] = {}
        self.outbox: Any = None
        self.uplink: Any = None
        self.rules: Any = None
        self.gb26875: Any = None
        self.pipeline: Pipeline | None = None
        self.started_mono = self.clock.monotonic()
        self._stop = asyncio.Event()

    # ---- wiring -------------------------------------------------------------------------------
    def _build_drivers(self) -> None:
        from drivers.base import DriverContext
        from drivers.registry import DRIVERS

        for port_name, (driver_name, port_cfg) in self.cfg.ports.items():
            spec = DRIVERS[driver_name]
            devices = tuple(d for d in self.devices.values() if d.port == port_name)
            profiles = {d.profile: self.cfg.profile_specs.get(d.profile) for d in devices}
            secrets = {d.id: self.credentials.lora_keys[d.id] for d in devices if d.id in self.credentials.lora_keys}
            ctx = DriverContext(
                port_name=port_name,
                port=port_cfg,
                devices=devices,
                profiles=profiles,
                clock=self.clock,
                log=logsetup.get(driver=driver_name, port=port_name),
                secrets=secrets,
            )
            self.drivers[port_name] = spec.build(ctx)

    def status(self) -> dict[str, Any]:
        """One snapshot for the retained status message, `gateway status` and STATUS=."""
        out: dict[str, Any] = {
            "gateway_id": self.cfg.identity.gateway_id,
            "version": gateway.__version__,
            "uptime_s": round(self.clock.monotonic() - self.started_mono, 1),
            "clock_synced": self.clock.synced(),
            "drivers": {name: msgspec.to_builtins(drv.health()) for name, drv in self.drivers.items()},
            "tasks": self.supervisor.snapshot(),
        }
        if self.outbox is not None:
            out["store"] = msgspec.to_builtins(self.outbox.stats())
        if self.uplink is not None:
            out["uplink"] = self.uplink.health()
        if self.gb26875 is not None:
            out["gb26875"] = self.gb26875.health()
        if self.rules is not None:
            out["active_alarms"] = len(self.rules.active())
        if self.pipeline is not None:
            out["pipeline"] = dict(self.pipeline.counters)
        return out

    async def _relay(self, body: dict[str, Any]) -> None:
        """An NB-IoT report relayed by the platform (already authenticated by the uplink)."""
        relays = [drv for drv in self.drivers.values() if hasattr(drv, "submit_relay")]
        if not relays:
            raise CommandRejected("no_relay_port", "no NB-IoT port configured on this gateway")
        last: CommandRejected | None = None
        for drv in relays:  # one NB-IoT port in practice; the device decides which one takes it
            try:
                drv.submit_relay(body)
                return
            except CommandRejected as exc:
                if exc.reason != "unknown_device":
                    raise
                last = exc
        assert last is not None
        raise last

    def driver_of(self, device_id: str) -> Any:
        device = self.devices.get(device_id)
        if device is None:
            raise CommandRejected("unknown_device", f"no device {device_id!r} in this gateway's config")
        return self.drivers[device.port]

    async def poll_device(self, device_id: str) -> list[Any]:
        """Poll now (downlink poll_now, `gateway poll`): only drivers that poll can."""
        drv = self.driver_of(device_id)
        if not hasattr(drv, "poll"):
            raise CommandRejected("not_pollable", f"{device_id} reports on its own ({type(drv).__name__}); wait for its next frame")
        return await drv.poll(device_id)

    async def actuate(self, command: Any) -> None:
        """Route an actuator command to the driver owning the device (sounder, strobe, silence)."""
        drv = self.driver_of(command.device_id)
        if not hasattr(drv, "write"):
            raise CommandRejected("not_actuator", f"{command.device_id} cannot be written to")
        await drv.write(command)

    def healthy(self) -> bool:
        """What the watchdog vouches for: the loop turns and the outbox writer is alive."""
        writer_alive = getattr(self.outbox, "writer_alive", None)
        if callable(writer_alive) and not writer_alive():
            return False
        return True

    # ---- run ----------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._start()
            self.notifier.ready(status=f"running, {len(self.drivers)} ports, {len(self.devices)} devices")
            self.log.info("daemon_ready", ports=len(self.drivers), devices=len(self.devices), version=gateway.__version__)
            await self._watch()
        finally:
            self.notifier.stopping()
            await self._shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            self.log.info("daemon_stopped")
        return 0

    async def _start(self) -> None:
        from gateway.store.outbox import Outbox

        from gateway.uplink import Uplink
        from gateway.uplink.gb26875 import client as gb

        gb_cfg = self.cfg.gb26875
        consumers = {"mqtt": set(RecordClass)}
        if gb_cfg is not None and gb_cfg.enabled:
            consumers[gb.CONSUMER] = set(gb.CLASSES)
        Path(self.cfg.store.path).parent.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(self.cfg.store, self.clock, logsetup.get(stage="store"), consumers)
        await self.outbox.open()
        self._build_drivers()
        control = control_handlers.build(self)
        self.uplink = Uplink(
            self.cfg.uplink, self.credentials, self.cfg.identity, self.outbox, self.clock, logsetup.get(stage="uplink"),
            handlers=downlink_handlers(control), relay_handler=self._relay, status_provider=self.status,
        )
        self.supervisor.start("uplink", self.uplink.run)
        if gb.CONSUMER in consumers:
            self.gb26875 = gb.GB26875Client(gb_cfg, self.outbox, self.devices, self.clock, logsetup.get(stage="gb26875"))
            self.supervisor.start("gb26875", self.gb26875.run)
        from gateway.rules.engine import RuleEngine

        self.rules = RuleEngine(
            self.cfg.rules, self.devices, self.outbox, DaemonActions(self), self.clock, logsetup.get(stage="rules"),
            notify=self.cfg.notify, contacts=self.cfg.contacts, identity=self.cfg.identity,
        )
        self.pipeline = Pipeline(self.outbox, self.rules, self.devices, self.log)
        self.control = ControlServer(self.cfg.control.socket, control, control_handlers.MUTATING, self.log, self.cfg.control.group)
        self.supervisor.start("control", self.control.run)
        # Drivers run before the rules start: RuleEngine.start() drives the sounder coils to the state
        # the restored alarms want, through a driver that must be running (it queues until its port
        # opens). What drivers emit meanwhile waits in the pipeline, which starts last.
        for port_name, drv in self.drivers.items():
            self.supervisor.start(f"driver:{port_name}", lambda drv=drv: drv.run(self.pipeline.emit))
        await asyncio.sleep(0)  # let each driver task reach run() before the rules act through it
        await self.rules.start()
        self.supervisor.start("rules", self.rules.run)
        self.supervisor.start("pipeline", self.pipeline.run)

    async def _watch(self) -> None:
        interval = (self.notifier.watchdog_s or 10.0) / 2
        status_every = 30.0
        next_status = 0.0
        while not self._stop.is_set():
            if self.healthy():
                self.notifier.watchdog()
            else:
                self.log.error("watchdog_withheld", reason="outbox writer not alive")
            now = self.clock.monotonic()
            if now >= next_status:
                next_status = now + status_every
                self.notifier.status(self._status_line())
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            except asyncio.TimeoutError:
                pass

    def _status_line(self) -> str:
        down = sum(1 for d in self.drivers.values() if str(d.health().state) in ("down", "degraded"))
        up = self.uplink.health().get("state", "?") if self.uplink is not None else "off"
        return f"uplink {up}; {len(self.drivers) - down}/{len(self.drivers)} ports ok"

    async def _shutdown(self) -> None:
        deadline = self.clock.monotonic() + STOP_BUDGET_S
        driver_tasks = [n for n in self.supervisor.items if n.startswith("driver:")]
        await self.supervisor.stop(driver_tasks, timeout_s=1.0)
        if self.pipeline is not None:
            await self.pipeline.drain(timeout_s=max(0.2, min(1.0, deadline - self.clock.monotonic())))
        if self.rules is not None:
            await self.rules.stop(timeout_s=max(0.2, min(1.0, deadline - self.clock.monotonic())))
        await self.supervisor.stop(timeout_s=max(0.2, min(1.0, deadline - self.clock.monotonic())))
        if self.outbox is not None:
            await self.outbox.close()


def run(config_path: str, state_dir: str | None = None, runtime_dir: str | None = None) -> int:
    """Entry point of `gateway run`: load config and secrets, set up logging, run until SIGTERM."""
    from gateway.config import load_config

    cfg = load_config(config_path)
    if state_dir:
        cfg = msgspec.structs.replace(cfg, store=msgspec.structs.replace(cfg.store, path=os.path.join(state_dir, Path(cfg.store.path).name)))
    if runtime_dir:
        cfg = msgspec.structs.replace(cfg, control=msgspec.structs.replace(cfg.control, socket=os.path.join(runtime_dir, Path(cfg.control.socket).name)))
    creds = load_credentials(cfg.uplink.credentials_file) if cfg.uplink.credentials_file else Credentials()
    logsetup.REDACTOR.set_secrets(creds.secret_values())
    logsetup.setup(cfg.log.level, cfg.log.format, cfg.identity.gateway_id)
    return asyncio.run(Daemon(cfg, credentials=creds).run())
