"""The demo's narrative: daemon JSON lines and courtyard `sim:` lines retold in the courtyard's local time
with names and places; the platform's backlog summary says alarms came first and whether seq has a gap."""

from __future__ import annotations

import json
import zoneinfo

from gateway.simulate.logview import Narrator
from gateway.simulate.platform import backlog_summary

NARRATOR = Narrator(zoneinfo.ZoneInfo("Asia/Shanghai"), {"rel-2-1-301": "周家属", "+8613900000009": "周家属"},
                    {"smoke-2-1-301": "2栋1单元301"})


def daemon_line(**fields) -> str:
    return json.dumps({"timestamp": "2026-12-01T11:30:35.000000Z", "level": "info", **fields}, ensure_ascii=False)


def test_daemon_lines_in_local_time_with_places_and_names():
    raised = NARRATOR.line(daemon_line(event="alarm_raised", alarm_id="2fd5862b00000001", rule="smoke-alarm",
                                       device_id="smoke-2-1-301", severity="critical"))
    assert raised == "19:30:35  gateway    ALARM smoke-alarm (critical) at 2栋1单元301 (smoke-2-1-301), id 2fd5862b"
    sms = NARRATOR.line(daemon_line(event="sms_sent", alarm_id="2fd5862b00000001", tier=0, contact="rel-2-1-301"))
    assert sms.endswith("SMS sent to 周家属 (tier 1) about smoke-alarm at 2栋1单元301 (smoke-2-1-301)")
    lost = NARRATOR.line(daemon_line(event="uplink_disconnected", level="warning", rc=128))
    assert "uplink to the platform LOST: the connection to the broker dropped" in lost and "rc" not in lost
    assert NARRATOR.line(daemon_line(event="output_written", device_id="guard-relay", target="sounder", value=False)) is None
    assert NARRATOR.line(daemon_line(event="output_written", device_id="guard-relay", target="sounder", value=True)).endswith("sounder ON")
    assert NARRATOR.line(daemon_line(event="frame_rejected")) is None  # not something a person notices


def test_courtyard_lines_keep_their_words_and_are_retold():
    told = NARRATOR.line("sim: sms_received to=+8613900000009 text=【社区消防】12月1日19:30 新鸿社区3号院2栋1单元301室 烟感报警，请立即联系老人或拨打119")
    assert told.endswith('a phone rings: 周家属 reads "【社区消防】12月1日19:30 新鸿社区3号院2栋1单元301室 烟感报警，请立即联系老人或拨打119"')
    assert NARRATOR.line("sim: sounder_on device=guard-relay") is None  # the gateway's own line tells it


def test_backlog_summary():
    assert backlog_summary(["alarm", "alarm", "event"] + ["telemetry"] * 113, 0) == \
        "backlog delivered: 2 alarms first, then 1 event and 113 readings, no gap"
    assert backlog_summary(["telemetry", "alarm"], 2) == "backlog delivered: 1 reading, then 1 alarm, 2 seq numbers MISSING"
