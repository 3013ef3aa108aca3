"""The street platform's side, for the demo and the tests: subscribes to a gateway's uplink subtree,
prints alarms and events as they arrive, counts telemetry, and checks the seq contract (holes,
duplicates) per (gateway_id, store_id).

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


class PlatformView:
    def __init__(self, broker_url: str, gateway_id: str = "+", out: Any = sys.stdout) -> None:
        url = urlsplit(broker_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 1883
        self.topic = f"cg/v1/{gateway_id}/#"
        self.out = out
        self.ledger = SeqLedger()
        self.records: list[dict[str, Any]] = []  # every record in arrival order (alarm, event, telemetry)
        self.status: dict[str, Any] = {}
        self.telemetry_count = 0
        self.lock = threading.Lock()
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
            self._print(f"platform: status online={doc.get('online')} queue={doc.get('queue', doc.get('depth', ''))}")
            return
        if msg.topic.endswith("/reply"):
            self._print(f"platform: reply {doc.get('command')} {doc.get('status')} {doc.get('reason', '')}")
            return
        with self.lock:
            for rec in records_of(msg.topic, doc):
                fresh = self.ledger.add(doc.get("gateway_id", "?"), doc.get("store_id", "?"), int(rec["seq"]))
                rec = {**rec, "topic": msg.topic, "fresh": fresh, "received_mono": time.monotonic()}
                self.records.append(rec)
                if rec.get("cls") == "telemetry":
                    self.telemetry_count += 1
                elif fresh:
                    when = time.strftime("%H:%M:%S", time.localtime(rec.get("ts_ms", 0) / 1000))
                    body = json.dumps(rec.get("body", {}), ensure_ascii=False)[:160]
                    self._print(f"platform: {rec.get('cls')} seq={rec['seq']} {rec.get('kind')} {rec.get('device')} at {when} {body}")

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
