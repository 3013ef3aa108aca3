"""The protocol parts of the simulated courtyard: which simulator serves which bus, which port section
the gateway gets for it, and what each scenario does to a device of each protocol."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gateway.simulate import lorawan_part

if TYPE_CHECKING:
    from drivers.modbus.simulator import ModbusSimulator
    from gateway.simulate.courtyard import Bus, Courtyard, SimDevice


# ---- Modbus ------------------------------------------------------------------------------------
def _modbus_sim(c: Courtyard, bus: Bus, baud: int) -> ModbusSimulator:
    from drivers.modbus.simbank import SlaveSim, load_profile
    from drivers.modbus.simulator import ModbusSimulator

    slaves: list[SlaveSim] = []
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


# ---- LoRa --------------------------------------------------------------------------------------
# Courtyard scenario -> (sensor report reason to start it, reason that ends it), per sensor kind.
LORA_REASONS: dict[tuple[str, str], str] = {
    ("smoke", "smoke"): "alarm", ("clear", "smoke"): "alarm_cleared",
    ("gas", "gas"): "alarm_high", ("clear", "gas"): "alarm_cleared",
    ("water_flow", "water_flow"): "flow_started", ("clear", "water_flow"): "flow_stopped",
    ("manhole_tilted", "manhole"): "tilt", ("clear", "manhole"): "tilt_cleared",
    ("battery_low", "smoke"): "battery_low", ("battery_low", "water_flow"): "battery_low",
    ("battery_low", "manhole"): "battery_low",
    # The installer's test press in the walk test: detectors have a test button; a flow switch is tested by
    # opening the riser's test valve, a manhole sensor by lifting the cover (each put back after TEST_HOLD_S).
    ("test_button", "smoke"): "self_test", ("test_button", "gas"): "self_test",
    ("test_button", "water_flow"): "flow_started", ("test_button", "manhole"): "tilt",
    # Care for residents living alone (issue 22): SOS button, door contact, water meter (Milesight payloads).
    ("sos", "sos_button"): "press", ("clear", "sos_button"): "cancel",
    ("door_opened", "door_contact"): "door_opened", ("clear", "door_contact"): "door_closed",
    ("water_used", "water_meter"): "water_used",
}
TEST_RESTORE = {"water_flow": "flow_stopped", "manhole": "tilt_cleared"}
TEST_HOLD_S = 2.0


def _lora_keyed(c: Courtyard, profile: str) -> tuple[bool, bool]:
    """(keyed, encrypted) as the profile says: the gateway frames-checks by the profile, so a key given
    to a keyless sensor made it send MIC frames the gateway rejected (`keying_mismatch`, issue 18:
    flow-riser-2 was never heard and the fire-confirmation rule could never fire)."""
    import tomllib

    with (c.profiles_dir / f"{profile}.toml").open("rb") as f:
        lora = tomllib.load(f).get("lora", {})
    return bool(lora.get("keyed", True)), bool(lora.get("encrypted", False))


def _lora_keys(c: Courtyard) -> dict[str, str]:
    """One AES-128 key per keyed LoRa sensor, made fresh at each start (they go to the 0600 credentials file)."""
    if c.lora_keys is None:
        import secrets

        devices = c.spec.lora.devices if c.spec.lora else ()
        c.lora_keys = {d.id: secrets.token_hex(16) for d in devices if _lora_keyed(c, d.profile)[0]}
    return c.lora_keys


async def _start_lora(c: Courtyard, bus: Bus) -> None:
    from drivers.lora.simsensors import SimSensor
    from drivers.lora.simulator import LoraSimulator

    sim = LoraSimulator(time_scale=c.time_scale)
    await sim.start(c.tty("lora"), create_pty=True)
    keys = _lora_keys(c)
    for d in bus.devices:
        key = bytes.fromhex(keys[d.id]) if d.id in keys else None
        encrypt = _lora_keyed(c, d.profile)[1]
        sim.add_sensor(SimSensor(int(d.address), c.types[d.id], key=key, encrypt=encrypt, rssi_dbm=c.rng.randint(-105, -70)))
    c.sims["lora"] = sim


def _lora_device(c: Courtyard, device: str) -> SimDevice | None:
    return next((d for d in (c.spec.lora.devices if c.spec.lora else ()) if d.id == device), None)


def _lora_trigger(c: Courtyard, name: str, d: SimDevice, duration_s: float) -> None:
    sim, addr, kind = c.sims["lora"], int(d.address), c.types[d.id]
    if name == "silent":
        sim.muted.add(addr)
        asyncio.get_running_loop().call_later(duration_s, sim.muted.discard, addr)
        return
    reason = LORA_REASONS.get((name, kind))
    if reason is None:
        raise ValueError(f"scenario {name!r} does not apply to {kind} device {d.id}")
    # A flow report carries the flow rate, which the fire-confirmation rule (flow_l_s > 0) reads.
    values = {"flow_l_s": 2.5} if reason == "flow_started" else {"flow_l_s": 0.0} if reason == "flow_stopped" else {}
    sim.trigger(addr, reason, **values)
    if name == "test_button" and kind in TEST_RESTORE:
        restore = TEST_RESTORE[kind]
        extra = {"flow_l_s": 0.0} if restore == "flow_stopped" else {}
        asyncio.get_running_loop().call_later(TEST_HOLD_S, lambda: sim.trigger(addr, restore, **extra))


# ---- NB-IoT modem and SMS modem ----------------------------------------------------------------
NBIOT_EVENTS = {"smoke": "alarm", "clear": "clear", "battery_low": "battery_low", "test_button": "self_test"}


async def _start_nbiot(c: Courtyard, bus: Bus) -> None:
    from drivers.cellular.simnbiot import NbiotModemSim, SmokeSensorSim, make_imei

    modem = NbiotModemSim(imei=make_imei(900001))
    await modem.start(c.tty("nbiot"), create_pty=True)
    c.nbiot_sensors = {}
    for i, d in enumerate(bus.devices):
        with (c.profiles_dir / f"{d.profile}.toml").open("rb") as f:
            import tomllib

            heartbeat_s = float(tomllib.load(f).get("heartbeat_s", 86400.0))
        sensor = modem.add_sensor(SmokeSensorSim(str(d.address), f"10.64.0.{10 + i}", port=40000, heartbeat_s=heartbeat_s, time_scale=c.time_scale))
        sensor.start()
        c.nbiot_sensors[d.id] = sensor
    c.sims["nbiot"] = modem


async def _start_sms(c: Courtyard) -> None:
    from drivers.cellular.simsms import SmsModemSim

    from drivers.cellular.simcall import Callee

    modem = SmsModemSim()
    # Scripted callees (issue 22): who answers the gateway's calls and presses 1; others answer, listen, hang up.
    modem.voice.callees = {number: Callee(**script) for number, script in c.spec.callees.items()}
    await modem.start(c.tty("sms"), create_pty=True)
    c.sims["sms"] = modem


async def _watch(c: Courtyard) -> None:
    """Say what the people in the courtyard would notice: the sounder, the strobe, an SMS arriving."""
    seen_sms = 0
    seen_calls = 0
    seen_gb = 0
    outputs: dict[tuple[str, str], Any] = {}
    relays = [(d.id, int(d.address)) for d in (c.spec.modbus_rtu.devices if c.spec.modbus_rtu else ()) if c.types[d.id] == "relay_box"]
    while True:
        await asyncio.sleep(0.2)
        sms = c.sims.get("sms")
        if sms is not None:
            texts = sms.texts()
            last = sms.sms[-1] if sms.sms else None
            if last is not None and last.concat is not None and last.concat[2] < last.concat[1]:
                texts = texts[:-1]  # a long SMS still arriving part by part: tell it once it is whole
            for number, text in texts[seen_sms:]:
                c.note("sms_received", to=number, text=text)
            seen_sms = len(texts)
            for call in sms.voice.calls[seen_calls:]:
                if call.outcome in ("dialling", "alerting", "active"):
                    break  # still going: noted once it has ended
                c.note("call_acknowledged" if call.keys[-1:] == ["1"] else "call_ended", to=call.number,
                       outcome=call.outcome, spoken=call.spoken[0] if call.spoken else "")
                seen_calls += 1
        centre = c.sims.get("gb26875")
        if centre is not None:
            for r in centre.received[seen_gb:]:
                if r.flag is not None and int(r.flag) == 2:  # part state: what the fire centre's screen shows
                    c.note("fire_centre_received", objects=len(r.objects))
            seen_gb = len(centre.received)
        for dev, unit in relays:
            for out in ("sounder", "strobe", "trouble"):
                try:
                    value = bool(c.sims["modbus_rtu"].output(unit, out))
                except KeyError:  # a relay box without a fault lamp
                    continue
                if outputs.get((dev, out), False) != value:
                    c.note(f"{out}_{'on' if value else 'off'}", device=dev)
                outputs[(dev, out)] = value


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
    if c.spec.lora is not None:
        await _start_lora(c, c.spec.lora)
    if c.spec.lorawan is not None:
        await lorawan_part.start(c)
    if c.spec.nbiot is not None:
        await _start_nbiot(c, c.spec.nbiot)
    if c.spec.sms:
        await _start_sms(c)
    if c.spec.gb26875_centre:
        from gateway.uplink.gb26875.simulator import Centre

        c.sims["gb26875"] = await Centre().start()
    c._spawn(_watch(c))


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
    if c.spec.lora is not None:
        out["lora"] = {"driver": "lora_e22", "path": c.tty("lora")}
    if c.spec.lorawan is not None:
        out["lorawan"] = lorawan_part.port_section(c)
    if c.spec.nbiot is not None:
        out["nbiot"] = {"driver": "nbiot_bc95", "mode": "modem", "path": c.tty("nbiot")}
    if c.spec.sms:
        out["sms"] = {"driver": "sms_ec200", "path": c.tty("sms")}
    return out


def device_ports(c: Courtyard) -> list[tuple[str, SimDevice]]:
    out: list[tuple[str, SimDevice]] = []
    for port, bus in (("rs485", c.spec.modbus_rtu), ("pumphouse", c.spec.modbus_tcp), ("lora", c.spec.lora), ("lorawan", c.spec.lorawan),
                      ("nbiot", c.spec.nbiot)):
        for d in bus.devices if bus else ():
            out.append((port, d))
    return out


def extra_sections(c: Courtyard) -> dict[str, Any]:
    centre = c.sims.get("gb26875")
    if centre is None:
        return {}
    return {"gb26875": {"enabled": True, "host": "127.0.0.1", "port": centre.port, "source_address": 0x000000000301,
                        "destination_address": centre.address, "heartbeat_period_s": 30.0}}


def credentials(c: Courtyard) -> dict[str, Any]:
    """Secrets of this run: LoRa sensor keys and the platform's command-signing key (key id "demo-ops"),
    fresh at each start; the platform side of a demo or test reads them from the 0600 file."""
    import secrets

    if c.command_key is None:
        c.command_key = secrets.token_hex(32)
    out: dict[str, Any] = {"command_keys": {"demo-ops": c.command_key}}
    keys = {**(_lora_keys(c) if c.spec.lora is not None else {}), **lorawan_part.keys(c)}
    if keys:
        out["lora_keys"] = keys
    return out


async def trigger(c: Courtyard, name: str, device: str, duration_s: float) -> None:
    if device in c.nbiot_sensors:
        event = NBIOT_EVENTS.get(name)
        if event is None:
            raise ValueError(f"scenario {name!r} does not apply to NB-IoT smoke detector {device}")
        c.nbiot_sensors[device].trigger(event)
        return
    if any(d.id == device for d in lorawan_part.devices(c)):
        lorawan_part.trigger(c, name, device, duration_s)
        return
    lora = _lora_device(c, device)
    if lora is not None:
        _lora_trigger(c, name, lora, duration_s)
        return
    if name == "test_button":
        return  # a polled Modbus device has no test button: its next answer ticks it in the walk test
    await _modbus_trigger(c, name, device, duration_s)
