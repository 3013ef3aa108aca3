"""The protocol parts of the simulated courtyard: which simulator serves which bus, which port section
the gateway gets for it, and what each scenario does to a device of each protocol."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.simulate.courtyard import Courtyard, SimDevice


# ---- Modbus ------------------------------------------------------------------------------------
def _modbus_sim(c: Courtyard, bus: Any, baud: int) -> Any:
    from drivers.modbus.simbank import SlaveSim, load_profile
    from drivers.modbus.simulator import ModbusSimulator

    slaves = []
    for d in bus.devices:
        kind, profile = load_profile(c.profiles_dir / f"{d.profile}.toml")
        slaves.append(SlaveSim(int(d.address), kind, profile))
    return ModbusSimulator(slaves, baud=baud)


def _modbus_unit(c: Courtyard, device: str) -> tuple[Any, int]:
    for name, bus in (("modbus_rtu", c.spec.modbus_rtu), ("modbus_tcp", c.spec.modbus_tcp)):
        for d in bus.devices if bus else ():
            if d.id == device:
                return c.sims[name], int(d.address)
    raise KeyError(device)


async def _modbus_trigger(c: Courtyard, name: str, device: str, duration_s: float) -> None:
    sim, unit = _modbus_unit(c, device)
    slave = sim.slaves[unit]
    kind = c.types[device]
    if name == "hydrant_opened":
        # Cap off and water drawn: pressure falls below the 0.10 MPa fire minimum within seconds.
        slave.set_flag("cap_opened", True)
        sim.set_value(unit, "pressure_mpa", 0.06)
    elif name == "pump_fault":
        slave.set_flag("pump1_fault", True)
    elif name == "battery_low" and kind == "hydrant":
        sim.set_value(unit, "battery_pct", 8)
    elif name == "silent":
        sim.set_fault(unit, silent=True)
        asyncio.get_running_loop().call_later(duration_s, sim.set_fault, unit)
    elif name == "clear":
        sim.set_fault(unit)
        for code in ("cap_opened", "pump1_fault"):
            try:
                slave.set_flag(code, False)
            except KeyError:
                pass
        if kind == "hydrant":
            sim.set_value(unit, "pressure_mpa", 0.32)
    else:
        raise ValueError(f"scenario {name!r} does not apply to {kind} device {device}")


# ---- all parts ---------------------------------------------------------------------------------
async def start_all(c: Courtyard) -> None:
    if c.spec.modbus_rtu is not None:
        sim = _modbus_sim(c, c.spec.modbus_rtu, c.spec.modbus_rtu.baud)
        await sim.start_rtu(c.tty("rs485"), create_pty=True)
        c.sims["modbus_rtu"] = sim
    if c.spec.modbus_tcp is not None:
        sim = _modbus_sim(c, c.spec.modbus_tcp, 0)
        c.tcp_port = await sim.start_tcp("127.0.0.1", 0)
        c.sims["modbus_tcp"] = sim


async def stop_all(c: Courtyard) -> None:
    for sim in c.sims.values():
        await sim.stop()


def ports(c: Courtyard) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if c.spec.modbus_rtu is not None:
        out["rs485"] = {"driver": "modbus_rtu", "path": c.tty("rs485"), "baud": c.spec.modbus_rtu.baud,
                        "poll_period_s": c.spec.modbus_rtu.poll_period_s}
    if c.spec.modbus_tcp is not None:
        out["pumphouse"] = {"driver": "modbus_tcp", "host": "127.0.0.1", "port": c.tcp_port,
                            "poll_period_s": c.spec.modbus_tcp.poll_period_s}
    return out


def device_ports(c: Courtyard) -> list[tuple[str, SimDevice]]:
    out = []
    for port, bus in (("rs485", c.spec.modbus_rtu), ("pumphouse", c.spec.modbus_tcp)):
        for d in bus.devices if bus else ():
            out.append((port, d))
    return out


def extra_sections(c: Courtyard) -> dict[str, Any]:
    return {}


def credentials(c: Courtyard) -> dict[str, Any]:
    return {}


async def trigger(c: Courtyard, name: str, device: str, duration_s: float) -> None:
    await _modbus_trigger(c, name, device, duration_s)
