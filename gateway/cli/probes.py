"""Installer probes on a Modbus bus: `gateway modbus scan|read|write PORT`, PORT being a serial device
(RTU) or HOST:PORT / tcp://HOST:PORT (Modbus TCP, e.g. the pump station). On a serial port they run with
the daemon stopped; while it runs and holds the port they refuse politely (it answers `ports` on the
socket, and every opener takes the exclusive lock, so two masters never share one RS-485 bus). Modbus
TCP servers take several clients, so a TCP probe runs beside the daemon. Results are matched to the
configured devices (which unit is which device, which configured unit did not answer)."""

from __future__ import annotations

import asyncio
import os
import sys
import tomllib
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

import click

from gateway.cli import render
from gateway.cli.common import EXIT_FAIL, DaemonRefused, Target, Unreachable, ask, json_option, target_options
from gateway.control.client import DaemonUnavailable

if TYPE_CHECKING:
    from drivers.modbus.config import Order, RegisterType

T = TypeVar("T")

BAUDS = ["1200", "2400", "4800", "9600", "19200", "38400", "57600", "115200"]
REG_TYPES = ["uint16", "int16", "uint32", "int32", "float32", "bool"]
STOP_HINT = "stop it first (sudo systemctl stop courtyard-gateway), or use `gateway poll DEVICE` while it runs"


class PortBusy(Unreachable):
    """Another process (usually the daemon) holds the port."""


class UnitMatch(TypedDict):
    """One entry of `devices` / `missing` in `gateway modbus scan --json` (docs/CLI.md)."""

    unit: int
    device_id: str | None


def link_target(port: str) -> str:
    """What drivers.modbus.probe opens: a serial path as given, HOST:PORT as tcp://HOST:PORT."""
    if port.startswith("tcp://") or port.startswith("/") or port.startswith("."):
        return port
    if ":" in port:
        return f"tcp://{port}"
    return port


