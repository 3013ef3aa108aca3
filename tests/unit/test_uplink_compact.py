"""Telemetry batch v2 (issue 17): lossless round trip, the byte budget, tables sent once per session and found
by a platform that joins late or gets a batch before its table, and v1 and v2 decoded alike."""

import json
import random
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.model import Stamp
from gateway.platform.consumer import PlatformConsumer
from gateway.platform.decode import decode_batch, records_of
from gateway.platform.tables import TableCache, UnknownTable, table_hash
from gateway.uplink.compact import CompactBatcher, decimals, widen
from gateway.uplink.wire import Envelope, TelemetryBatcher
from tests.unit.uplink_fakes import reading_record
from tests.unit.uplink_schema import check_message

ENV = Envelope("gw-001", "5c0f6a58-3f0e-4b57-9d2c-0d3c8a1f2e77")
BOOT = "b7e3c1d2-0a4b-4c5d-8e9f-112233445566"
MQTT_PUBLISH_OVERHEAD_B = 35  # fixed header 3, topic cg/v1/gw-001/telemetry 2+22, packet id 2, properties 1 (+ slack)


def _stamp(ms: int, synced: bool = True, boot: str = BOOT) -> Stamp:
    return Stamp(1_790_000_000 + ms / 1000, boot, 1_000_000_000 + ms * 1_000_000, synced)


