"""The alarm core's independence at unit level (issue 15): the rule engine with its store down, a manual
clear of a persisting condition, an NTP step back, the trouble monitor, the instance lock and the
control socket's limits."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import pytest

from gateway import instance
from gateway import log as logsetup
from gateway.actions.schema import Trouble
from gateway.clock import ManualClock
from gateway.control import server as control_server
from gateway.control.server import ControlServer, SocketInUse
from gateway.errors import ModbusDeviceError, StoreError
from gateway.model import EventKind
from gateway.trouble import TroubleMonitor
from tests.support.wait import async_wait_for
from tests.unit.rules_support import FakeContext, SqliteOutbox
from tests.unit.test_rules_engine import Rig, smoke

PUMP = {"kind": "event", "id": "pump-fault", "severity": "major", "title": "消防泵故障", "types": ["smoke"],
        "events": ["fault"], "codes": ["pump"], "actions": ["sms"]}


class DownOutbox(SqliteOutbox):
    """The store while the card is read-only: every transaction fails until `up` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.up = False

    async def transact(self, fn, durable: bool = True):
        if not self.up:
            raise StoreError("attempt to write a readonly database")
        return await super().transact(fn, durable)


# ---- the rule engine without its store ----------------------------------------------------------
async def test_store_down_at_start_the_alarm_still_sounds_and_texts_then_is_committed(tmp_path):
    rig = Rig(tmp_path)
    rig.outbox = DownOutbox(tmp_path / "ro.db")
    rig.engine = rig._engine()
    await rig.engine.start()  # does not raise: restore deferred
    assert rig.engine.restore_pending
    await async_wait_for(lambda: rig.engine.tasks.pending() == 0, 5, what="coils set at start")
    await rig.engine.on_item(rig.feed.event("smoke-401", EventKind.ALARM, "smoke"))
    await async_wait_for(lambda: rig.ctx.coil("sounder") is True, 5, what="sounder")
    await async_wait_for(lambda: len(rig.ctx.sms) == 3, 5, what="three SMS")
    assert rig.outbox.records("alarm.") == []  # journalled in memory: the committer keeps retrying
    assert rig.engine.committer.depth() >= 1
    rig.outbox.up = True
    await rig.engine.restore()
    await rig.engine.flush()
    assert [k for _, k, _, _ in rig.outbox.records("alarm.")] == ["alarm.raised"]
    assert not rig.engine.restore_pending
    await rig.engine.stop()


async def test_a_stored_alarm_raised_again_during_the_outage_is_superseded_not_duplicated(tmp_path):
    first = Rig(tmp_path)
    await first.engine.start()
    await smoke(first)  # committed: an active smoke alarm in the database
    (old,) = first.engine.active()
    await first.engine.stop()
    first.outbox.close()

    rig = Rig(tmp_path)
    rig.outbox = DownOutbox(tmp_path / "outbox.db")  # the same file, unreadable at start
    rig.engine = rig._engine()
    await rig.engine.start()
    await async_wait_for(lambda: rig.engine.tasks.pending() == 0, 5, what="coils set at start")
    await rig.engine.on_item(rig.feed.event("smoke-401", EventKind.ALARM, "smoke"))  # raised again, new id
    await async_wait_for(lambda: rig.ctx.coil("sounder") is True, 5, what="sounder")
    (new,) = rig.engine.active()
    assert new.id != old.id
    rig.outbox.up = True
    await rig.engine.restore()
    await rig.engine.flush()
    kinds = [(k, b["alarm_id"]) for _, k, _, b in rig.outbox.records("alarm.")]
    assert kinds == [("alarm.raised", old.id), ("alarm.cleared", old.id), ("alarm.raised", new.id)]
    assert [a.id for a in rig.engine.active()] == [new.id]
    await rig.engine.stop()


async def test_manual_clear_of_a_persisting_event_condition_raises_again_at_once(tmp_path):
    rig = Rig(tmp_path, rule_dicts=(PUMP,))
    await rig.engine.start()
    await rig.engine.on_item(rig.feed.event("smoke-401", EventKind.FAULT, "pump"))
    await rig.settle()
    (alarm,) = rig.engine.active()
    assert await rig.engine.clear(alarm.id, "cli:root") == "cleared_raised_again"
    (again,) = rig.engine.active()
    assert again.id != alarm.id and again.rule == "pump-fault"
    # Once the device reports the condition gone, a manual clear stays cleared.
    await rig.engine.on_item(rig.feed.event("smoke-401", EventKind.FAULT_CLEARED, "pump"))
    await rig.settle()
    if rig.engine.active():  # the rule does not auto-clear: clear by hand
        assert await rig.engine.clear(rig.engine.active()[0].id, "cli:root") == "cleared"
    assert rig.engine.active() == []
    await rig.engine.stop()


