"""The daemon: wires the stages and runs them on one asyncio loop.

    serial / radio / TCP                                            street platform (MQTT)
           |                                                                  ^
    drivers/<protocol> --Reading/Event--> pipeline --> rules --Alarm--> actions (sounder, SMS, escalation)
           |                                 |                                |
           +---------------------------------+----> store (SQLite outbox) ----+--> uplink (MQTT, GB 26875)
    cli --control socket--> control                 trouble monitor --> relay box fault lamp

Fail-operational (issue 15; GB 4717 / EN 54-2: a fault in any other function never stops the fire-alarm
function). The ALARM CORE is drivers -> pipeline -> rules -> local actions (sounder, strobe, SMS); it
depends on nothing else. Everything else is a SUBSYSTEM that can be down with a reason and is retried,
never a precondition: the store (its journal keeps alarms and events in memory while the card is
read-only, corrupt or full), the MQTT uplink (missing certificate, refused credentials, broker down),
the GB/T 26875 link, the control socket. The trouble monitor signals each such fault in the guard room.

Start order: instance lock (before anything is opened) -> store (open never fatal) -> drivers -> rules
(restore active alarms; the drivers run first because the restore drives the sounder coils through them;
what drivers emit meanwhile waits in the pipeline) -> pipeline -> uplink, GB/T 26875, control socket,
trouble monitor (each constructed inside its supervised task, so a constructor that fails is a subsystem
down, retried with backoff). Stop: drivers, then the pipeline drains into the rules and the store, then
the rest in reverse (telegraf agent.Run).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

import gateway
from drivers.base import (
    Actuator,
    Caller,
    CallOutcome,
    Driver,
    DriverState,
    Pollable,
    RelayReceiver,
    SmsSender,
)
from gateway import instance
from gateway import log as logsetup
from gateway.clock import Clock
from gateway.config import Config, Credentials, load_credentials
from gateway.control import care as care_control
from gateway.control.handlers import MUTATING, ControlApi
from gateway.control.server import ControlServer
from gateway.errors import CommandRejected, ConfigError, GatewayError, ModemUnavailable
from gateway.livestate import SNAPSHOT_NAME, SnapshotKeeper
from gateway.model import Device, Item, RecordClass
from gateway.pipeline import Pipeline
from gateway.rules import away
from gateway.supervise import Supervisor
from gateway.systemd import Notifier
from gateway.trouble import Fault, TroubleMonitor
from gateway.trouble_checks import DaemonChecks, store_fault

STOP_BUDGET_S = 4.0  # SIGTERM to exit, all stages together (issue 2: within 5 s)
# A card that hangs on open (failing SD) must not hold the alarm core back; the store retries on its own.
STORE_OPEN_BUDGET_S = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGABRT)


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


class DaemonActions:
    """The ActionContext the rule engine acts through: drivers for coils and SMS, the uplink for state."""

    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    async def actuate(self, command: Any) -> None:
        await self.d.actuate(command)

    async def send_sms(self, number: str, text: str, urgent: bool = False) -> None:
        sender = next((drv for drv in self.d.drivers.values() if isinstance(drv, SmsSender)), None)
        if sender is None:
            raise ModemUnavailable("no SMS modem configured (add a [ports.*] with driver = \"sms_ec200\")")
        await sender.send_sms(number, text, urgent=urgent)

    async def call(self, number: str, text: str, ring_timeout_s: float, key_wait_s: float, preemptible: bool = False) -> CallOutcome:
        """Phone a contact through the Cat-1 module and speak `text` (issue 22); key 1 acknowledges."""
        caller = next((drv for drv in self.d.drivers.values() if isinstance(drv, Caller)), None)
        if caller is None:
            raise ModemUnavailable("no module that can call (add a [ports.*] with driver = \"sms_ec200\")")
        return await caller.call(number, text, ring_timeout_s, key_wait_s, preemptible=preemptible)

    def uplink_down_for_s(self) -> float:
        # No uplink (not configured, or its construction failed) counts as down forever, so "SMS only
        # when the uplink is down" still goes out.
        if self.d.uplink is None:
            return float("inf")
        return float(self.d.uplink.down_for_s())

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
        self.drivers: dict[str, Driver] = {}
        self.outbox: Any = None
        self.uplink: Any = None
        self.rules: Any = None
        self.gb26875: Any = None
        self.control: ControlServer | None = None
        self.pipeline: Pipeline | None = None
        self.trouble: TroubleMonitor | None = None
        self.store_error = ""  # why the store could not be opened at start ("" = it opened)
        self.credentials_error = ""  # why the credentials file could not be used at start ("" = it was)
        self.started_mono = self.clock.monotonic()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.livestate: SnapshotKeeper | None = None
        self.inspection: Any = None  # gateway.selfcheck.stages.InspectionStages: power, self-check, tests (issue 23)
        self.inspection_error = ""
        # One control API for both doors (socket and platform commands); the walk session lives in it.
        self.api = ControlApi(self)

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
                # Frame counters and sessions persist beside the outbox (drivers/counters.py); a read-only
                # card leaves them in memory, never deaf.
                state_dir=Path(self.cfg.store.path).parent,
            )
            self.drivers[port_name] = spec.build(ctx)

    def status(self) -> dict[str, Any]:
        """One snapshot for the retained status message, `gateway status` and STATUS=. Leads with the
        faults the trouble monitor signals (issue 15, item 7)."""
        faults = self.trouble.faults() if self.trouble is not None else []
        out: dict[str, Any] = {
            "trouble": [msgspec.to_builtins(f) for f in faults],
            "gateway_id": self.cfg.identity.gateway_id,
            "version": gateway.__version__,
            "uptime_s": round(self.clock.monotonic() - self.started_mono, 1),
            "clock_synced": self.clock.synced(),
            "drivers": {name: msgspec.to_builtins(drv.health()) for name, drv in self.drivers.items()},
            "tasks": self.supervisor.snapshot(),
        }
        if self.outbox is not None:
            out["store"] = self._store_status()
        if self.uplink is not None:
            out["uplink"] = self.uplink.health()
        elif self.cfg.uplink.broker_url:
            out["uplink"] = {"state": "down", "reason": self.task_error("uplink") or "not started"}
        if self.gb26875 is not None:
            out["gb26875"] = self.gb26875.health()
        if self.rules is not None:
            out["active_alarms"] = len(self.rules.active())
            out["alarm_journal"] = self.rules.committer.depth()
        if self.pipeline is not None:
            out["pipeline"] = dict(self.pipeline.counters)
        if self.control is not None:
            out["control"] = dict(self.control.counters)
        if self.inspection is not None:
            out.update(self.inspection.status())  # "power", "selfcheck"
        from gateway.fleet.runner import RUNTIME as FLEET
        from gateway.fleet.update import status_fields as update_status_fields

        # Fleet state read from files: a card that cannot be read costs these fields, never the status.
        if FLEET.files is not None:  # config_version, its hash, the last apply's outcome (docs/fleet.md)
            out["config"] = _fields_or_error(FLEET.files.status_fields)
        out["update"] = _fields_or_error(update_status_fields)  # software update progress and result
        return out

    def _store_status(self) -> dict[str, Any]:
        """The outbox's stats (the shape `gateway status` always had) plus its state and reason."""
        out: dict[str, Any] = {}
        try:
            out.update(msgspec.to_builtins(self.outbox.stats()))
        except Exception as exc:  # noqa: BLE001 - a store that cannot answer is reported, not fatal
            out["stats_error"] = str(exc)[:200]
        health = getattr(self.outbox, "health", None)
        if callable(health):
            out.update(health())
        reason = self.check_store()
        out.setdefault("state", "down" if reason else "up")
        if reason:
            out.setdefault("reason", reason)
        return out

    def check_store(self) -> str:
        """"" or why the store is at fault (the trouble monitor, status and the alarms' restore ask)."""
        return store_fault(self.outbox, self.store_error)

    def task_running(self, name: str) -> bool:
        item = self.supervisor.items.get(name)
        return bool(item is not None and item.task is not None and not item.task.done() and not item.failing())

    def task_error(self, name: str) -> str:
        item = self.supervisor.items.get(name)
        return item.last_error if item is not None else ""

    async def _relay(self, body: dict[str, Any]) -> None:
        """An NB-IoT report relayed by the platform (already authenticated by the uplink)."""
        relays = [drv for drv in self.drivers.values() if isinstance(drv, RelayReceiver)]
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

    def driver_of(self, device_id: str) -> Driver:
        device = self.devices.get(device_id)
        if device is None:
            raise CommandRejected("unknown_device", f"no device {device_id!r} in this gateway's config")
        return self.drivers[device.port]

    async def poll_device(self, device_id: str) -> list[Item]:
        """Poll now (downlink poll_now, `gateway poll`): only drivers that poll can."""
        drv = self.driver_of(device_id)
        if not isinstance(drv, Pollable):
            raise CommandRejected("not_pollable", f"{device_id} reports on its own ({type(drv).__name__}); wait for its next frame")
        return await drv.poll(device_id)

    async def actuate(self, command: Any) -> None:
        """Route an actuator command to the driver owning the device (sounder, strobe, trouble lamp)."""
        drv = self.driver_of(command.device_id)
        if not isinstance(drv, Actuator):
            raise CommandRejected("not_actuator", f"{command.device_id} cannot be written to")
        await drv.write(command)

    def reload(self, cfg: Config, sections: frozenset[str]) -> None:
        """Take changed config sections in place, without stopping a stage (config_apply, docs/fleet.md
        "What restarts"); gateway.fleet.api.RELOADABLE lists the sections this can take."""
        if "contacts" in sections:
            if self.rules is not None:
                self.rules.set_contacts(cfg.contacts)
            self.cfg = msgspec.structs.replace(self.cfg, contacts=cfg.contacts)
        self.log.info("config_reloaded", sections=sorted(sections))

    def healthy(self) -> bool:
        """What the watchdog vouches for: the event loop turns. A dead store writer is a store fault
        (signalled as trouble, retried), never a reason to have systemd kill the alarm path."""
        return True

    # ---- run ----------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # SIGABRT is systemd's WatchdogSignal: stop as on SIGTERM, so the outbox writes what memory still owes
        # (write-behind telemetry) and gives its unused seqs back. A loop truly stuck cannot; SIGKILL follows.
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._stop.set)
        try:
            await self._start()
            self.notifier.ready(status=f"running, {len(self.drivers)} ports, {len(self.devices)} devices")
            self.log.info("daemon_ready", ports=len(self.drivers), devices=len(self.devices), version=gateway.__version__)
            await self._watch()
        finally:
            self.notifier.stopping()
            await self._shutdown()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)
            self.log.info("daemon_stopped")
        return 0

    def consumers(self) -> dict[str, set[RecordClass]]:
        from gateway.uplink.gb26875 import client as gb

        consumers = {"mqtt": set(RecordClass)}
        gb_cfg = self.cfg.gb26875
        if gb_cfg is not None and gb_cfg.enabled:
            consumers[gb.CONSUMER] = set(gb.CLASSES)
        return consumers

    async def _open_store(self) -> None:
        """The store opens or is down with a reason; either way the alarm core starts (issue 15, item 2)."""
        from gateway.store.outbox import Outbox

        try:
            Path(self.cfg.store.path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self.log.warning("store_dir_unavailable", path=str(Path(self.cfg.store.path).parent), error=str(exc))
        self.outbox = Outbox(self.cfg.store, self.clock, logsetup.get(stage="store"), self.consumers())
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (gh-86296)
            async with asyncio.timeout(STORE_OPEN_BUDGET_S):
                await self.outbox.open()
        except (GatewayError, OSError, TimeoutError) as exc:
            self.store_error = str(exc) or type(exc).__name__
            self.log.error("store_down_at_start", error=self.store_error)
        if callable(getattr(self.outbox, "run", None)):
            self.supervisor.start("store", self.outbox.run)  # reopens with backoff, commits the journal

    async def _start(self) -> None:
        await self._open_store()
        # ---- the alarm core -------------------------------------------------------------------
        self._build_drivers()
        from gateway.rules.engine import RuleEngine

        self.rules = RuleEngine(
            self.cfg.rules, self.devices, self.outbox, DaemonActions(self), self.clock, logsetup.get(stage="rules"),
            notify=self.cfg.notify, contacts=self.cfg.contacts, identity=self.cfg.identity,
        )
        self.pipeline = Pipeline(self.outbox, self.rules, self.devices, self.log)
        pipeline = self.pipeline
        # Last seen, values, RSSI and battery per device survive a restart (a 12 h heartbeat must not
        # read as offline for half a day after a reboot); a read-only card costs one warning.
        self.livestate = SnapshotKeeper(pipeline.live, Path(self.cfg.store.path).parent / SNAPSHOT_NAME, self.clock,
                                        logsetup.get(stage="livestate"))
        self.livestate.load()
        self.supervisor.start("livestate", self.livestate.run)  # saves a last time when cancelled at stop
        for port_name, drv in self.drivers.items():
            self.supervisor.start(f"driver:{port_name}", functools.partial(drv.run, pipeline.emit))
        await asyncio.sleep(0)  # let each driver task reach run() before the rules act through it
        await self.rules.start()  # restores active alarms, or defers that until the store is back
        away.restore(self.rules, Path(self.cfg.store.path).parent, self.clock.wall(), self.log)  # flats away (issue 22)
        self.supervisor.start("rules", self.rules.run)
        self.supervisor.start("pipeline", self.pipeline.run)
        # ---- subsystems: each may be down, none is a precondition of the core ------------------
        self._start_inspection()
        self._start_trouble()
        self.supervisor.start("control", self._run_control)
        if self.cfg.uplink.broker_url:
            self.supervisor.start("uplink", self._run_uplink)
        if "gb26875" in self.consumers():
            self.supervisor.start("gb26875", self._run_gb26875)

    def _start_inspection(self) -> None:
        """Power supervision, the daily self-check and inspection tests (issue 23): wanted, never a
        precondition. A failure to build them is a fault the trouble monitor reports, not a stop."""
        from gateway.selfcheck import stages as inspection

        assert self.pipeline is not None
        try:
            self.inspection = inspection.build(self.cfg, self.clock, self.outbox, self.pipeline.emit, self.devices,
                                               self.status, self._announce_offline, self.consumers(), logsetup.get)
        except Exception as exc:  # noqa: BLE001 - the alarm core already runs; this must not stop it
            self.inspection_error = f"{type(exc).__name__}: {exc}"[:300]
            self.log.error("inspection_stages_not_started", error=self.inspection_error)
            return
        self.supervisor.start("power", self.inspection.power.run)  # returns at once without a UPS
        self.supervisor.start("selfcheck", self.inspection.selfcheck.run)

    async def _run_uplink(self) -> None:
        from gateway.uplink.client import Uplink

        self.uplink = Uplink(
            self.cfg.uplink, self.credentials, self.cfg.identity, self.outbox, self.clock, logsetup.get(stage="uplink"),
            handlers={**self.api.downlink_handlers(), "resident_away": care_control.build(self)["platform_resident_away"]},
            relay_handler=self._relay, status_provider=self.status,
            # A broken credentials file: the uplink is down (credentials_invalid) and re-reads it each attempt.
            reload_credentials=(lambda: load_credentials(self.cfg.uplink.credentials_file)) if self.credentials_error else None,
        )
        await self.uplink.run()

    async def _run_gb26875(self) -> None:
        from gateway.uplink.gb26875 import client as gb

        self.gb26875 = gb.GB26875Client(self.cfg.gb26875, self.outbox, self.devices, self.clock, logsetup.get(stage="gb26875"))
        await self.gb26875.run()

    async def _run_control(self) -> None:
        self.control = ControlServer(self.cfg.control.socket, {**self.api.handlers(), **care_control.build(self)},
                                     MUTATING | care_control.MUTATING, self.log, self.cfg.control.group)
        await self.control.run()

    # ---- trouble ------------------------------------------------------------------------------
    def _start_trouble(self) -> None:
        notify = self.cfg.notify
        from gateway.actions.schema import Notify

        notify = notify or Notify()
        cfg = notify.trouble
        device = (cfg.device or notify.sounder.device) if cfg.outputs else ""
        self.trouble = TroubleMonitor(cfg, device, DaemonChecks(self).build(cfg), self.actuate, self.clock,
                                      logsetup.get(stage="trouble"), on_change=self._fault_changed)
        self.supervisor.start("trouble", self.trouble.run)

    def _fault_changed(self, fault: Fault, active: bool) -> None:
        """A fault came or went: an EVENT record for the platform (journalled if the store is down)."""
        if self.outbox is None:
            return
        body = {"kind": "fault", "code": f"trouble_{'raised' if active else 'cleared'}", "source": fault.source,
                "reason": fault.reason, "since_wall_s": fault.since_wall_s}
        task = asyncio.get_running_loop().create_task(self._put_quietly(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _put_quietly(self, body: dict[str, Any]) -> None:
        try:
            await self.outbox.put(RecordClass.EVENT, "event.fault", self.cfg.identity.gateway_id, self.clock.now(), body)
        except Exception as exc:  # noqa: BLE001 - the store being down is itself one of the faults
            self.log.debug("fault_record_not_stored", error=str(exc)[:200])

    async def _announce_offline(self, reason: str) -> None:
        """Low battery: tell the platform why the gateway is about to go quiet (retained status)."""
        announce = getattr(self.uplink, "announce_offline", None)
        if callable(announce):
            await announce(reason)

    # ---- watch and stop -----------------------------------------------------------------------
    async def _watch(self) -> None:
        interval = (self.notifier.watchdog_s or 10.0) / 2
        status_every = 30.0
        next_status = 0.0
        while not self._stop.is_set():
            if self.healthy():
                self.notifier.watchdog()
            if self.rules is not None and self.rules.restore_pending and not self.check_store():
                try:
                    await self.rules.restore()  # the store came back: merge the alarms it held
                except GatewayError as exc:
                    self.log.debug("alarms_restore_retry_failed", error=str(exc)[:200])
            now = self.clock.monotonic()
            if now >= next_status:
                next_status = now + status_every
                self.notifier.status(self._status_line())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._stop.wait()

    def _status_line(self) -> str:
        down = sum(1 for d in self.drivers.values() if d.health().state in (DriverState.DOWN, DriverState.DEGRADED))
        up = self.uplink.health().get("state", "?") if self.uplink is not None else "off"
        faults = self.trouble.faults() if self.trouble is not None else []
        lead = f"TROUBLE {', '.join(f.source for f in faults)}; " if faults else ""
        return f"{lead}uplink {up}; {len(self.drivers) - down}/{len(self.drivers)} ports ok"

    async def _shutdown(self) -> None:
        deadline = self.clock.monotonic() + STOP_BUDGET_S
        driver_tasks = [n for n in self.supervisor.items if n.startswith("driver:")]
        await self.supervisor.stop(driver_tasks, timeout_s=1.0)
        if self.inspection is not None:
            await self.inspection.stop()  # a fire test in progress clears its injected alarm
        if self.pipeline is not None:
            await self.pipeline.drain(timeout_s=max(0.2, min(1.0, deadline - self.clock.monotonic())))
        if self.rules is not None:
            await self.rules.stop(timeout_s=max(0.2, min(1.0, deadline - self.clock.monotonic())))
        await self.supervisor.stop(timeout_s=max(0.2, min(1.0, deadline - self.clock.monotonic())))
        if self.outbox is not None:
            try:
                await self.outbox.close()
            except Exception as exc:  # noqa: BLE001 - a broken store must not turn a clean stop into a crash
                self.log.error("store_close_failed", error=str(exc)[:200])


def _fields_or_error(read: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - status is how faults are seen: it must always answer
        return {"error": f"{type(exc).__name__}: {exc}"[:200]}


def _credentials(cfg: Config) -> tuple[Credentials, str]:
    """The credentials, or empty ones and why: a missing or broken credentials file must not keep the
    alarm core from starting (it is a fault, signalled; the uplink retries it). A file readable by others
    is still refused at start: that is a security gate an installer meets once, at `gateway provision`."""
    path = cfg.uplink.credentials_file
    if not path:
        return Credentials(), ""
    try:
        insecure = bool(os.stat(path).st_mode & 0o077)
    except OSError:
        insecure = False
    if insecure:
        return load_credentials(path), ""  # raises ConfigError with the chmod advice
    try:
        return load_credentials(path), ""
    except ConfigError as exc:
        return Credentials(), "; ".join(exc.problems)


def _lock_dirs(cfg: Config) -> list[Path]:
    return [Path(cfg.store.path).parent, Path(cfg.control.socket).parent]


def run(config_path: str, state_dir: str | None = None, runtime_dir: str | None = None) -> int:
    """Entry point of `gateway run`: load config and secrets, set up logging, take the instance lock,
    run until SIGTERM. Exit 1 at once, naming the holder, if another daemon runs on this config."""
    from gateway.config import load_config

    cfg = load_config(config_path)
    if state_dir:
        cfg = msgspec.structs.replace(cfg, store=msgspec.structs.replace(cfg.store, path=os.path.join(state_dir, Path(cfg.store.path).name)))
    if runtime_dir:
        cfg = msgspec.structs.replace(cfg, control=msgspec.structs.replace(cfg.control, socket=os.path.join(runtime_dir, Path(cfg.control.socket).name)))
    creds, creds_error = _credentials(cfg)
    logsetup.REDACTOR.set_secrets(creds.secret_values())
    logsetup.setup(cfg.log.level, cfg.log.format, cfg.identity.gateway_id, damp_s=cfg.log.damp_s)
    log = logsetup.get(component="daemon")
    if creds_error:
        log.error("credentials_unusable", error=creds_error)
    try:
        lock = instance.acquire(_lock_dirs(cfg))
    except instance.AlreadyRunning as exc:
        log.error("already_running", pid=exc.pid, lock=str(exc.path))
        print(f"gateway run: {exc}", file=sys.stderr)
        return 1
    for path, why in lock.skipped:
        log.warning("instance_lock_skipped", directory=str(path), error=why)
    try:
        daemon = Daemon(cfg, credentials=creds)
        daemon.credentials_error = creds_error
        return asyncio.run(daemon.run())
    finally:
        lock.release()
