"""The platform-relay path: same codec and de-dup as the modem path, via="platform-relay", clear rejections."""

from __future__ import annotations

import pytest
import structlog

from drivers.cellular.config import NbiotProfile
from drivers.cellular.ingest import Ingest
from drivers.cellular.relay import RelayIngest
from drivers.cellular.simnbiot import make_imei
from drivers.codecs import nbiot_smoke as c
from gateway.clock import ManualClock
from gateway.errors import CommandRejected
from gateway.model import Device, DeviceType, EventKind

IMEI = make_imei(1)


@pytest.fixture
def relay():
    clock = ManualClock()
    devices = (Device("smoke-1", "p", DeviceType.SMOKE, "nbiot", IMEI),)
    ingest = Ingest(devices, {"p": NbiotProfile(codec="nbiot_smoke_v1")}, clock, dedupe_window_s=600)
    items: list = []
    r = RelayIngest(ingest, items.append, clock, structlog.get_logger("test"))
    return r, items, clock


def body(seq: int, **kw):
    return {"imei": IMEI, "payload_hex": c.encode(IMEI, c.ALARM, seq).hex(), **kw}


def test_relayed_alarm_is_decoded_with_platform_time_and_via(relay):
    r, items, clock = relay
    assert r.submit(body(5, platform_time=clock.wall() - 3.0)) == {"device_id": "smoke-1", "duplicate": False, "items": 2,
                                                                   "replay_suspect": False}
    event = items[1]
    assert (event.kind, event.code, event.via) == (EventKind.ALARM, "smoke", "platform-relay")
    assert event.stamp.wall_s == clock.wall() - 3.0 and event.stamp.clock_synced


def test_retry_of_the_same_sequence_is_deduplicated_however_late(relay):
    r, items, clock = relay
    r.submit(body(5))
    assert r.submit({"device_id": "smoke-1", "payload_hex": body(5)["payload_hex"]})["duplicate"] is True
    assert len(items) == 2
    clock.advance(601)  # the old 600 s window let a replay through after ten minutes
    assert r.submit(body(5))["duplicate"] is True and len(items) == 2


def test_platform_time_days_off_is_not_believed(relay):
    r, items, clock = relay
    r.submit(body(1, platform_time=clock.wall() - 5 * 86400))
    assert items[0].stamp.wall_s == clock.wall() and r.ingest.counters["relay_time_skewed"] == 1


@pytest.mark.parametrize(("b", "reason"), [
    ([], "bad_body"),
    ({"payload_hex": "a5"}, "bad_body"),
    ({"imei": IMEI, "payload_hex": "xyz"}, "bad_body"),
    ({"imei": IMEI, "payload_hex": "a5" * 2000}, "bad_body"),
    ({"imei": make_imei(2), "payload_hex": "a501"}, "unknown_device"),
    ({"device_id": "nope", "payload_hex": "a501"}, "unknown_device"),
    ({"imei": IMEI, "payload_hex": "a501", "extra": 1}, "bad_body"),
    ({"imei": IMEI, "payload_hex": "a501"}, "bad_payload"),
    ({"imei": IMEI, "payload_hex": c.encode(IMEI, 1, 1).hex(), "platform_time": "yesterday"}, "bad_body"),
])
def test_bad_bodies_are_rejected_with_a_reason_and_counted(relay, b, reason):
    r, items, _ = relay
    with pytest.raises(CommandRejected) as e:
        r.submit(b)
    assert e.value.reason == reason and not items and r.ingest.counters["relay_rejected"] == 1


def test_imei_inside_payload_must_match_the_claimed_device(relay):
    r, items, _ = relay
    other = make_imei(3)
    with pytest.raises(CommandRejected):
        r.submit({"imei": IMEI, "payload_hex": c.encode(other, c.ALARM, 1).hex()})
    assert not items