def _hydrants(n: int, seq0: int = 1, values: int = 4, rng: random.Random | None = None) -> list:
    """20 hydrant monitors polled every 100 ms, as in the benchmark (pressure to 0.1 kPa, °C to 0.1)."""
    rng = rng or random.Random(7)
    out = []
    for i in range(n):
        v = {"pressure_mpa": round(0.31 + rng.random() * 0.02, 4), "battery_pct": 87, "status": 0, "temperature_c": 12.5}
        if values == 5:
            v["report_age_s"] = rng.randrange(0, 30)
        out.append(reading_record(seq0 + i, f"h{i % 20 + 1:02d}", _stamp((i // 20) * 100 + i % 20), v))
    return out


def test_round_trip_is_exact_for_every_value_type_seq_gap_and_time_order():
    rng = random.Random(1)
    recs, seq = [], 100
    for i in range(300):
        seq += 1 + (3 if i % 50 == 49 else 0)  # alarms and events took some seqs in between
        values = {"p": round(rng.uniform(-5, 5), rng.randrange(0, 7)), "n": rng.randrange(-10**6, 10**6), "on": rng.random() < 0.5,
                  "word": rng.choice(["ok", "低电量", ""]), "none": None, "big": rng.random() * 1e12, "tiny": rng.random() * 1e-9}
        if i % 7 == 0:
            values = {"co_ppm": rng.randrange(0, 500)}  # another stream of the same device
        ms = i * 10 - (25 if i % 11 == 0 else 0)  # read times need not follow seq order
        recs.append(reading_record(seq, f"dev-{i % 9}", _stamp(ms), values))
    b = CompactBatcher(ENV, 500, 256 * 1024)
    msg = b.take(recs)
    assert check_message(msg.topic, msg.payload) == []
    out = decode_batch(json.loads(msg.payload))
    assert [r["seq"] for r in out] == [r.seq for r in recs] and msg.seqs == tuple(r.seq for r in recs)
    assert [r["device"] for r in out] == [r.device for r in recs]
    assert [r["ts_ms"] for r in out] == [round(r.stamp.wall_s * 1000) for r in recs]
    assert [r["values"] for r in out] == [r.body["values"] for r in recs]  # floats bit-exact
    assert all(r["clock_synced"] is True for r in out)


@settings(max_examples=2000, deadline=None)
@given(st.integers(min_value=1, max_value=6),
       st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=-1e4, max_value=1e4).map(lambda x: round(x, 3)),
                 st.integers(min_value=-(2**60), max_value=2**60), st.booleans()))
def test_widen_of_a_scaled_key_is_its_definition(e, v):
    """widen's fast path for a value that fits the key's exponent changes nothing: max(e, decimals(v)), or 0."""
    d = decimals(v)
    assert widen(e, v) == (0 if d is None else max(e, d))


def test_decimal_exponents_are_exact_and_only_widen():
    assert [decimals(x) for x in (12.5, 0.3149, 3.0, 7, 0.1 + 0.2, float("nan"), True, "x")] == [1, 4, 0, 0, None, None, None, None]
    assert widen(None, 0.5) == 1 and widen(1, 0.25) == 2 and widen(2, 0.5) == 2 and widen(2, True) == 0 and widen(0, 0.5) == 0
    assert widen(None, 87) == 0  # an integer key stays literal: its values decode as integers
    b = CompactBatcher(ENV, 500, 16384)
    first = b.take([reading_record(1, "t", _stamp(0), {"c": 0.5})])
    second = b.take([reading_record(2, "t", _stamp(1), {"c": 0.25})])
    d1, d2 = json.loads(first.payload), json.loads(second.payload)
    assert d1["h"] != d2["h"] and d2["tab"]["e"] == [2] and d2["r"][0][3] == 25  # a new table, sent inline


@pytest.mark.parametrize("values,budget", [(4, 40), (5, 40)])
def test_steady_batch_is_under_40_bytes_per_reading_with_mqtt_header(values, budget):
    b = CompactBatcher(ENV, 500, 16384)
    b.take(_hydrants(40, 1, values))  # the session's first batch carries the table
    msg = b.take(_hydrants(40, 41, values, random.Random(8)))
    assert "tab" not in json.loads(msg.payload)
    per_reading = (len(msg.payload) + MQTT_PUBLISH_OVERHEAD_B) / 40
    v1 = (len(TelemetryBatcher(ENV, 500, 16384).take(_hydrants(40, 41, values)).payload) + MQTT_PUBLISH_OVERHEAD_B) / 40
    assert per_reading <= budget and per_reading < 0.7 * v1, (per_reading, v1)


def test_table_goes_inline_and_retained_once_per_session():
    b = CompactBatcher(ENV, 500, 16384)
    m1 = b.take(_hydrants(20))
    t1 = b.pop_table()
    assert t1 is not None and t1.retain and t1.topic == "cg/v1/gw-001/table" and check_message(t1.topic, t1.payload) == []
    table = json.loads(t1.payload)
    assert table["h"] == json.loads(m1.payload)["h"] == table_hash(table["k"], table["e"], table["s"])
    assert json.loads(m1.payload)["tab"] == {k: table[k] for k in ("k", "e", "s")}
    m2 = b.take(_hydrants(20, 21))
    assert b.pop_table() is None and "tab" not in json.loads(m2.payload)
    b.session_start()  # reconnect: the broker or platform may have lost it
    m3 = b.take(_hydrants(20, 41))
    assert "tab" in json.loads(m3.payload) and b.pop_table() is not None
    assert b.table_doc(table["h"])["s"] == table["s"] and b.table_doc("nope") is None


def test_a_batch_never_mixes_clock_synced_or_boot_ids():
    recs = [reading_record(1, "a", _stamp(0, False), {"x": 1}), reading_record(2, "a", _stamp(1, True), {"x": 2}),
            reading_record(3, "a", _stamp(2, True, "boot-2"), {"x": 3})]
    b = CompactBatcher(ENV, 500, 16384)
    assert b.take(recs).seqs == (1,) and b.take(recs[1:]).seqs == (2,)
    assert json.loads(b.take(recs[2:]).payload)["boot_id"] == "boot-2"


def test_byte_cap_holds():
    msg = CompactBatcher(ENV, 10000, 2048).take(_hydrants(1000))
    assert len(msg.payload) <= 2048 and 20 < len(msg.seqs) < 1000
    assert decode_batch(json.loads(msg.payload))[-1]["seq"] == msg.seqs[-1]


def _consumer(received: list) -> PlatformConsumer:
    return PlatformConsumer("mqtt://127.0.0.1:1", on_record=received.append)  # never connected: fed by hand


def _feed(c: PlatformConsumer, topic: str, payload: bytes) -> None:
    c._on_message(None, None, SimpleNamespace(topic=topic, payload=payload, retain=False))


def test_a_platform_that_joins_late_parks_batches_until_the_retained_table_arrives():
    b = CompactBatcher(ENV, 500, 16384)
    b.take(_hydrants(20))  # the first batch (with the inline table) went to nobody
    table = b.pop_table()
    later = b.take(_hydrants(20, 21))
    got: list = []
    c = _consumer(got)
    with pytest.raises(UnknownTable):
        records_of("telemetry", json.loads(later.payload), TableCache())
    _feed(c, later.topic, later.payload)
    assert got == [] and c.snapshot()["parked"] == 1
    _feed(c, table.topic, table.payload)  # the broker's retained copy, on subscribe
    assert [r["seq"] for r in got] == list(range(21, 41)) and c.snapshot()["parked"] == 0 and c.undecodable == 0


def test_a_table_reply_unparks_and_a_forged_table_is_refused():
    b = CompactBatcher(ENV, 500, 16384)
    b.take(_hydrants(20))
    later = b.take(_hydrants(20, 21))
    got: list = []
    c = _consumer(got)
    _feed(c, later.topic, later.payload)
    forged = {**b.table_doc(), "k": ["x", "y", "z", "w"]}  # wrong hash for its content
    _feed(c, "cg/v1/gw-001/reply", json.dumps({"id": "1", "command": "table", "status": "accepted", "result": forged}).encode())
    assert got == [] and c.tables.rejected == 1
    _feed(c, "cg/v1/gw-001/reply", json.dumps({"id": "2", "command": "table", "status": "accepted", "result": b.table_doc()}).encode())
    assert len(got) == 20


def test_v1_and_v2_batches_of_the_same_readings_decode_alike_in_one_consumer():
    recs = _hydrants(60, values=5)
    v1 = TelemetryBatcher(ENV, 500, 16384).take(recs[:30])
    b = CompactBatcher(ENV, 500, 16384)
    v2 = b.take(recs[30:])
    assert check_message(v1.topic, v1.payload) == [] and check_message(v2.topic, v2.payload) == []
    got: list = []
    c = _consumer(got)
    _feed(c, v1.topic, v1.payload)
    _feed(c, v2.topic, v2.payload)
    assert [r["seq"] for r in got] == [r.seq for r in recs]
    assert [r["values"] for r in got] == [r.body["values"] for r in recs]
    assert {r["cls"] for r in got} == {"telemetry"} and {r["store_id"] for r in got} == {ENV.store_id}


def test_a_table_past_its_size_cap_starts_afresh_from_the_batch_and_still_decodes():
    from gateway.uplink import compact

    b = CompactBatcher(ENV, 500, 256 * 1024)
    tables = TableCache()
    for part in range(6):  # 6 x 100 devices, one stream each: the table outgrows TABLE_MAX_BYTES
        recs = [reading_record(part * 100 + i + 1, f"smoke-detector-{part}-{i:03d}", _stamp(i), {"battery_pct": 90}) for i in range(100)]
        msg = b.take(recs)
        doc = json.loads(msg.payload)
        assert len(json.dumps(doc.get("tab", {}))) <= compact.TABLE_MAX_BYTES + 4000  # one batch's streams at most beyond
        assert [r["device"] for r in decode_batch(doc, tables)] == [r.device for r in recs]
    assert len(b.book.current.streams) < 600


def test_the_documented_v2_example_decodes_as_docs_uplink_md_says():
    tab = {"k": ["door_open", "pressure_mpa"], "e": [0, 4], "s": [["hydrant-1", [0, 1]], ["hydrant-2", [0, 1]]]}
    assert table_hash(tab["k"], tab["e"], tab["s"]) == "77b59dd4aa43"
    doc = {"v": 2, "gateway_id": "gw-001", "store_id": "s", "boot_id": "b", "seq0": 1001, "t0_ms": 1790000000000, "cs": 1,
           "h": "77b59dd4aa43", "tab": tab, "r": [[0, 0, 0, False, 3520], [0, 1, 12, False, 3480], [1, 0, 988, True, 3510]]}
    out = decode_batch(doc)
    assert [(r["seq"], r["device"], r["ts_ms"] - 1790000000000) for r in out] == [(1001, "hydrant-1", 0), (1002, "hydrant-2", 12), (1004, "hydrant-1", 1000)]
    assert out[0]["values"] == {"door_open": False, "pressure_mpa": 0.352} and out[2]["clock_synced"] is True
