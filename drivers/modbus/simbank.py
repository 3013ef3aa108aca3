"""The simulator's data side: one simulated slave's four tables, served through pymodbus's own
request PDUs (their `datastore_update` implements the Modbus semantics), values by field name,
injectable faults, and plausible drift per device type."""

from __future__ import annotations

import random
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import msgspec
from pymodbus.constants import ExcCodes

from drivers.modbus.config import WIDTH, ModbusProfile, RegisterSpec
from drivers.modbus.registers import decode, encode

# pymodbus function code -> our table: c coils, d discrete inputs, h holding, i input registers
_TABLE = {1: "c", 5: "c", 15: "c", 2: "d", 3: "h", 6: "h", 16: "h", 4: "i"}
_READ_TABLE = {"c": 1, "d": 2, "h": 3, "i": 4}


@dataclass
class Fault:
    """Per-slave fault knobs. Combine freely; `silent` wins."""

    silent: bool = False  # never answer (a dead slave, or an address nobody has)
    late_ms: int = 0  # answer this much later than normal
    bad_crc: bool = False  # flip the CRC (RTU) / corrupt the MBAP header (TCP)
    exception: int = 0  # answer every request with this exception code
    wrong_unit: bool = False  # answer with unit id + 1
    truncated: bool = False  # send only the first half of the reply


class FaultKnobs(TypedDict, total=False):
    """Fault's fields as keyword arguments (ModbusSimulator.set_fault)."""

    silent: bool
    late_ms: int
    bad_crc: bool
    exception: int
    wrong_unit: bool
    truncated: bool


def load_profile(path: Path) -> tuple[str, ModbusProfile]:
    """(device type, [modbus] table) of a profile file. Raises ValueError with the reason."""
    try:
        raw = tomllib.loads(path.read_text())
        return str(raw.get("type", "")), msgspec.convert(raw.get("modbus"), ModbusProfile)
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"{path}: {exc}") from None


class SlaveSim:
    """One simulated slave. Addresses outside the span its profile maps answer exception 2
    (illegal data address), as real devices do; gaps inside the span read as 0."""

    def __init__(self, unit: int, kind: str, profile: ModbusProfile, seed: int | None = None) -> None:
        self.unit, self.kind, self.profile = unit, kind, profile
        self.tables: dict[str, dict[int, int]] = {t: {} for t in "cdhi"}
        self.span: dict[str, tuple[int, int]] = {}
        self.fields = {r.name: r for r in profile.registers}
        for r in profile.registers:
            t = "cdhi"[r.function - 1]
            lo, hi = self.span.get(t, (r.address, r.address))
            self.span[t] = (min(lo, r.address), max(hi, r.address + WIDTH[r.type] - 1))
        for spec in profile.outputs.values():
            t = "c" if spec.function in (5, 15) else "h"
            lo, hi = self.span.get(t, (spec.address, spec.address))
            self.span[t] = (min(lo, spec.address), max(hi, spec.address + WIDTH[spec.type] - 1))
        self.fault = Fault()
        self.rng = random.Random(seed if seed is not None else unit)
        self.requests: list[tuple[int, int, int]] = []  # (function, address, count) as received
        _initial_values(self)

    # -- pymodbus datastore interface (called by request PDUs' datastore_update) --------------

    def get(self, fc: int, address: int, count: int) -> list[int] | list[bool] | ExcCodes:
        t = _TABLE.get(fc)
        if t is None:
            return ExcCodes.ILLEGAL_FUNCTION
        lo, hi = self.span.get(t, (1, 0))
        if address < lo or address + count - 1 > hi:
            return ExcCodes.ILLEGAL_ADDRESS
        vals = [self.tables[t].get(a, 0) for a in range(address, address + count)]
        return [bool(v) for v in vals] if t in "cd" else vals

    def put(self, fc: int, address: int, values: Sequence[int]) -> ExcCodes | None:
        t = _TABLE.get(fc)
        if t not in ("c", "h"):
            return ExcCodes.ILLEGAL_FUNCTION
        lo, hi = self.span.get(t, (1, 0))
        if address < lo or address + len(values) - 1 > hi:
            return ExcCodes.ILLEGAL_ADDRESS
        for i, v in enumerate(values):
            self.tables[t][address + i] = int(v)
        return None

    # -- by field name --------------------------------------------------------------------------

    def _spec(self, name: str) -> RegisterSpec:
        if name not in self.fields:
            raise KeyError(f"unit {self.unit} ({self.kind}) has no field {name!r}; fields: {', '.join(self.fields)}")
        return self.fields[name]

    def value(self, name: str) -> float | int | bool:
        spec = self._spec(name)
        t = "cdhi"[spec.function - 1]
        regs = [self.tables[t].get(spec.address + i, 0) for i in range(WIDTH[spec.type])]
        return decode(spec, regs, self.profile)

    def set(self, name: str, value: float | int | bool) -> None:
        spec = self._spec(name)
        t = "cdhi"[spec.function - 1]
        regs = encode(spec.type, value, spec.scale, spec.offset, spec.byte_order or self.profile.byte_order,
                      spec.word_order or self.profile.word_order)
        for i, r in enumerate(regs):
            self.tables[t][spec.address + i] = r

    def set_flag(self, code: str, on: bool) -> None:
        for f in self.profile.flags:
            if f.code == code:
                cur = int(self.value(f.source))
                self.set(f.source, (cur | 1 << f.bit) if on else (cur & ~(1 << f.bit)))
                return
        raise KeyError(f"unit {self.unit} has no flag {code!r}")

    def output(self, name: str) -> int | bool:
        spec = self.profile.outputs[name]
        if spec.function in (5, 15):
            return bool(self.tables["c"].get(spec.address, 0))
        return self.tables["h"].get(spec.address, 0)

    def raw(self, fc: int, address: int) -> int:
        return self.tables["cdhi"[fc - 1]].get(address, 0)

    def tick(self, dt_s: float) -> None:
        _DRIFT.get(self.kind, _no_drift)(self, dt_s)