def configured_units(target: Target, port: str) -> dict[int, str]:
    """unit id -> device id of the config's devices on this bus (serial path or TCP host:port)."""
    try:
        with open(target.config_path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    names = set()
    for name, sec in (raw.get("ports") or {}).items():
        if not isinstance(sec, dict):
            continue
        if sec.get("path") and not port.startswith("tcp://") and os.path.realpath(str(sec["path"])) == os.path.realpath(port):
            names.add(name)
        if sec.get("host") and port == f"tcp://{sec['host']}:{sec.get('port', 502)}":
            names.add(name)
    out = {}
    for d in raw.get("devices") or []:
        if isinstance(d, dict) and d.get("port") in names and isinstance(d.get("address"), int):
            out[d["address"]] = str(d.get("id", ""))
    return out


def ensure_port_free(target: Target, path: str) -> None:
    """Raise PortBusy when the running daemon holds `path` (same device through any symlink)."""
    if path.startswith("tcp://"):
        return  # Modbus TCP servers serve several clients: the probe and the daemon can share
    try:
        ports = ask(target, "ports", timeout_s=3.0)
    except (DaemonUnavailable, DaemonRefused):
        return  # no daemon (or an older one): the exclusive open below still protects the bus
    want = os.path.realpath(path)
    for p in ports:
        if p.get("path") and os.path.realpath(p["path"]) == want:
            raise PortBusy(f"the gateway daemon holds {path} (port {p['port']}, {p['driver']}): {STOP_HINT}")


def run_probe(coro: Coroutine[Any, Any, T]) -> T:
    """Run one probe coroutine; the port-level failures become exit-3 messages."""
    from drivers.modbus.link import PortLost

    try:
        return asyncio.run(coro)
    except PortLost as exc:
        if "exclusive" in str(exc).lower() or "resource temporarily unavailable" in str(exc).lower():
            raise PortBusy(f"{exc}: another process has the port open; {STOP_HINT}") from None
        raise Unreachable(str(exc)) from None


def parse_ids(text: str) -> list[int]:
    """'1-247', '1,2,10-12' -> sorted unit ids, each 1..247 (0 is broadcast: it never answers)."""
    ids: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            a, b = int(lo), int(hi or lo)
            if not 1 <= a <= b <= 247:
                raise ValueError
            ids.update(range(a, b + 1))
    except ValueError:
        raise click.BadParameter(f"{text!r}: give unit ids 1..247 as '1-247' or '1,5,10-12'", param_hint="--ids") from None
    return sorted(ids)


def _port_options(f: Any) -> Any:
    f = click.option("--baud", type=click.Choice(BAUDS), default="9600", show_default=True)(f)
    f = click.option("--timeout", "timeout_s", type=click.FloatRange(0.02, 10), default=0.3, show_default=True,
                     help="seconds to wait for each answer")(f)
    return f


@click.group()
def modbus() -> None:
    """Modbus installer probes: RTU on a serial PORT (daemon stopped), TCP on HOST:PORT."""


@modbus.command()
@click.argument("port")
@click.option("--ids", "ids_text", default="1-247", show_default=True, help="unit ids to try, e.g. 1-30 or 1,5,10-12")
@_port_options
@target_options
@json_option
def scan(target: Target, port: str, ids_text: str, baud: str, timeout_s: float, as_json: bool) -> None:
    """Which slave ids answer on PORT (one FC03 read each)."""
    from drivers.modbus import probe

    ids = parse_ids(ids_text)
    port = link_target(port)
    ensure_port_free(target, port)
    found: list[int] = []
    with click.progressbar(length=len(ids), label=f"scanning {port} at {baud} baud", file=sys.stderr) as bar:
        def progress(unit: int, present: bool) -> None:
            bar.update(1)
            if present:
                found.append(unit)
                click.echo(f"\n  unit {unit} answered", err=True)

        run_probe(probe.scan(port, int(baud), ids, timeout_s, progress))
    known = configured_units(target, port)
    matched: list[UnitMatch] = [{"unit": u, "device_id": known.get(u)} for u in found]
    missing: list[UnitMatch] = [{"unit": u, "device_id": d} for u, d in sorted(known.items()) if u in ids and u not in found]
    if as_json:
        render.emit_json({"port": port, "baud": int(baud), "tried": len(ids), "found": found, "devices": matched, "missing": missing})
    else:
        click.echo(f"{len(found)} of {len(ids)} ids answered: {' '.join(map(str, found)) or 'none'}")
        for m in matched:
            click.echo(f"  unit {m['unit']:>3}  {m['device_id'] or 'not in the config'}")
        for m in missing:
            click.echo(f"  unit {m['unit']:>3}  {m['device_id']}: configured, did NOT answer")
    if missing:
        raise SystemExit(EXIT_FAIL)


def _decode_all(values: Sequence[int], reg_type: RegisterType, address: int, count: int, byte_order: Order, word_order: Order) -> list[dict[str, Any]]:
    from drivers.modbus.config import WIDTH, ModbusProfile, RegisterSpec
    from drivers.modbus.registers import decode
    from gateway.errors import CodecError

    width = WIDTH[reg_type]
    function: Literal[1, 3] = 1 if reg_type == "bool" else 3  # only selects bit vs register decoding here
    profile = ModbusProfile(byte_order=byte_order, word_order=word_order, registers=[])
    rows = []
    for i in range(count):
        chunk = [int(v) for v in values[i * width:(i + 1) * width]]
        spec = RegisterSpec(name="v", function=function, address=address + i * width, type=reg_type)
        try:
            value: Any = decode(spec, chunk, profile)
        except CodecError as exc:
            value = f"({exc.reason})"
        raw = " ".join(f"{w:04x}" for w in chunk) if reg_type != "bool" else str(chunk[0])
        rows.append({"address": address + i * width, "raw": raw, "value": value})
    return rows


@modbus.command()
@click.argument("port")
@click.argument("slave", type=click.IntRange(1, 247))
@click.argument("address", type=click.IntRange(0, 65535))
@click.option("--count", type=click.IntRange(1, 125), default=1, show_default=True, help="values to read")
@click.option("--type", "reg_type", type=click.Choice(REG_TYPES), default="uint16", show_default=True)
@click.option("--function", type=click.Choice(["1", "2", "3", "4"]), default=None,
              help="FC (default 3 holding registers; 1 coils for --type bool)")
@click.option("--byte-order", type=click.Choice(["big", "little"]), default="big", show_default=True)
@click.option("--word-order", type=click.Choice(["big", "little"]), default="big", show_default=True)
@_port_options
@target_options
@json_option
def read(target: Target, port: str, slave: int, address: int, count: int, reg_type: RegisterType, function: str | None,
         byte_order: Order, word_order: Order, baud: str, timeout_s: float, as_json: bool) -> None:
    """Read COUNT values of --type from SLAVE at ADDRESS (0-based protocol address)."""
    from drivers.modbus import probe
    from drivers.modbus.config import WIDTH

    fc = int(function) if function else (1 if reg_type == "bool" else 3)
    if (fc in (1, 2)) != (reg_type == "bool"):
        raise click.UsageError(f"function {fc} reads {'bits: use --type bool' if fc in (1, 2) else 'registers: not --type bool'}")
    port = link_target(port)
    ensure_port_free(target, port)
    n = count * WIDTH[reg_type]
    values = run_probe(probe.read(port, int(baud), slave, fc, address, n, max(timeout_s, 0.5)))
    rows = _decode_all(list(values), reg_type, address, count, byte_order, word_order)
    if as_json:
        render.emit_json({"port": port, "slave": slave, "device_id": configured_units(target, port).get(slave),
                          "function": fc, "type": reg_type, "values": rows})
        return
    click.echo(render.table(rows, [("ADDRESS", lambda r: r["address"]), ("RAW", lambda r: r["raw"]),
                                   ("VALUE", lambda r: r["value"])]))


def _coil(text: str) -> int:
    low = text.lower()
    if low in ("1", "on", "true"):
        return 1
    if low in ("0", "off", "false"):
        return 0
    raise click.BadParameter(f"{text!r}: a coil is on/off (1/0)")


@modbus.command()
@click.argument("port")
@click.argument("slave", type=click.IntRange(1, 247))
@click.argument("address", type=click.IntRange(0, 65535))
@click.argument("values", nargs=-1, required=True)
@click.option("--coil", is_flag=True, help="write coils (FC 5/15) instead of holding registers (FC 6/16)")
@click.option("--type", "reg_type", type=click.Choice(REG_TYPES[:-1]), default="uint16", show_default=True)
@click.option("--byte-order", type=click.Choice(["big", "little"]), default="big", show_default=True)
@click.option("--word-order", type=click.Choice(["big", "little"]), default="big", show_default=True)
@_port_options
@target_options
@json_option
def write(target: Target, port: str, slave: int, address: int, values: tuple[str, ...], coil: bool, reg_type: RegisterType,
          byte_order: Order, word_order: Order, baud: str, timeout_s: float, as_json: bool) -> None:
    """Write VALUES to SLAVE at ADDRESS, e.g. `write PORT 10 0 on --coil` switches the sounder on."""
    from drivers.modbus import probe
    from drivers.modbus.registers import encode

    if coil:
        words = [_coil(v) for v in values]
        fc = 5 if len(words) == 1 else 15
    else:
        try:
            words = [w for v in values for w in encode(reg_type, float(v), byte_order=byte_order, word_order=word_order)]
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="VALUES") from None
        fc = 6 if len(words) == 1 else 16
    port = link_target(port)
    ensure_port_free(target, port)
    run_probe(probe.write(port, int(baud), slave, fc, address, words, max(timeout_s, 0.5)))
    if as_json:
        render.emit_json({"port": port, "slave": slave, "device_id": configured_units(target, port).get(slave),
                          "address": address, "function": fc, "values": list(values), "words": words, "ok": True})
    else:
        click.echo(f"unit {slave}: wrote {' '.join(values)} at {address} (function {fc})")
