"""The driver boundary: what every protocol driver offers the daemon, and nothing more.

A driver owns its port, runs until cancelled and hands each Reading/Event to `emit` as the frame
arrives. Restarts and task tracking live once, in gateway.supervise; the backoff policy once, in gateway.clock.Backoff
(drivers reopen their ports through drivers.reopen).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import msgspec
from structlog.typing import FilteringBoundLogger

from gateway.clock import Clock
from gateway.model import Command, Device, Item, Stamp

__all__ = ["Actuator", "Command", "Driver", "DriverContext", "DriverHealth", "DriverSpec", "DriverState", "Emit", "Heard",
           "RadioObserver", "RadioTap"]
# Command is re-exported: it lives in gateway.model (actions and control use it too).

Emit = Callable[[Item], None]
"""Hand one Reading or Event to the pipeline. Never blocks; safe to call from the event loop only."""


class DriverState(enum.StrEnum):
    STARTING = "starting"
    OK = "ok"
    DEGRADED = "degraded"  # running, but some devices are offline or the link is flaky
    DOWN = "down"  # port gone, modem absent: retrying


class DriverHealth(msgspec.Struct):
    """A snapshot for `gateway status`, the retained status message and selftest."""

    state: DriverState
    last_ok: Stamp | None = None
    counters: dict[str, int] = {}
    detail: dict[str, Any] = {}


@runtime_checkable
class Driver(Protocol):
    name: str

    async def run(self, emit: Emit) -> None:
        """Run until cancelled; own the port; raise only on a failure the supervisor should restart."""

    def health(self) -> DriverHealth: ...


# ---- Capabilities: what a driver can do beyond run/health. The daemon routes by these (isinstance on
# runtime-checkable Protocols), so a reader sees what depends on what; no hasattr probing.
@runtime_checkable
class Actuator(Driver, Protocol):
    async def write(self, command: Command) -> None:
        """Perform the command; raise a GatewayError subclass with the reason when the device refuses."""


@runtime_checkable
class Pollable(Driver, Protocol):
    async def poll(self, device_id: str) -> list[Item]:
        """Read one device now (`gateway poll`, the platform's poll_now); its items are also emitted."""


@runtime_checkable
class SmsSender(Driver, Protocol):
    async def send_sms(self, number: str, text: str, urgent: bool = False) -> None:
        """Send one text; raise ModemUnavailable / ModemError with the reason. `urgent` (a fire or gas
        alarm's): goes before queued non-urgent work and ends a preemptible call in progress."""


class CallOutcome(msgspec.Struct, frozen=True):
    """How one phone call ended (issue 22). `result`: "acknowledged" (the callee pressed the ack key),
    "answered" (heard the message, pressed nothing), "no_answer", "busy", "rejected" (declined or hung up
    before answering), "failed" (the network refused the call), "preempted" (hung up by the gateway for an
    urgent SMS: the contact is owed the call again)."""

    result: str
    key: str = ""  # the DTMF key that acknowledged, e.g. "1"
    ring_s: float = 0.0  # from dialling to answer or give-up, monotonic
    detail: str = ""


@runtime_checkable
class Caller(Driver, Protocol):
    async def call(self, number: str, text: str, ring_timeout_s: float, key_wait_s: float, preemptible: bool = False) -> CallOutcome:
        """Dial, speak `text` (module TTS) on answer, wait key_wait_s for the ack key, hang up. One call at
        a time per module; raise ModemUnavailable / ModemError when the call could not be placed.
        `preemptible`: an urgent SMS may end it (outcome "preempted") instead of waiting up to ~75 s."""


@runtime_checkable
class RelayReceiver(Driver, Protocol):
    def submit_relay(self, body: dict[str, Any]) -> dict[str, Any]:
        """Take a report the platform relayed (already authenticated by the uplink); CommandRejected if not ours."""


class Heard(msgspec.Struct, frozen=True):
    """One frame a radio received, accepted or rejected, as the `lora_listen` diagnostic reports it
    (issue 20, docs/fleet.md). No payload: it may be a resident's data, and the verdict is what matters."""

    port: str
    source: str  # as on air: E22 sensor id, LoRaWAN DevAddr or DevEUI (hex); "" when too damaged to say
    device_id: str  # the configured device, "" when the source is not in the config
    verdict: str  # "accepted" or the counted rejection reason: replay_suspect, unknown_device, bad_mic ...
    length: int  # bytes: the E22 frame (its len byte; wire bytes when complete) / the LoRaWAN PHYPayload
    kind: str = ""  # report, command_ack, join, data_up ...
    fcnt: int | None = None
    rssi_dbm: float | None = None  # E22 RSSI byte (REG3 b7) / GWMP rxpk rssi
    snr_db: float | None = None  # GWMP rxpk lsnr; the E22 UART gives none
    freq_mhz: float | None = None  # GWMP rxpk freq; an E22 listens on its one configured channel
    datr: str = ""  # GWMP rxpk datr, e.g. "SF9BW125"


RadioObserver = Callable[[Heard], None]


@runtime_checkable
class RadioTap(Driver, Protocol):
    def add_observer(self, observer: RadioObserver) -> Callable[[], None]:
        """Be told of every received frame after the driver has handled it (emit first: the alarm path
        never waits). Returns the function that removes the observer. The list is bounded: raises
        CommandRejected("busy") when full. An observer that raises is removed and counted, never
        propagated into the receive path (drivers/tap.py)."""
        ...


class DriverContext(msgspec.Struct, frozen=True):
    """Everything a driver gets at construction: its port's typed config, its devices, their
    profiles' protocol sections, the clock, a bound logger and the secrets meant for it.

    Built by the daemon from validated config; drivers never read config files themselves.
    """

    port_name: str
    port: Any  # the DriverSpec.port_schema instance for [ports.<port_name>]
    devices: tuple[Device, ...]  # every device whose `port` is this one
    profiles: dict[str, Any]  # profile name -> DriverSpec.profile_schema instance (its [<protocol>] table)
    clock: Clock
    log: FilteringBoundLogger  # already bound to driver= and port=
    secrets: dict[str, str] = {}  # e.g. LoRa device keys from the credentials file, by device id
    # Where a driver may persist small state (frame counters: drivers/counters.py); the daemon passes
    # the outbox's directory. None = keep it in memory (a lost restart protection, never a lost alarm).
    state_dir: Path | None = None


@dataclass(frozen=True)
class DriverSpec:
    """One entry of drivers.registry.DRIVERS; each driver package defines its own in `<package>/spec.py`."""

    name: str  # the value of `driver =` in a [ports.<name>] section
    protocol: str  # the `protocol =` of the device profiles it can serve
    port_schema: type  # msgspec Struct for the port section (without `driver`)
    profile_schema: type | None  # msgspec Struct for a profile's [<protocol>] table, or None
    check_address: Callable[[Any], str | None]  # None when valid, else "300 is not a Modbus slave id (1..247)"
    build: Callable[[DriverContext], Driver]
    simulator: str  # module path of the simulator, e.g. "drivers.modbus.simulator"
    package: str  # the driver's package; its README.md documents wiring, config and faults


def lazy_build(target: str, **kwargs: Any) -> Callable[[DriverContext], Driver]:
    """A DriverSpec.build that imports `module:Class` at the first build: config checks and the CLI
    read a spec's schemas without loading its driver, and the daemon holds in memory only the
    drivers its ports use (issue 17: RSS)."""
    module, _, name = target.partition(":")

    def build(ctx: DriverContext) -> Driver:
        import importlib

        driver: Driver = getattr(importlib.import_module(module), name)(ctx, **kwargs)
        return driver

    build.__qualname__ = f"lazy_build({target!r})"
    return build
