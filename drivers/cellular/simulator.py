"""Cellular simulators for tests, the simulated courtyard and installers: the API classes and the click commands
`gateway simulate nbiot --pty LINK ...` and `gateway simulate sms-modem --pty LINK ...`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import click

from drivers.simport import serve_until_interrupted

from drivers.cellular.simmodem import AtModemSim, Faults
from drivers.cellular.simnbiot import NbiotModemSim, SentDatagram, SmokeSensorSim, make_imei
from drivers.cellular.simsms import SmsModemSim, SmsRecord

__all__ = ["AtModemSim", "Faults", "NbiotModemSim", "SentDatagram", "SmokeSensorSim", "SmsModemSim", "SmsRecord",
           "make_imei", "cli_nbiot", "cli_sms"]


def _faults(sim: AtModemSim, garbage_s: float, urc_s: float, loose_urc: bool) -> None:
    sim.faults.garbage_period_s, sim.faults.urc_period_s, sim.faults.strict_urc = garbage_s, urc_s, not loose_urc


def _serve(sim: AtModemSim, pty: str, banner: str, on_start: Callable[[], object] | None = None) -> None:
    async def start() -> None:
        await sim.start(pty, create_pty=True)
        if on_start is not None:
            on_start()
        click.echo(banner)

    serve_until_interrupted(start, sim.stop)


_common = [
    click.option("--pty", "pty", required=True, metavar="LINK", help="create a pty; the gateway opens LINK"),
    click.option("--baud", type=int, default=0, help="emulate UART wire time at this baud rate (0: off)"),
    click.option("--no-echo", is_flag=True, help="power up with echo off (ATE0)"),
    click.option("--garbage-s", type=float, default=0.0, help="NUL bytes / garbage lines every ~N s (0: off)"),
    click.option("--urc-s", type=float, default=0.0, help="harmless URCs every ~N s (0: off)"),
    click.option("--loose-urc", is_flag=True, help="URCs may also land inside a response (strict_urc=false)"),
    click.option("--network", type=click.Choice(["ok", "none", "denied"]), default="ok", show_default=True),
    click.option("--no-sim", is_flag=True, help="no SIM inserted (+CME ERROR: 10)"),
]

_F = TypeVar("_F", bound=Callable[..., Any])  # a click command function


def _with_common(fn: _F) -> _F:
    for option in reversed(_common):
        fn = option(fn)
    return fn


@click.command("nbiot")
@_with_common
@click.option("--sensors", type=click.IntRange(0, 500), default=3, show_default=True, help="NB-IoT smoke detectors (IMEIs from make_imei(1..N))")
@click.option("--heartbeat-s", type=float, default=86400.0, show_default=True, help="real heartbeat period of each detector")
@click.option("--time-scale", type=click.FloatRange(min=1.0), default=1.0, show_default=True, help="compress heartbeat periods")
@click.option("--alarm-after-s", type=float, default=0.0, help="detector 1 raises a smoke alarm after N s (0: never)")
def cli_nbiot(pty: str, baud: int, no_echo: bool, garbage_s: float, urc_s: float, loose_urc: bool, network: str, no_sim: bool,
              sensors: int, heartbeat_s: float, time_scale: float, alarm_after_s: float) -> None:
    """Simulate a Quectel BC95/BC28 NB-IoT modem and smoke detectors sending it datagrams, until Ctrl-C."""
    sim = NbiotModemSim(baud=baud, echo=not no_echo)
    sim.network, sim.sim_present = network, not no_sim
    _faults(sim, garbage_s, urc_s, loose_urc)
    detectors = [sim.add_sensor(SmokeSensorSim(make_imei(i), f"10.168.3.{100 + i}", 40000 + i, heartbeat_s, time_scale))
                 for i in range(1, sensors + 1)]

    def start() -> None:
        for d in detectors:
            d.start()
        if alarm_after_s > 0 and detectors:
            asyncio.get_running_loop().call_later(alarm_after_s, detectors[0].trigger, "alarm")

    imeis = ", ".join(d.imei for d in detectors) or "none"
    _serve(sim, pty, f"nbiot modem simulator on {pty}; detectors: {imeis}", start)


@click.command("sms-modem")
@_with_common
@click.option("--send-delay-s", type=float, default=2.0, show_default=True, help="time the module takes to send one SMS")
def cli_sms(pty: str, baud: int, no_echo: bool, garbage_s: float, urc_s: float, loose_urc: bool, network: str, no_sim: bool,
            send_delay_s: float) -> None:
    """Simulate a Quectel EC200-class SMS module; prints every SMS it is asked to send, until Ctrl-C."""
    sim = SmsModemSim(baud=baud, echo=not no_echo)
    sim.network, sim.sim_present, sim.send_delay_s = network, not no_sim, send_delay_s
    _faults(sim, garbage_s, urc_s, loose_urc)
    printed = 0

    async def show() -> None:
        nonlocal printed
        while True:
            await asyncio.sleep(0.2)
            for r in sim.sms[printed:]:
                click.echo(f"SMS to {r.number} part {r.concat or 1}: {r.text}  [{r.command} {r.pdu_hex}]")
            printed = len(sim.sms)

    _serve(sim, pty, f"sms modem simulator on {pty}", lambda: sim.spawn(show(), "show"))
