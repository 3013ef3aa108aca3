"""Wire encoding: every message matches its JSON Schema, batches are compact, lossless and never merge readings."""

import json

from gateway.model import RecordClass, Stamp
from gateway.uplink.wire import Envelope, TelemetryBatcher, decode_batch
from tests.unit.uplink_fakes import reading_record
from tests.unit.uplink_schema import check_message, errors, load

ENV = Envelope("gw-001", "5c0f6a58-3f0e-4b57-9d2c-0d3c8a1f2e77")
BOOT = "b7e3c1d2-0a4b-4c5d-8e9f-112233445566"


def _stamp(i: int, boot: str = BOOT, synced: bool = True) -> Stamp:
    return Stamp(1_790_000_000.0 + i * 0.1, boot, 1_000_000_000 + i * 100_000_000, synced)


def _readings(n: int, start_seq: int = 1, boot: str = BOOT) -> list:
    return [reading_record(start_seq + i, f"hydrant-{i % 4 + 1}", _stamp(i, boot), {"pressure_mpa": round(0.3 + i * 0.001, 3), "door_open": False})
            for i in range(n)]


def test_alarm_record_is_schema_valid_and_byte_identical_when_encoded_twice():
    stamp = _stamp(0, synced=False)
    a = ENV.record(42, RecordClass.ALARM, "alarm.raised", "smoke-2-401", stamp, {"title": "烟感报警 2栋1单元401", "severity": 0})
    b = ENV.record(42, RecordClass.ALARM, "alarm.raised", "smoke-2-401", stamp, {"title": "烟感报警 2栋1单元401", "severity": 0})
    assert a.payload == b.payload
    assert a.topic == "cg/v1/gw-001/alarm" and a.seqs == (42,)
    assert check_message(a.topic, a.payload) == []
    doc = json.loads(a.payload)
    assert (doc["seq"], doc["store_id"], doc["boot_id"], doc["clock_synced"]) == (42, ENV.store_id, BOOT, False)


def test_batch_round_trips_every_reading_with_its_own_seq_and_time():
    recs = _readings(50)
    msg = TelemetryBatcher(ENV, 500, 16384).take(recs)
    assert check_message(msg.topic, msg.payload) == []
    out = decode_batch(json.loads(msg.payload))
    assert [r["seq"] for r in out] == [r.seq for r in recs]
    assert [r["device"] for r in out] == [r.device for r in recs]
    assert [r["ts_ms"] for r in out] == [round(r.stamp.wall_s * 1000) for r in recs]
    assert [r["values"] for r in out] == [r.body["values"] for r in recs]


def test_two_readings_of_one_device_at_one_instant_stay_two_rows():
    stamp = _stamp(0)
    recs = [reading_record(7, "pump-1", stamp, {"running": True}), reading_record(8, "pump-1", stamp, {"running": False})]
    out = decode_batch(json.loads(TelemetryBatcher(ENV, 500, 16384).take(recs).payload))
    assert [(r["seq"], r["values"]["running"]) for r in out] == [(7, True), (8, False)]


def test_batch_respects_reading_and_byte_caps():
    recs = _readings(1000)
    by_count = TelemetryBatcher(ENV, 100, 256 * 1024).take(recs)
    assert len(by_count.seqs) == 100
    by_bytes = TelemetryBatcher(ENV, 10000, 2048).take(recs)
    assert len(by_bytes.payload) <= 2048 and 20 < len(by_bytes.seqs) < 1000


def test_batch_never_mixes_boot_ids_or_classes():
    recs = _readings(5, 1, "boot-a") + _readings(5, 6, "boot-b")
    msg = TelemetryBatcher(ENV, 500, 16384).take(recs)
    assert msg.seqs == (1, 2, 3, 4, 5) and json.loads(msg.payload)["boot_id"] == "boot-a"


def test_compact_batch_is_at_most_40_bytes_per_reading():
    recs = _readings(500)
    msg = TelemetryBatcher(ENV, 500, 256 * 1024).take(recs)
    assert len(msg.seqs) == 500
    assert len(msg.payload) / 500 <= 40, len(msg.payload) / 500


def test_status_and_reply_are_schema_valid():
    st = ENV.status(BOOT, _stamp(1), True, {"version": "0.1.0", "uptime_s": 3.5, "queue": {"alarm": 0, "telemetry": 12},
                                             "oldest_age_s": {}, "store_fault": "", "uplink_fault": "", "drivers": {}, "active_alarms": 0})
    assert st.retain and check_message(st.topic, st.payload) == []
    off = ENV.status(BOOT, _stamp(1), False, {"reason": "connection_lost"})
    assert check_message(off.topic, off.payload) == []
    rep = ENV.reply(BOOT, _stamp(2), "c-1", "ping", "accepted", "", {"pong": True})
    assert check_message(rep.topic, rep.payload) == []


def test_schema_checker_catches_extra_missing_and_mistyped_fields():
    schema = load("record")
    good = json.loads(ENV.record(1, RecordClass.EVENT, "event.tamper", "d-1", _stamp(0), {}).payload)
    assert errors(schema, good) == []
    assert errors(schema, {**good, "extra": 1})
    assert errors(schema, {k: v for k, v in good.items() if k != "seq"})
    assert errors(schema, {**good, "seq": "1"})
    assert errors(schema, {**good, "clock_synced": 1})
