"""Parts for uplink integration tests: the reference platform consumer (gateway.platform, paho in its own
thread, straight to the broker, persistent session), a real Outbox in tmp_path, and an Uplink wired to both."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import msgspec

from gateway import log as logsetup
from gateway.clock import Clock
from gateway.config.schema import Credentials, Identity, Store
from gateway.config.schema import Uplink as UplinkCfg
from gateway.model import Reading, RecordClass
from gateway.platform.consumer import PlatformConsumer
from gateway.platform.decode import records_of
from gateway.platform.tables import TableCache
from gateway.uplink.client import Uplink
from tests.support.wait import wait_for

GW = "gw-001"


class Platform:
    """The street platform's view for tests: the reference consumer (gateway.platform), plus every raw
    message under cg/v1/<gw>/{records,status,reply} in arrival order, duplicates included."""

    def __init__(self, port: int, client_id: str = "platform", **tls: Any) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        tls_files = {"ca_file": tls.get("ca_certs", ""), "cert_file": tls.get("certfile", ""), "key_file": tls.get("keyfile", "")}
        scheme = "mqtts" if tls else "mqtt"
        self.consumer = PlatformConsumer(f"{scheme}://127.0.0.1:{port}", client_id=client_id, on_message=self._on_message, **tls_files)
        self.consumer.c.reconnect_delay_set(1, 1)  # back promptly after a broker restart (paho's default grows to 120 s)
        self.c = self.consumer.c
        self.consumer.start()
        wait_for(self.c.is_connected, what="platform connected")

    def _on_message(self, topic: str, payload: bytes, retain: bool) -> None:
        with self._lock:
            self.messages.append((topic, payload, retain))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def on(self, leaf: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _r in self.snapshot() if t.endswith("/" + leaf)]

    def seqs(self) -> list[tuple[str, int]]:
        """(class, seq) of every delivered record, in arrival order (telemetry batches expanded, duplicates kept)."""
        out: list[tuple[str, int]] = []
        tables = TableCache()  # telemetry v2: tables from cg/v1/<gw>/table and from batches' inline `tab`
        for topic, payload, _r in self.snapshot():
            leaf = topic.rsplit("/", 1)[1]
            doc = json.loads(payload)
            if leaf == "table":
                tables.learn(doc["gateway_id"], doc, doc["h"])
            out += [(rec["cls"], rec["seq"]) for rec in records_of(leaf, doc, tables)]
        return out

    def publish(self, topic: str, payload: bytes) -> None:
        self.consumer.publish(topic, payload)

    def close(self) -> None:
        self.consumer.stop()


async def open_outbox(tmp_path: Path, clock: Any) -> Any:
    from gateway.store.outbox import Outbox

    cfg = Store(path=str(tmp_path / "state" / "outbox.db"), commit_interval_s=0.05, ballast_bytes=0)
    (tmp_path / "state").mkdir(exist_ok=True)
    ob = Outbox(cfg, clock, logsetup.get(stage="store"), {"mqtt": set(RecordClass)})
    await ob.open()
    return ob


def make_uplink(url: str, outbox: Any, clock: Any, credentials: Credentials | None = None, **cfg: Any) -> Uplink:
    conf = msgspec.structs.replace(UplinkCfg(broker_url=url), **cfg)
    return Uplink(conf, credentials or Credentials(), Identity(gateway_id=GW), outbox, clock, logsetup.get(),
                  handlers={}, relay_handler=None, status_provider=lambda: {"drivers": {"rs485": {"state": "ok"}}, "active_alarms": 0})


def reading(clock: Clock, device: str, i: int) -> Reading:
    return Reading(device, clock.now(), {"pressure_mpa": round(0.3 + i / 10000, 4), "n": i}, via="test")
