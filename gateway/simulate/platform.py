"""The street platform's side, for the demo and the tests: subscribes to a gateway's uplink subtree,
tells alarms and events as they arrive (in the courtyard's time zone, with place names), counts
telemetry, says how a backlog arrived after an outage, and checks the seq contract (holes,
duplicates) per (gateway_id, store_id).

    python -m gateway.simulate.platform --broker mqtt://127.0.0.1:1883 --config gateway.toml
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
import time
import zoneinfo
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


class SeqLedger:
    """The platform's dedupe: one set of seqs per (gateway_id, store_id); loss is a hole."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], set[int]] = {}
        self.duplicates = 0

    def add(self, gateway_id: str, store_id: str, seq: int) -> bool:
        seqs = self.seen.setdefault((gateway_id, store_id), set())
        if seq in seqs:
            self.duplicates += 1
            return False
        seqs.add(seq)
        return True

    def holes(self) -> dict[tuple[str, str], list[int]]:
        out = {}
        for key, seqs in self.seen.items():
            if seqs:
                missing = sorted(set(range(min(seqs), max(seqs) + 1)) - seqs)
                if missing:
                    out[key] = missing
        return out


def records_of(topic: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every record a message carries (a telemetry batch carries many)."""
    if topic.endswith("/telemetry"):
        from gateway.uplink.wire import decode_batch

        return [{"cls": "telemetry", **r} for r in decode_batch(doc)]
    if "seq" in doc:
        return [doc]
    return []


BACKLOG_AGE_S = 5.0  # a record older than this on arrival was queued at the gateway (an outage)
CLASS_WORDS = {"alarm": ("alarm", "alarms"), "event": ("event", "events"), "status": ("status message", "status messages"),
               "telemetry": ("reading", "readings")}


def backlog_summary(classes: list[str], holes: int) -> str:
    """'backlog delivered: 2 alarms first, then 5 events and 113 readings, no gap' (issue 18)."""
    counts: dict[str, int] = {}
    for c in classes:
        counts[c] = counts.get(c, 0) + 1
    parts = [f"{n} {CLASS_WORDS.get(c, (c, c + 's'))[n != 1]}" for c, n in sorted(counts.items(), key=lambda kv: classes.index(kv[0]))]
    # "Alarms first": every queued alarm arrived before the first queued reading (ORDER BY priority, seq).
    last_alarm = max((i for i, c in enumerate(classes) if c == "alarm"), default=None)
    first_reading = classes.index("telemetry") if "telemetry" in counts else len(classes)
    alarms_first = last_alarm is not None and last_alarm < first_reading
    head = f"{parts[0]} first" if alarms_first else parts[0]
    rest = parts[1:]
    text = head + (", then " + (", ".join(rest[:-1]) + " and " + rest[-1] if len(rest) > 1 else rest[0]) if rest else "")
    return f"backlog delivered: {text}, " + ("no gap" if not holes else f"{holes} seq numbers MISSING")


class PlatformView:
    def __init__(self, broker_url: str, gateway_id: str = "+", out: Any = sys.stdout, timezone: str = "Asia/Shanghai") -> None:
        url = urlsplit(broker_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 1883
        self.topic = f"cg/v1/{gateway_id}/#"
        self.out = out
        self.ledger = SeqLedger()
        self.records: list[dict[str, Any]] = []  # every record in arrival order (alarm, event, telemetry)
        self.status: dict[str, Any] = {}
        self.telemetry_count = 0
        self.lock = threading.Lock()
        self.tz = zoneinfo.ZoneInfo(timezone)
        self._backlog: list[str] = []  # classes of late records, in arrival order, until the backlog ends
        self._online: bool | None = None
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"platform-view-{gateway_id.replace('+', 'all')}", protocol=mqtt.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600  # a persistent platform session: nothing missed across our own blips
        self.client.connect(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            self._print(f"platform: undecodable message on {msg.topic}")
            return
        if msg.topic.endswith("/status"):
            self.status = doc
            if doc.get("online") != self._online:
                self._online = doc.get("online")
                self._print(f"gateway {'online' if self._online else 'OFFLINE (its last will)'}")
            return
        if msg.topic.endswith("/reply"):
            self._print(f"the gateway answers {doc.get('command')}: {doc.get('status')} {doc.get('reason', '')}".rstrip())
            return
        with self.lock:
            for rec in records_of(msg.topic, doc):
                fresh = self.ledger.add(doc.get("gateway_id", "?"), doc.get("store_id", "?"), int(rec["seq"]))
                rec = {**rec, "topic": msg.topic, "fresh": fresh, "received_mono": time.monotonic()}
                self.records.append(rec)
                late = time.time() - rec.get("ts_ms", 0) / 1000 > BACKLOG_AGE_S
                if fresh and late:
                    self._backlog.append(str(rec.get("cls")))
                elif fresh and self._backlog and rec.get("cls") == "telemetry":
                    holes = sum(map(len, self.ledger.holes().values()))
                    self._print(backlog_summary(self._backlog, holes))
                    self._backlog = []
                if rec.get("cls") == "telemetry":
                    self.telemetry_count += 1
                elif fresh:
                    self._print(self.describe(rec, late))

    def describe(self, rec: dict[str, Any], late: bool) -> str:
        body = rec.get("body") or {}
        when = dt.datetime.fromtimestamp(rec.get("ts_ms", 0) / 1000, self.tz).strftime("%H:%M:%S")
        loc = body.get("location") or {}
        place = "".join(x for x in (f"{loc.get('building')}栋" if loc.get("building") else "",
                                    f"{loc.get('unit')}单元" if loc.get("unit") else "", loc.get("room", "")))
        where = f"{place} ({rec.get('device')})" if place else str(rec.get("device"))
        delay = f" (from the gateway's queue, happened {when})" if late else ""
        if rec.get("cls") == "alarm":
            return f"ALARM {body.get('title', '')} {body.get('transition', '')} at {where}{delay}"
        kind = f"{body.get('kind', '')}" + (f":{body.get('code')}" if body.get("code") else "")
        return f"event {kind} from {where}{delay}"

    def _print(self, text: str) -> None:
        now = dt.datetime.now(self.tz).strftime("%H:%M:%S")
        print(f"{now}  platform   {text}", file=self.out, flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker", required=True)
    ap.add_argument("--config", help="gateway config, for its gateway id (default: every gateway)")
    args = ap.parse_args(argv)
    gateway_id, timezone = "+", "Asia/Shanghai"
    if args.config:
        import tomllib

        with open(args.config, "rb") as f:
            cfg = tomllib.load(f)
        gateway_id = cfg["identity"]["gateway_id"]
        timezone = cfg.get("notify", {}).get("timezone", timezone)  # the SMS's time zone: one clock in the story
    view = PlatformView(args.broker, gateway_id, timezone=timezone)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    view.start()
    last = 0
    while not stop.wait(5):
        with view.lock:
            n, holes, dups = view.telemetry_count, view.ledger.holes(), view.ledger.duplicates
        if n // 100 != last // 100:  # a line per hundred readings: the story, not a ticker
            gaps = sum(map(len, holes.values()))
            view._print(f"{n} readings received so far, " + ("no gap" if not gaps else f"{gaps} MISSING") + (f", {dups} duplicates dropped" if dups else ""))
            last = n
    view.stop()


if __name__ == "__main__":
    main()