class SimContext:
    """The two-method context pymodbus's request PDUs call; unit -> SlaveSim."""

    def __init__(self, slaves: dict[int, SlaveSim]) -> None:
        self.slaves = slaves

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1) -> list[int] | list[bool] | ExcCodes:
        return self.slaves[device_id].get(func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]) -> ExcCodes | None:
        return self.slaves[device_id].put(func_code, address, list(values))


def _initial_values(s: SlaveSim) -> None:
    start = {"pressure_mpa": 0.32, "battery_pct": 87, "temperature_c": 12.5, "outlet_pressure_mpa": 0.45,
             "tank_level_m": 3.2, "pump1_auto": True, "pump2_auto": True, "pump1_run_h": 1234.5,
             "pump2_run_h": 987.6, "outlet_flow_lps": 0.0}
    for name, v in start.items():
        if name in s.fields:
            s.set(name, v)


def _walk(s: SlaveSim, name: str, sigma: float, lo: float, hi: float, toward: float, pull: float) -> None:
    if name in s.fields:
        v = float(s.value(name))
        v += s.rng.gauss(0, sigma) + (toward - v) * pull
        s.set(name, min(hi, max(lo, v)))


def _hydrant(s: SlaveSim, dt: float) -> None:
    # Municipal pressure wanders around 0.30 MPa (night-time highs, morning dips).
    _walk(s, "pressure_mpa", 0.002 * dt, 0.0, 1.6, 0.30, 0.02 * dt)
    if "report_age_s" in s.fields:
        age = int(s.value("report_age_s")) + dt
        s.set("report_age_s", 0 if age > 60 else age)


def _pump_station(s: SlaveSim, dt: float) -> None:
    # Pump 1 starts when outlet pressure sags below 0.30 MPa, stops above 0.50 MPa; a running
    # pump raises pressure and draws the tank down, the inflow valve refills it slowly.
    p = float(s.value("outlet_pressure_mpa"))
    running = bool(s.value("pump1_running"))
    if running and p > 0.50:
        running = False
    elif not running and p < 0.30 and bool(s.value("pump1_auto")):
        running = True
    s.set("pump1_running", running)
    s.set("outlet_flow_lps", 15.0 + s.rng.gauss(0, 0.3) if running else 0.0)
    _walk(s, "outlet_pressure_mpa", 0.003 * dt, 0.0, 2.5, 0.60 if running else 0.25, 0.05 * dt)
    level = float(s.value("tank_level_m")) + (-0.004 if running else 0.001) * dt
    s.set("tank_level_m", min(5.0, max(0.0, level)))
    s.set("tank_low", level < 1.0)
    s.set("tank_high", level > 4.8)
    if running:
        s.set("pump1_run_h", float(s.value("pump1_run_h")) + dt / 3600)


def _no_drift(s: SlaveSim, dt: float) -> None:
    pass


_DRIFT = {"hydrant": _hydrant, "pump_station": _pump_station}