async def test_clock_stepping_back_an_hour_does_not_hold_back_the_alarm(tmp_path):
    clock = ManualClock(wall_s=1_795_893_120.0)
    rig = Rig(tmp_path, clock=clock)
    await rig.engine.start()
    await rig.tick(10)
    clock.step_wall(-3600)  # an NTP step back: monotonic timers are unaffected
    await smoke(rig)
    assert rig.ctx.coil("sounder") is True and len(rig.ctx.sms) == 3
    assert "02:12" in rig.ctx.sms[0][1]  # the SMS says the (stepped) local time, not a stale one
    await rig.engine.stop()


# ---- the trouble monitor ------------------------------------------------------------------------
class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __getattr__(self, level):
        return lambda event, **kw: self.events.append((event, kw))


async def test_trouble_output_follows_the_faults_and_retries_a_failed_write():
    ctx = FakeContext()
    state = {"store": "", "uplink": ""}
    changes = []
    mon = TroubleMonitor(Trouble(), "guard-relay", {k: (lambda k=k: state[k]) for k in state}, ctx.actuate,
                         ManualClock(), Log(), on_change=lambda f, on: changes.append((f.source, on)))
    assert mon.evaluate() == [] and not changes
    await mon.sync_outputs()
    assert ctx.coil("trouble") is False
    state["store"] = "attempt to write a readonly database"
    ctx.actuate_error = ModbusDeviceError("guard-relay", 4)
    (fault,) = mon.evaluate()
    assert (fault.source, fault.reason) == ("store", "attempt to write a readonly database")
    await mon.sync_outputs()
    assert ctx.coil("trouble") is False and mon.counters["output_write_failures"] == 1
    ctx.actuate_error = None
    await mon.sync_outputs()  # the next period writes again
    assert ctx.coil("trouble") is True
    state["store"] = ""
    mon.evaluate()
    await mon.sync_outputs()
    assert ctx.coil("trouble") is False
    assert changes == [("store", True), ("store", False)]


async def test_a_check_that_raises_is_itself_a_fault():
    def broken() -> str:
        raise RuntimeError("boom")

    mon = TroubleMonitor(Trouble(), "", {"gb26875": broken}, FakeContext().actuate, ManualClock(), Log())
    (fault,) = mon.evaluate()
    assert fault.source == "gb26875" and "boom" in fault.reason


# ---- one daemon per config ----------------------------------------------------------------------
def test_a_second_lock_on_the_same_directory_names_the_holder(tmp_path):
    first = instance.acquire([tmp_path / "state", tmp_path / "run"])
    try:
        with pytest.raises(instance.AlreadyRunning) as err:
            instance.acquire([tmp_path / "other", tmp_path / "run"])  # shares only the runtime directory
        assert err.value.pid == os.getpid() and f"PID {os.getpid()}" in str(err.value)
    finally:
        first.release()
    again = instance.acquire([tmp_path / "state", tmp_path / "run"])  # released: free again
    again.release()


def test_a_directory_that_cannot_hold_a_lock_is_skipped_not_fatal(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    lock = instance.acquire([blocker / "state", tmp_path / "run"])  # mkdir under a file fails
    try:
        assert [p for p, _ in lock.skipped] == [(blocker / "state").resolve()]
        assert len(lock.held) == 1
    finally:
        lock.release()


# ---- the control socket's limits -----------------------------------------------------------------
async def _server(tmp_path, monkeypatch, limit: int = 3):
    monkeypatch.setattr(control_server, "MAX_CONNECTIONS", limit)

    async def status(args):
        return {"ok": True}

    srv = ControlServer(str(tmp_path / "c.sock"), {"status": status}, set(), logsetup.get())
    task = asyncio.create_task(srv.run())
    await async_wait_for(lambda: (tmp_path / "c.sock").exists(), 5, what="socket")
    return srv, task


async def test_connections_beyond_the_cap_get_one_busy_reply_and_are_closed(tmp_path, monkeypatch):
    srv, task = await _server(tmp_path, monkeypatch)
    held = [await asyncio.open_unix_connection(str(tmp_path / "c.sock")) for _ in range(3)]
    await async_wait_for(lambda: srv._open == 3, 5, what="three open")
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "c.sock"))
    reply = json.loads(await asyncio.wait_for(reader.readline(), 5))
    assert reply["error"] == "busy" and await reader.read() == b""
    assert srv.counters["busy"] == 1
    for _, w in held:
        w.close()
    await async_wait_for(lambda: srv._open == 0, 5, what="all closed")
    reader, writer = await asyncio.open_unix_connection(str(tmp_path / "c.sock"))
    writer.write(b'{"id": 1, "cmd": "status"}\n' + b'{"id": 2, "cmd": "status", "args": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}\n")
    assert json.loads(await reader.readline())["ok"] is True
    deep = json.loads(await reader.readline())
    assert deep["ok"] is False and deep["error"] == "malformed" and "nested" in deep["detail"]
    writer.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_socket_that_still_answers_is_never_unlinked(tmp_path, monkeypatch):
    srv, task = await _server(tmp_path, monkeypatch)
    second = ControlServer(str(tmp_path / "c.sock"), {}, set(), logsetup.get())
    with pytest.raises(SocketInUse):
        await second.run()
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(tmp_path / "c.sock"))  # the first daemon's socket is still there and answers
    s.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
