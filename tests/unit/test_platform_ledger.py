"""The reference platform's seq ledger: dedupe on (gateway_id, store_id, seq), holes, evictions, order-free."""

import random

from gateway.platform.decode import decode_batch, records_of, topic_parts
from gateway.platform.ledger import SeqLedger


def test_dedupe_is_per_gateway_and_store():
    led = SeqLedger()
    assert led.add("gw-1", "s-a", 1) and led.add("gw-1", "s-b", 1) and led.add("gw-2", "s-a", 1)
    assert not led.add("gw-1", "s-a", 1)
    assert led.duplicates == 1 and led.holes() == {}


def test_holes_are_reported_until_redelivery_fills_them_in_any_order():
    led = SeqLedger()
    seqs = list(range(100, 200))
    random.Random(7).shuffle(seqs)
    for s in seqs:
        if s not in (150, 151, 170):
            led.add("gw", "s", s)
    assert led.holes() == {("gw", "s"): [150, 151, 170]}
    for s in (151, 150, 170, 120):
        led.add("gw", "s", s)
    assert led.holes() == {} and led.duplicates == 1 and led.seen[("gw", "s")] == set(range(100, 200))
    st = led.stores[("gw", "s")]
    assert st.above == set() and (st.low, st.floor) == (100, 199)  # compacted to two integers


def test_a_late_lower_seq_extends_the_range_downwards():
    led = SeqLedger()
    for s in (10, 11, 12, 7):
        led.add("gw", "s", s)
    assert led.holes() == {("gw", "s"): [8, 9]}
    assert not led.add("gw", "s", 11) and led.add("gw", "s", 8) and led.add("gw", "s", 9)
    assert led.holes() == {}


def test_evictions_from_status_explain_holes():
    led = SeqLedger()
    for s in (1, 2, 6):
        led.add("gw", "s", s)
    led.note_evicted("gw", "s", 2)
    r = led.report()["gw/s"]
    assert (r["holes"], r["evicted"], r["unexplained_holes"], r["first_holes"]) == (3, 2, 1, [3, 4, 5])


def test_records_of_expands_a_batch_with_its_identity():
    doc = {"v": 1, "gateway_id": "gw-001", "store_id": "s", "boot_id": "b", "seq0": 1001, "t0_ms": 1790000000000,
           "d": ["hydrant-1", "hydrant-2"], "k": ["pressure_mpa", "door_open"],
           "r": [[0, 0, 0, 1, 0, 0.352, 1, False], [1, 1, 12, 1, 0, 0.348, 1, False]]}
    recs = records_of("telemetry", doc)
    assert [(r["seq"], r["device"], r["store_id"], r["values"]["pressure_mpa"]) for r in recs] == [
        (1001, "hydrant-1", "s", 0.352), (1002, "hydrant-2", "s", 0.348)]
    assert decode_batch(doc)[1]["ts_ms"] == 1790000000012
    assert topic_parts("cg/v1/gw-001/alarm") == ("gw-001", "alarm") and topic_parts("cg/v2/x/alarm") is None
    assert records_of("alarm", {"seq": "1"}) == [] and records_of("status", {"seq": 1}) == []


def test_the_consumer_imports_only_paho_and_the_standard_library():
    """docs/platform.md: a platform team can run gateway.platform without the daemon's dependencies."""
    import subprocess
    import sys

    code = ("import sys; import gateway.platform.consumer, gateway.platform.ledger, gateway.platform.signing; "
            "print(sorted(m for m in ('msgspec', 'structlog', 'click', 'cryptography', 'serial', 'pymodbus', 'sqlite_utils') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
