"""lora_listen's window (gateway/fleet/listen.py) and the drivers' tap (drivers/tap.py) on their own: the
cap (count and bytes) keeps the reply under the command limit and says so, counts go on past it; the
arguments are checked; one listen at a time; the downlink door answers at once."""

from __future__ import annotations

import json

import pytest

from drivers.base import Heard
from drivers.tap import Tap
from gateway.clock import ManualClock
from gateway.errors import CommandRejected
from gateway.fleet.listen import MAX_FRAMES, MAX_FRAMES_BYTES, RadioListen
from gateway.log import get as get_log
from gateway.uplink.commands import MAX_COMMAND_BYTES


class FakeRadio:
    """Only the RadioTap surface (run/health/add_observer) over a real Tap."""

    name = "fake"

    def __init__(self) -> None:
        self.tap = Tap(get_log())

    async def run(self, emit) -> None: ...

    def health(self): ...

    def add_observer(self, observer):
        return self.tap.add(observer)


def frame(i: int, verdict: str = "accepted", source: str = "1a2b3c4d") -> Heard:
    return Heard("lora", source, "smoke-2-1-401", verdict, 24, "report", i, -97.0)


async def test_the_cap_truncates_the_list_and_keeps_counting():
    clock, radio = ManualClock(), FakeRadio()
    listen = RadioListen(lambda: {"lora": radio, "modbus": object()}, lambda: clock)
    w = listen.start({"seconds": 60})
    for i in range(1000):
        radio.tap.notify(frame(i, "replay_suspect" if i % 10 == 0 else "accepted"))
    report = w.report()
    assert len(report["frames"]) == MAX_FRAMES and report["truncated"] and report["not_listed"] == 1000 - MAX_FRAMES
    assert report["heard"] == 1000 and report["counts"] == {"accepted": 900, "replay_suspect": 100}
    assert report["frames"][0]["fcnt"] == 0  # the first frames are kept, the later ones counted
    reply = json.dumps({"id": "x" * 128, "command": "lora_listen_result", "status": "accepted", "result": report})
    assert len(reply.encode()) < MAX_COMMAND_BYTES
    w.close()
    assert radio.tap.observers == []


async def test_the_byte_cap_holds_for_long_sources():
    clock, radio = ManualClock(), FakeRadio()
    w = RadioListen(lambda: {"lora": radio}, lambda: clock).start({"seconds": 5})
    for i in range(150):
        radio.tap.notify(frame(i, source="f" * 300))
    assert w.frames_bytes <= MAX_FRAMES_BYTES and len(w.frames) < 150 and w.report()["truncated"]
    assert len(json.dumps(w.report()["frames"], separators=(",", ":")).encode()) <= MAX_FRAMES_BYTES + 2  # as replies are encoded
    w.close()


async def test_frames_after_the_window_are_ignored_and_a_late_observer_call_is_harmless():
    clock, radio = ManualClock(), FakeRadio()
    w = RadioListen(lambda: {"lora": radio}, lambda: clock).start({"seconds": 5})
    radio.tap.notify(frame(1))
    clock.advance(5.01)  # the end timer has not run yet: the observer itself refuses
    radio.tap.notify(frame(2))
    assert w.heard == 1 and w.report()["state"] == "listening"
    w.close()
    assert w.report()["state"] == "done" and w.report()["elapsed_s"] == pytest.approx(5.0)


@pytest.mark.parametrize("args", [{"seconds": 0}, {"seconds": 121}, {"seconds": True}, {"seconds": "30"}, {"port": ""}, {"port": 5}])
async def test_bad_arguments_are_refused(args):
    listen = RadioListen(lambda: {"lora": FakeRadio()}, lambda: ManualClock())
    with pytest.raises(CommandRejected) as exc:
        listen.start(args)
    assert exc.value.reason == "bad_args"


async def test_no_radio_busy_and_the_remote_door():
    clock, radio = ManualClock(), FakeRadio()
    listen = RadioListen(lambda: {"lora": radio, "modbus": object()}, lambda: clock)
    with pytest.raises(CommandRejected) as exc:
        await listen.result({})
    assert exc.value.reason == "no_listen"
    with pytest.raises(CommandRejected) as exc:
        listen.start({"port": "modbus"})
    assert exc.value.reason == "no_radio"
    started = await listen.start_remote({"seconds": 10, "port": "lora"})
    assert started["state"] == "listening" and started["ports"] == ["lora"]
    with pytest.raises(CommandRejected) as exc:
        await listen.start_remote({"seconds": 10})
    assert exc.value.reason == "busy"
    radio.tap.notify(frame(7, "unknown_device"))
    partial = await listen.result({})
    assert partial["state"] == "listening" and partial["counts"] == {"unknown_device": 1}
    listen.window.close()
    assert (await listen.result({}))["state"] == "done"


async def test_the_tap_is_bounded_and_isolates_a_failing_observer():
    tap = Tap(get_log(), limit=2)
    seen: list[Heard] = []
    tap.add(seen.append)
    remove = tap.add(lambda h: 1 / 0)
    with pytest.raises(CommandRejected) as exc:
        tap.add(seen.append)
    assert exc.value.reason == "busy"
    tap.notify(frame(1))
    tap.notify(frame(2))
    assert [h.fcnt for h in seen] == [1, 2] and tap.errors == 1 and len(tap.observers) == 1
    remove()  # removing an already removed observer is harmless


def test_sources_are_read_from_any_bytes_without_raising():
    from drivers.lora.frame import FrameType, encode
    from drivers.lora.health import heard
    from drivers.lorawan.mac import source_of
    from gateway.errors import FrameError

    assert source_of(b"") == ("", "") and source_of(b"\x41") == ("", "")  # empty; Major != 0
    assert source_of(b"\x40\x01") == ("unconfirmed_up", "")  # too short for a DevAddr
    assert source_of(b"\x40\xda\x1b\x01\x26" + bytes(8)) == ("unconfirmed_up", "26011bda")
    assert source_of(b"\xe0\x00") == ("proprietary", "")
    raw = encode(0x1A2B3C4D, 9, FrameType.REPORT, b"\x01", None)
    h = heard("lora", FrameError("bad_crc", raw[:10]), "bad_crc", {})
    assert (h.source, h.device_id, h.length, h.fcnt, h.rssi_dbm) == ("1a2b3c4d", "", len(raw), 9, None)
    assert heard("lora", FrameError("overflow", b"\x00\x01\x02\x03\x04\x05\x06\x07"), "overflow", {}).source == ""
    assert heard("lora", FrameError("bad_version", b"\xa5\x09"), "bad_version", {}).length == 2
