"""`gateway test fire|power` through a real control socket to the daemon-side handlers, and `gateway tests`
reading what they recorded (issue 23)."""

from __future__ import annotations

import asyncio

import msgspec
import structlog
from click.testing import CliRunner

from gateway import log as logsetup
from gateway.cli.main import cli
from gateway.clock import Clock
from gateway.control.server import ControlServer
from gateway.model import Device, DeviceType, EventKind
from gateway.power.state import Condition, PowerEvent
from gateway.selfcheck import control
from gateway.selfcheck.config import SelfCheckSection
from gateway.selfcheck.inspections import Inspections
from gateway.selfcheck.journal import Journal
from gateway.selfcheck.runner import SelfCheckScheduler
from tests.integration.test_cli_inspection import write_config
from tests.support.wait import async_wait_for
from tests.unit.test_selfcheck import GOOD, Records

DEVICES = {"smoke-401": Device("smoke-401", "smoke", DeviceType.SMOKE, "lora", 1)}


async def test_fire_and_power_tests_over_the_socket_then_listed(tmp_path):
    conf = write_config(tmp_path)
    clock = Clock("assume_synced")
    journal = Journal(str(tmp_path / "state" / "tests.jsonl"))
    emitted: list = []
    cfg = msgspec.convert({"fire_test_clear_after_s": 60}, SelfCheckSection)
    insp = Inspections(cfg, clock, structlog.get_logger(), journal, Records(), "gw-inspect", emitted.append, DEVICES, True)
    sched = SelfCheckScheduler(cfg, clock, structlog.get_logger(), lambda: GOOD, Records(), "gw-inspect", journal)
    srv = ControlServer(str(tmp_path / "control.sock"), control.build(insp, sched), control.MUTATING, logsetup.get())
    task = asyncio.create_task(srv.run())
    loop = asyncio.get_running_loop()
    runner = CliRunner()

    def gw(*args: str):
        return loop.run_in_executor(None, lambda: runner.invoke(cli, [*args, "--config", conf]))

    try:
        await async_wait_for((tmp_path / "control.sock").exists, what="control socket")
        out = await gw("test", "fire")
        assert out.exit_code == 0, out.output
        assert "test alarm raised on smoke-401" in out.output
        assert emitted[0].kind == EventKind.ALARM and emitted[0].detail["test"] is True

        power = gw("test", "power", "--window", "30s")
        await async_wait_for(lambda: insp.power_test is not None, what="switchover test armed")
        insp.on_power_event(PowerEvent("on_battery", Condition.ON_BATTERY, True, "OB", clock.now()))
        insp.on_power_event(PowerEvent("on_mains", Condition.ON_BATTERY, False, "OL", clock.now()))
        out = await power
        assert out.exit_code == 0, out.output
        assert "armed for 30 s" in out.output and "PASSED" in out.output

        out = await gw("tests", "--since", "1d")
        assert out.exit_code == 0, out.output
        assert "fire_test" in out.output and "power_test" in out.output and "; 0 failed" in out.output
    finally:
        await insp.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
