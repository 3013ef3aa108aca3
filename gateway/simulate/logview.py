"""The demo's narrative: one readable line, in the courtyard's local time, per thing a person would
notice (an alarm, the sounder, an SMS and to whom, the uplink cut and back), from the daemon's JSON log
lines and the simulated courtyard's `sim:` lines on stdin; everything else dropped.

    python -m gateway.simulate.logview --config gateway.toml < lines

The `sim: <word> k=v` lines themselves stay as they are (a stable interface, CLARIFICATIONS Turn 2);
this only retells them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
import tomllib
import zoneinfo
from typing import Any

# paho/our uplink's disconnect reasons in words (MQTT v5 reason codes, §2.4; 128 = unspecified error,
# which paho reports for a connection that simply dropped).
RC_WORDS = {"128": "the connection to the broker dropped", "7": "the connection to the broker dropped",
            "135": "the broker refused (not authorised)", "0": "closed normally"}
_SIM = re.compile(r"^sim: (?P<what>\S+)\s*(?P<rest>.*)$")
_KV = re.compile(r"(\w+)=(.*?)(?=\s\w+=|$)")


class Narrator:
    def __init__(self, tz: zoneinfo.ZoneInfo, contacts: dict[str, str], places: dict[str, str]) -> None:
        self.tz = tz
        self.contacts = contacts  # contact id / phone -> name
        self.places = places  # device id -> 2栋1单元301
        self.alarms: dict[str, str] = {}  # alarm id -> "rule on place"
        self.outputs: dict[str, bool] = {}  # relay output -> last state told

    def clock(self, iso: str | None = None) -> str:
        when = dt.datetime.fromisoformat(iso.replace("Z", "+00:00")) if iso else dt.datetime.now(dt.timezone.utc)
        return when.astimezone(self.tz).strftime("%H:%M:%S")

    def where(self, device: str) -> str:
        place = self.places.get(device, "")
        return f"{place} ({device})" if place else device

    def daemon(self, doc: dict[str, Any]) -> str | None:
        ev, g = doc.get("event", ""), doc.get
        if ev == "daemon_ready":
            return f"gateway started: {g('ports')} ports, {g('devices')} devices"
        if ev == "alarm_raised":
            self.alarms[str(g("alarm_id"))] = f"{g('rule')} at {self.where(str(g('device_id')))}"
            return f"ALARM {g('rule')} ({g('severity')}) at {self.where(str(g('device_id')))}, id {str(g('alarm_id'))[:8]}"
        if ev == "alarms_restored":
            return f"{g('count')} active alarms restored after the restart"
        if ev == "output_written":
            key, value = f"{g('device_id')}:{g('target')}", bool(g("value"))
            if self.outputs.get(key, False) == value:
                return None  # the start-up "off" and repeated writes are not news
            self.outputs[key] = value
            return f"guard-room {g('target')} {'ON' if value else 'off'}"
        if ev == "sms_sent":
            about = self.alarms.get(str(g("alarm_id")), str(g("alarm_id"))[:8])
            return f"SMS sent to {self.contacts.get(str(g('contact')), g('contact'))} (tier {int(g('tier') or 0) + 1}) about {about}"
        if ev == "sms_rate_limited":
            return f"SMS to {self.contacts.get(str(g('contact')), g('contact'))} held back by the per-person rate limit"
        if ev == "uplink_connected":
            return "uplink to the platform connected"
        if ev == "uplink_disconnected":
            return f"uplink to the platform LOST: {RC_WORDS.get(str(g('rc')), 'reason code ' + str(g('rc')))}; records queue on the SD card"
        if ev in ("slave_offline", "slave_online"):
            return f"{self.where(str(g('device_id')))} {'stopped answering' if ev == 'slave_offline' else 'answers again'}"
        if ev == "action_failed":
            return f"could not {g('action')} for {g('device_id')}: {g('error')}"
        if ev == "daemon_stopped":
            return "gateway stopped"
        if doc.get("level") in ("error", "critical"):
            return f"gateway error: {ev} {g('error', '')}".rstrip()
        return None

    def courtyard(self, what: str, kv: dict[str, str]) -> str | None:
        if what == "sms_received":
            who = self.contacts.get(kv.get("to", ""), kv.get("to", ""))
            return f"a phone rings: {who} reads \"{kv.get('text', '')}\""
        if what in ("sounder_on", "sounder_off", "strobe_on", "strobe_off"):
            return None  # the gateway's own line says it already
        if what == "triggered":
            return f"(scenario) {kv.get('scenario')} at {self.where(kv.get('device', ''))}"
        if what == "uplink_outage_started":
            return f"(scenario) the uplink is cut for {kv.get('duration_s')} s"
        if what == "uplink_outage_ended":
            return "(scenario) the uplink is back"
        if what == "fire_centre_received":
            return None
        return None

    def line(self, raw: str) -> str | None:
        raw = raw.rstrip("\n")
        if raw.startswith("{"):
            try:
                doc = json.loads(raw)
            except ValueError:
                return None
            text = self.daemon(doc)
            return None if text is None else f"{self.clock(doc.get('timestamp'))}  gateway    {text}"
        m = _SIM.match(raw)
        if m:
            text = self.courtyard(m.group("what"), dict(_KV.findall(m.group("rest"))))
            return None if text is None else f"{self.clock()}  courtyard  {text}"
        return None


def from_config(path: str | None) -> Narrator:
    tz, contacts, places = "Asia/Shanghai", {}, {}
    if path:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
        tz = cfg.get("notify", {}).get("timezone", tz)
        for c in cfg.get("contacts", []):
            contacts[c["id"]] = contacts[c["phone"]] = c["name"]
        for d in cfg.get("devices", []):
            parts = [f"{d['building']}栋" if d.get("building") else "", f"{d['unit']}单元" if d.get("unit") else "", d.get("room", "")]
            places[d["id"]] = "".join(parts)
    return Narrator(zoneinfo.ZoneInfo(tz), contacts, places)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", help="the gateway config: time zone, contact names, device places")
    args = ap.parse_args(argv)
    narrator: Narrator | None = None
    for raw in sys.stdin:
        if narrator is None:
            # The config may be written just after this starts (the simulator writes it): read it late.
            for _ in range(50):
                try:
                    narrator = from_config(args.config)
                    break
                except FileNotFoundError:
                    time.sleep(0.1)
            narrator = narrator or from_config(None)
        text = narrator.line(raw)
        if text:
            print(text, flush=True)


if __name__ == "__main__":
    main()
