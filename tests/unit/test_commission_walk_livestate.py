"""WalkSession's safety rules (what is tagged as a test and what stays a real alarm) and the live-state
snapshot that survives a restart (written atomically, tolerant of a read-only card)."""

from __future__ import annotations

import json
import os

import structlog

from gateway.commission.walk import PRESS_GRACE_S, WalkSession
from gateway.livestate import LiveState, SnapshotKeeper
from gateway.model import Device, DeviceType, Event, EventKind, Location, Reading, ResidentCategory, Stamp

DEVICES = {
    "smoke-1": Device("smoke-1", "lora_smoke_v1", DeviceType.SMOKE, "lora", 1, Location("1", "1", "202"),
                      ResidentCategory.ELDERLY_ALONE, heartbeat_s=43200),
    "smoke-2": Device("smoke-2", "lora_smoke_v1", DeviceType.SMOKE, "lora", 2, Location("2", "1", "301"), heartbeat_s=43200),
    "hydrant": Device("hydrant", "hydrant_monitor", DeviceType.HYDRANT, "rs485", 1, Location("1")),
}


def stamp(t: float) -> Stamp:
    return Stamp(1_790_000_000.0 + t, "boot", int(t * 1e9), True)


def alarm(dev: str, t: float) -> Event:
    return Event(dev, EventKind.ALARM, stamp(t), code="smoke", detail={"rssi_dbm": -90})


def test_first_alarm_is_the_test_press_later_ones_and_other_buildings_are_real():
    # Here the detectors report their test as an alarm (no test event in their profile).
    walk = WalkSession(DEVICES, "1", 600, 0.0, 1_790_000_000.0, "li", test_by_alarm=frozenset(DEVICES))
    assert set(walk.scope) == {"smoke-1", "hydrant"}
    tagged = walk.screen(alarm("smoke-1", 1.0))
    assert (tagged.kind, tagged.code, tagged.detail["original_kind"]) == (EventKind.TEST, "walk", "alarm")
    assert walk.screen(alarm("smoke-1", 5.0)).kind == EventKind.TEST  # the same press, repeated
    assert walk.screen(alarm("smoke-1", 2.0 + PRESS_GRACE_S)).kind == EventKind.ALARM  # a real fire later on
    assert walk.screen(alarm("smoke-2", 3.0)).kind == EventKind.ALARM  # building 2 is not being walked
    walk.screen(Reading("hydrant", stamp(4.0), {"pressure_mpa": 0.3}))
    report = walk.report(10.0)
    assert (report["done"], report["left"], report["tagged_as_test"]) == (2, 0, 2)
    rows = {d["id"]: d for b in report["buildings"] for f in b["flats"] for d in f["devices"]}
    assert rows["smoke-1"]["signal"] == {"rssi_dbm": -90} and rows["hydrant"]["how"] == "answered"


def test_a_detector_with_a_test_button_alarms_for_real_during_the_walk():
    walk = WalkSession(DEVICES, None, 600, 0.0, 1_790_000_000.0, "li")  # both smoke profiles have test/self_test
    assert walk.screen(alarm("smoke-2", 1.0)).kind == EventKind.ALARM  # a fire before the installer got there
    assert "smoke-2" not in walk.ticks
    assert walk.screen(Event("smoke-2", EventKind.TEST, stamp(2.0), code="self_test")).kind == EventKind.TEST
    assert walk.ticks["smoke-2"].how == "test_button" and walk.tagged == 0


def test_the_mode_ends_by_itself():
    walk = WalkSession(DEVICES, None, 120, 0.0, 1_790_000_000.0, "li", test_by_alarm=frozenset(DEVICES))
    assert walk.active(119.0)
    assert walk.screen(alarm("smoke-1", 121.0)).kind == EventKind.ALARM
    assert walk.report(130.0)["end_reason"] == "time_up"
    done = WalkSession({"smoke-1": DEVICES["smoke-1"]}, None, 3600, 0.0, 1_790_000_000.0, "li")
    done.screen(Event("smoke-1", EventKind.TEST, stamp(1.0), code="self_test"))
    assert done.active(1.0 + PRESS_GRACE_S / 2) and not done.active(2.0 + PRESS_GRACE_S)
    assert done.end_reason == "all_ticked"


