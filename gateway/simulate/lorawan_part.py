"""The LoRaWAN part of the simulated courtyard: a GWMP packet forwarder (drivers/lorawan/simulator.py)
with ABP Milesight detectors behind it, talking UDP on 127.0.0.1 to the gateway's lorawan_gwmp port."""

from __future__ import annotations

import asyncio
import secrets
import socket
import tomllib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drivers.lorawan.simulator import LorawanSimulator
    from gateway.simulate.courtyard import Courtyard, SimDevice

# Profile type -> simulated device kind (drivers/lorawan/simdevices.py payloads).
KINDS = {"smoke": "smoke", "gas": "gas", "water_leak": "leak", "door": "door"}
# Courtyard scenario -> device report reason, per device type.
REASONS: dict[tuple[str, str], str] = {
    ("smoke", "smoke"): "alarm", ("gas", "gas"): "alarm", ("leak", "water_leak"): "alarm", ("door_open", "door"): "alarm",
    ("clear", "smoke"): "clear", ("clear", "gas"): "clear", ("clear", "water_leak"): "clear", ("clear", "door"): "clear",
    ("battery_low", "smoke"): "battery_low", ("battery_low", "water_leak"): "battery_low",
    # The walk test's press: the GS524N's test button reports a test; a leak sensor is tested by wetting its
    # probe and a door contact by opening the door (an alarm, restored after TEST_HOLD_S).
    ("test_button", "smoke"): "test", ("test_button", "water_leak"): "alarm", ("test_button", "door"): "alarm",
}
TEST_RESTORE = ("water_leak", "door")
TEST_HOLD_S = 2.0


def devices(c: Courtyard) -> list[SimDevice]:
    return list(c.spec.lorawan.devices) if c.spec.lorawan else []


def keys(c: Courtyard) -> dict[str, str]:
    """"NwkSKey:AppSKey" per ABP device, fresh at each start (they go to the 0600 credentials file)."""
    if c.lorawan_keys is None:
        c.lorawan_keys = {d.id: f"{secrets.token_hex(16)}:{secrets.token_hex(16)}" for d in devices(c)}
    return c.lorawan_keys


async def start(c: Courtyard) -> None:
    from drivers.lorawan.simdevices import SimDevice as LwDevice
    from drivers.lorawan.simulator import LorawanSimulator

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the gateway binds it; we only send to it
        s.bind(("127.0.0.1", 0))
        c.lorawan_port = s.getsockname()[1]
    sim = LorawanSimulator(("127.0.0.1", c.lorawan_port), keepalive_s=2.0)
    c.lorawan_muted = set()
    for d in devices(c):
        nwk, app = keys(c)[d.id].split(":")
        dev = sim.add(LwDevice.abp(KINDS[c.types[d.id]], int(str(d.address), 16), bytes.fromhex(nwk), bytes.fromhex(app), d.id))
        dev.rssi_dbm = c.rng.randint(-110, -75)
        with (c.profiles_dir / f"{d.profile}.toml").open("rb") as f:
            heartbeat_s = float(tomllib.load(f).get("heartbeat_s", 86400.0))
        c._spawn(_heartbeats(c, sim, d.id, heartbeat_s / c.time_scale))
    await sim.start()
    c.sims["lorawan"] = sim


async def _heartbeats(c: Courtyard, sim: LorawanSimulator, device_id: str, period_s: float) -> None:
    await asyncio.sleep(c.rng.uniform(0.05, 1.0) * min(period_s, 30.0))
    while True:
        if device_id not in c.lorawan_muted:
            sim.report(device_id, "heartbeat")
        await asyncio.sleep(period_s)


def port_section(c: Courtyard) -> dict[str, Any]:
    return {"driver": "lorawan_gwmp", "bind_host": "127.0.0.1", "bind_port": c.lorawan_port, "region": "CN470"}


def trigger(c: Courtyard, name: str, device_id: str, duration_s: float) -> None:
    kind = c.types[device_id]
    if name == "silent":
        c.lorawan_muted.add(device_id)
        asyncio.get_running_loop().call_later(duration_s, c.lorawan_muted.discard, device_id)
        return
    reason = REASONS.get((name, kind))
    if reason is None:
        raise ValueError(f"scenario {name!r} does not apply to {kind} device {device_id}")
    # Alarms go confirmed (the detector wants the network's ACK), like Milesight's alarm reports.
    sim = c.sims["lorawan"]
    sim.report(device_id, reason, confirmed=reason == "alarm")
    if name == "test_button" and kind in TEST_RESTORE:
        asyncio.get_running_loop().call_later(TEST_HOLD_S, sim.report, device_id, "clear")
