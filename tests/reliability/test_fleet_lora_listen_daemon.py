"""lora_listen end to end (issue 20): signed downlink commands over mosquitto to the real daemon on the
simulated courtyard. The listen starts and answers at once; while it runs, other commands are answered
at once (the one command worker is not held) and a smoke alarm sounds as ever; its frame is in the
report with its verdict and RSSI; the window's end removes the tap; a second listen meanwhile is busy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.fleet_rig import FleetRig

pytestmark = pytest.mark.slow


@pytest.fixture
async def frig(tmp_path: Path, broker: Any) -> AsyncIterator[FleetRig]:
    r = FleetRig(tmp_path, broker)
    await r.start_all()
    yield r
    codes = await r.stop()
    assert all(c == 0 for c in codes), f"daemon exit codes {codes}: {r.log.read_text()[-3000:]}"


async def test_remote_lora_listen_reports_the_alarm_frame_and_holds_nothing_up(frig: FleetRig) -> None:
    r = frig
    started = await r.send(r.signed("lora_listen", {"seconds": 6}))
    assert started["status"] == "accepted", started
    assert started["result"]["state"] == "listening" and "lora" in started["result"]["ports"]
    assert (await r.send(r.signed("lora_listen", {"seconds": 6})))["reason"] == "busy"
    t0 = time.monotonic()
    status = await r.send(r.signed("config_status", {}))  # the command worker is free during the window
    assert status["status"] == "accepted" and time.monotonic() - t0 < 5
    dev = r.smoke_device()
    await r.smoke(expect_sms=False, dev=dev)  # sounder on, as ever
    address = f"{dev.address if isinstance(dev.address, int) else int(dev.address, 0):08x}"

    async def report() -> dict[str, Any]:
        return (await r.send(r.signed("lora_listen_result", {})))["result"]

    rep = await report()
    mine = [f for f in rep["frames"] if f["device_id"] == dev.id]
    assert mine and mine[0]["verdict"] == "accepted" and mine[0]["source"] == address and mine[0]["rssi_dbm"] is not None
    assert rep["counts"].get("accepted", 0) >= 1 and rep["state"] in ("listening", "done")
    deadline = time.monotonic() + 20
    while (done := await report())["state"] != "done":  # bounded: the window is 6 s
        assert time.monotonic() < deadline, done
        await asyncio.sleep(0.5)
    assert done["state"] == "done" and done["end_reason"] == "time_up" and not done["truncated"]
    again = await r.send(r.signed("lora_listen", {"seconds": 1}))  # the slot is free again: the tap was removed
    assert again["status"] == "accepted"