class Clock:
    def __init__(self, mono: float, wall: float) -> None:
        self.mono, self.wall_s = mono, wall

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.wall_s


def test_restart_keeps_last_seen_values_and_signal(tmp_path):
    log = structlog.get_logger()
    path = tmp_path / "state" / "livestate.json"
    first = LiveState(DEVICES)
    first.observe(Reading("smoke-1", stamp(100.0), {"battery_pct": 88, "rssi_dbm": -97, "smoke_db_m": 0.02}))
    keeper = SnapshotKeeper(first, path, Clock(200.0, 1_790_000_200.0), log)
    assert keeper.save() and not first.dirty
    assert keeper.save()  # nothing changed: no write
    assert keeper.counters["saves"] == 1
    # The restart: a new boot's monotonic clock, an hour later by the wall clock.
    second = LiveState(DEVICES)
    restored = SnapshotKeeper(second, path, Clock(5.0, 1_790_003_700.0), log).load()
    assert restored == 1
    row = second.row("smoke-1", 5.0)
    assert (row["state"], row["last_seen_age_s"], row["battery"], row["signal"], row["restored"]) == ("online", 3600.0, 88, {"rssi_dbm": -97}, True)
    assert second.row("smoke-2", 5.0)["state"] == "unknown"  # never heard stays never heard
    assert second.history("smoke-1")["signal_history"][0]["rssi_dbm"] == -97


def test_a_read_only_card_costs_only_the_snapshot(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    state = LiveState(DEVICES)
    state.observe(Reading("hydrant", stamp(1.0), {"pressure_mpa": 0.3}))
    keeper = SnapshotKeeper(state, ro / "livestate.json", Clock(2.0, 1_790_000_002.0), structlog.get_logger())
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores the mode: make the path unwritable another way
            (ro / "livestate.json.tmp").mkdir()
        assert keeper.save() is False and keeper.counters["save_failures"] == 1 and state.dirty
    finally:
        os.chmod(ro, 0o700)
    (ro / "livestate.json").write_text("{not json")
    assert SnapshotKeeper(LiveState(DEVICES), ro / "livestate.json", Clock(0, 0), structlog.get_logger()).load() == 0
    (ro / "livestate.json").write_text(json.dumps({"version": 1, "devices": {"hydrant": {"last_seen_wall": "x"}}}))
    assert SnapshotKeeper(LiveState(DEVICES), ro / "livestate.json", Clock(0, 0), structlog.get_logger()).load() == 0


def test_alarm_ids_by_unique_prefix_and_silenced_shown():
    import asyncio
    import types

    import pytest

    from gateway.control.handlers import ControlApi
    from gateway.errors import CommandRejected
    from gateway.model import Alarm, AlarmState, Severity

    st = stamp(1.0)
    alarms = [Alarm(i, "smoke", "smoke-1", Severity.CRITICAL, AlarmState.RAISED, "烟感报警", st, st)
              for i in ("2fd5862b00000001", "2fd5aaaa00000002", "dd91cf5d00000003")]
    calls = []

    async def ack(alarm_id, by):
        calls.append((alarm_id, by))
        return "acknowledged"

    book = types.SimpleNamespace(by_id={"dd91cf5d00000003": types.SimpleNamespace(silenced=True)})
    rules = types.SimpleNamespace(active=lambda: alarms, ack=ack, book=book)
    api = ControlApi(types.SimpleNamespace(rules=rules))
    assert api.resolve_alarm("dd91") == "dd91cf5d00000003"
    with pytest.raises(CommandRejected) as amb:
        api.resolve_alarm("2fd5")
    assert amb.value.reason == "ambiguous_alarm"
    with pytest.raises(CommandRejected):
        api.resolve_alarm("dd9")  # too short to trust
    assert asyncio.run(api.alarm_ack({"alarm_id": "2fd58", "by": "li"})) == {"alarm_id": "2fd5862b00000001", "result": "acknowledged"}
    assert calls == [("2fd5862b00000001", "cli:li")]
    rows = {a["id"]: a for a in asyncio.run(api.alarms({}))}
    assert rows["dd91cf5d00000003"]["display_state"] == "silenced" and rows["dd91cf5d00000003"]["severity_name"] == "critical"
    assert rows["2fd5862b00000001"]["display_state"] == "raised" and rows["2fd5862b00000001"]["raised_wall_s"] == st.wall_s
