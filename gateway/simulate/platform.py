"""The street platform's side, for the demo and the tests: the reference consumer (gateway.platform)
subscribed to a gateway's uplink subtree, telling alarms and events as they arrive (in the courtyard's
time zone, with place names), counting telemetry, saying how a backlog arrived after an outage; its
seq ledger checks the contract (holes, duplicates) per (gateway_id, store_id).

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

from gateway.platform.consumer import PlatformConsumer
from gateway.platform.ledger import SeqLedger  # noqa: F401 - re-exported for older imports


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
    """The demo's platform window on the reference consumer; `records` keeps every record in arrival
    order with its `fresh` flag (duplicates included), for the reliability rigs."""

    def __init__(self, broker_url: str, gateway_id: str = "+", out: Any = sys.stdout, timezone: str = "Asia/Shanghai") -> None:
        self.out = out
        self.records: list[dict[str, Any]] = []  # every record in arrival order (alarm, event, telemetry)
        self.status: dict[str, Any] = {}
        self.telemetry_count = 0
        self.tz = zoneinfo.ZoneInfo(timezone)
        self._backlog: list[str] = []  # classes of late records, in arrival order, until the backlog ends
        self._online: bool | None = None
        self.consumer = PlatformConsumer(broker_url, client_id=f"platform-view-{gateway_id.replace('+', 'all')}", gateway_id=gateway_id,
                                         on_record=lambda r: self._record(r, True), on_duplicate=lambda r: self._record(r, False),
                                         on_message=self._on_message)
        self.lock = self.consumer.lock
        self.ledger = self.consumer.ledger
        self.client = self.consumer.c  # the paho client, for is_connected() in tests

    def start(self) -> None:
        self.consumer.start(wait_s=0)

    def stop(self) -> None:
        self.consumer.stop()

    def _on_message(self, topic: str, payload: bytes, _retain: bool) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            self._print(f"platform: undecodable message on {topic}")
            return
        if topic.endswith("/status"):
            self.status = doc
            if doc.get("online") != self._online:
                self._online = doc.get("online")
                self._print(f"gateway {'online' if self._online else 'OFFLINE (its last will)'}")
        elif topic.endswith("/reply"):
            self._print(f"the gateway answers {doc.get('command')}: {doc.get('status')} {doc.get('reason', '')}".rstrip())

    def _record(self, rec: dict[str, Any], fresh: bool) -> None:
        leaf = {"telemetry": "telemetry", "alarm": "alarm"}.get(str(rec.get("cls")), "event")
        with self.lock:
            rec = {**rec, "topic": f"cg/v1/{rec.get('gateway_id')}/{leaf}", "fresh": fresh, "received_mono": time.monotonic()}
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
