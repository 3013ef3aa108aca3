"""Parts for uplink integration tests: a platform subscriber (paho in its own thread, straight to the
broker, persistent session), a real Outbox in tmp_path, and an Uplink wired to both."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import log as logsetup
from gateway.clock import Clock
from gateway.config.schema import Credentials, Identity, Store
from gateway.config.schema import Uplink as UplinkCfg
from gateway.model import Reading, RecordClass
from gateway.uplink.client import Uplink
from gateway.uplink.wire import decode_batch
from tests.support.wait import wait_for

GW = "gw-001"


class Platform:
    """The street platform's view: every message under cg/v1/#, in arrival order, with its payload bytes."""

    def __init__(self, port: int, client_id: str = "platform", **tls: Any) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if tls:
            self.c.tls_set(**tls)
        self.c.on_message = self._on_message
        self.c.reconnect_delay_set(1, 1)  # back promptly after a broker restart (paho's default grows to 120 s)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe("cg/v1/#", qos=1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 600  # survives a broker restart (broker persistence on)
        self.c.connect("127.0.0.1", port, 5, clean_start=False, properties=props)
        self.c.loop_start()
        wait_for(self.c.is_connected, what="platform connected")

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def on(self, leaf: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _r in self.snapshot() if t.endswith("/" + leaf)]

    def seqs(self) -> list[tuple[str, int]]:
        """(class, seq) of every delivered record, in arrival order (telemetry batches expanded)."""
        out: list[tuple[str, int]] = []
        for topic, payload, _r in self.snapshot():
            leaf = topic.rsplit("/", 1)[1]
            doc = json.loads(payload)
            if leaf == "telemetry":
                out += [("telemetry", r["seq"]) for r in decode_batch(doc)]
            elif leaf in ("alarm", "event"):
                out.append((doc["cls"], doc["seq"]))
        return out

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


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
