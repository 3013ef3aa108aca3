"""The street platform's side, for the demo and the tests: the reference consumer (gateway.platform)
subscribed to a gateway's uplink subtree, printing alarms and events as they arrive, counting
telemetry; its seq ledger checks the contract (holes, duplicates) per (gateway_id, store_id).

    python -m gateway.simulate.platform --broker mqtt://127.0.0.1:1883 --config gateway.toml
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

from gateway.platform.consumer import PlatformConsumer
from gateway.platform.ledger import SeqLedger  # noqa: F401 - re-exported for older imports


class PlatformView:
    """The demo's platform window on the reference consumer: prints alarms, events, status and replies,
    counts telemetry; `records` keeps every record in arrival order with its `fresh` flag."""

    def __init__(self, broker_url: str, gateway_id: str = "+", out: Any = sys.stdout) -> None:
        self.out = out
        self.records: list[dict[str, Any]] = []  # every record in arrival order (alarm, event, telemetry)
        self.status: dict[str, Any] = {}
        self.telemetry_count = 0
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
            self._print(f"platform: status online={doc.get('online')} queue={doc.get('queue', doc.get('depth', ''))}")
        elif topic.endswith("/reply"):
            self._print(f"platform: reply {doc.get('command')} {doc.get('status')} {doc.get('reason', '')}")

    def _record(self, rec: dict[str, Any], fresh: bool) -> None:
        with self.lock:
            leaf = "telemetry" if rec.get("cls") == "telemetry" else ("alarm" if rec.get("cls") == "alarm" else "event")
            self.records.append({**rec, "topic": f"cg/v1/{rec.get('gateway_id')}/{leaf}", "fresh": fresh, "received_mono": time.monotonic()})
            if rec.get("cls") == "telemetry":
                self.telemetry_count += 1
                return
        if fresh:
            when = time.strftime("%H:%M:%S", time.localtime(rec.get("ts_ms", 0) / 1000))
            self._print(f"platform: {rec.get('cls')} seq={rec['seq']} {rec.get('kind')} {rec.get('device')} at {when} {json.dumps(rec.get('body', {}), ensure_ascii=False)[:160]}")

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--broker", required=True)
    ap.add_argument("--config", help="gateway config, for its gateway id (default: every gateway)")
    args = ap.parse_args(argv)
    gateway_id = "+"
    if args.config:
        import tomllib

        with open(args.config, "rb") as f:
            gateway_id = tomllib.load(f)["identity"]["gateway_id"]
    view = PlatformView(args.broker, gateway_id)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    view.start()
    last = 0
    while not stop.wait(5):
        with view.lock:
            n, holes, dups = view.telemetry_count, view.ledger.holes(), view.ledger.duplicates
        if n != last:
            print(f"platform: telemetry readings received {n} (+{n - last}); seq holes {sum(map(len, holes.values()))}, duplicates {dups}", flush=True)
            last = n
    view.stop()


if __name__ == "__main__":
    main()
