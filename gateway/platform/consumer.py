"""PlatformConsumer: one MQTT v5 platform client that takes in a fleet's records, keeps the fleet view,
and sends signed commands and matches their replies.

Records (alarm, event, telemetry) are subscribed as `$share/<group>/cg/v1/+/<leaf>` when a group is
given, so several consumers share the load (MQTT v5 §4.8.2); each record reaches on_record once per
(gateway_id, store_id, seq) per consumer. Status and replies are subscribed plainly by every member:
retained status is not delivered to shared subscriptions (§4.8.2), and a reply must reach the member
that sent the command. paho runs its own thread; state is guarded by `lock`.

Telemetry batch v2 (docs/uplink.md) names a stream table by hash: tables are learned from the retained
`cg/v1/+/table` (subscribed plainly: every member of a shared group needs every table), from a batch's
inline `tab` and from replies to the `table` command. A batch whose table is not known yet is parked (the
table may arrive after it: another subscription, a redelivery) and expanded when it comes; with
`table_key=(key_id, key_hex)` the consumer also asks the gateway for it.
"""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.platform.decode import RECORD_LEAVES, TABLE_LEAF, records_of, topic_parts
from gateway.platform.ledger import SeqLedger
from gateway.platform.signing import sign_command
from gateway.platform.tables import TableCache, UnknownTable

Record = dict[str, Any]
PARKED_MAX = 256  # batches per gateway waiting for their table; beyond, the oldest is counted undecodable


@dataclass
class GatewayView:
    """What the platform knows of one gateway, from its retained status and its records."""

    gateway_id: str
    online: bool = False
    status: dict[str, Any] = field(default_factory=dict)
    status_mono: float = 0.0
    last_record_mono: float = 0.0
    alarms_seen: int = 0


class PlatformConsumer:
    def __init__(self, broker_url: str, *, client_id: str = "", group: str = "", gateway_id: str = "+",
                 username: str = "", password: str = "", ca_file: str = "", cert_file: str = "", key_file: str = "",
                 session_expiry_s: int = 3600, on_record: Callable[[Record], None] | None = None,
                 on_message: Callable[[str, bytes, bool], None] | None = None,
                 on_duplicate: Callable[[Record], None] | None = None, table_key: tuple[str, str] | None = None) -> None:
        url = urlsplit(broker_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883)
        share = f"$share/{group}/" if group else ""
        self.topics = [f"{share}cg/v1/{gateway_id}/{leaf}" for leaf in RECORD_LEAVES]
        self.topics += [f"cg/v1/{gateway_id}/status", f"cg/v1/{gateway_id}/reply", f"cg/v1/{gateway_id}/{TABLE_LEAF}"]
        self.session_expiry_s = session_expiry_s
        self.on_record = on_record
        self.on_message = on_message  # every message as it arrives, duplicates included (tests, debugging)
        self.on_duplicate = on_duplicate  # records already seen (same gateway_id, store_id, seq)
        self.lock = threading.RLock()
        self.ledger = SeqLedger()
        self.fleet: dict[str, GatewayView] = {}
        self.undecodable = 0
        self.tables = TableCache()
        self.table_key = table_key  # (key_id, key_hex) to sign `table` requests; None: wait for the table
        self.parked: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # gateway_id -> [(h, batch)]
        self._asked: set[tuple[str, str]] = set()
        self._replies: dict[str, Future[dict[str, Any]]] = {}
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"cg-platform-{secrets.token_hex(4)}", protocol=mqtt.MQTTv5)
        if username:
            self.c.username_pw_set(username, password or None)
        if url.scheme == "mqtts":
            ctx = ssl.create_default_context(cafile=ca_file or None)
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file or None)
            self.c.tls_set_context(ctx)
        self.c.reconnect_delay_set(1, 30)
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in self.topics]) if not rc.is_failure else None
        self.c.on_message = self._on_message

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self, wait_s: float = 10.0) -> None:
        """Connect (persistent session: nothing missed across our own restarts) and start paho's thread."""
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho-mqtt 2.2: Properties.__init__ is unannotated
        props.SessionExpiryInterval = self.session_expiry_s
        self.c.connect(self.host, self.port, keepalive=30, clean_start=False, properties=props)
        self.c.loop_start()
        deadline = time.monotonic() + wait_s
        while not self.c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    # ---- intake --------------------------------------------------------------------------------
    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        if self.on_message is not None:
            self.on_message(msg.topic, msg.payload, bool(msg.retain))
        parts = topic_parts(msg.topic)
        try:
            doc = json.loads(msg.payload) if parts else None
        except ValueError:
            doc = None
        if parts is None or not isinstance(doc, dict):
            with self.lock:
                self.undecodable += 1
            return
        gateway_id, leaf = parts
        if leaf == "reply":
            if doc.get("command") == "table" and doc.get("status") == "accepted" and isinstance(doc.get("result"), dict):
                self._learn_table(gateway_id, doc["result"])
            fut = self._replies.pop(str(doc.get("id", "")), None)
            if fut is not None and not fut.done():
                fut.set_result(doc)
            return
        if leaf == TABLE_LEAF:
            self._learn_table(gateway_id, doc)
            return
        fresh: list[Record] = []
        dups: list[Record] = []
        with self.lock:
            view = self.fleet.setdefault(gateway_id, GatewayView(gateway_id))
            if leaf == "status":
                view.online, view.status, view.status_mono = bool(doc.get("online")), doc, time.monotonic()
                if isinstance(doc.get("evicted"), int):
                    self.ledger.note_evicted(gateway_id, str(doc.get("store_id")), doc["evicted"])
                return
            view.last_record_mono = time.monotonic()
            self._take(gateway_id, leaf, doc, fresh, dups)
        self._deliver(fresh, dups)

    def _take(self, gateway_id: str, leaf: str, doc: dict[str, Any], fresh: list[Record], dups: list[Record]) -> None:
        """Records of one message into the ledger (under the lock); a v2 batch without its table is parked."""
        try:
            recs = records_of(leaf, doc, self.tables)
        except UnknownTable as exc:
            self._park(gateway_id, exc.h, doc)
            return
        except (KeyError, IndexError, TypeError, ValueError):
            self.undecodable += 1
            return
        view = self.fleet.setdefault(gateway_id, GatewayView(gateway_id))
        for rec in recs:
            if self.ledger.add(gateway_id, str(rec.get("store_id")), int(rec["seq"])):
                view.alarms_seen += rec.get("cls") == "alarm" and rec.get("kind") == "alarm.raised"
                fresh.append(rec)
            else:
                dups.append(rec)

    def _deliver(self, fresh: list[Record], dups: list[Record]) -> None:
        # Outside the lock: a slow consumer callback must not block status updates.
        on_record, on_duplicate = self.on_record, self.on_duplicate
        if on_record is not None:
            for rec in fresh:
                on_record(rec)
        if on_duplicate is not None:
            for rec in dups:
                on_duplicate(rec)

    # ---- v2 stream tables ----------------------------------------------------------------------
    def _park(self, gateway_id: str, h: str, doc: dict[str, Any]) -> None:
        queue = self.parked.setdefault(gateway_id, [])
        queue.append((h, doc))
        if len(queue) > PARKED_MAX:
            queue.pop(0)
            self.undecodable += 1
        if self.table_key is not None and (gateway_id, h) not in self._asked:
            self._asked.add((gateway_id, h))
            self.request_table(gateway_id, h)

    def request_table(self, gateway_id: str, h: str) -> None:
        """Ask a gateway for a table by hash (signed `table` command); its reply carries the table."""
        if self.table_key is None:
            return
        key_id, key_hex = self.table_key
        payload = sign_command(key_id, key_hex, gateway_id, "table", {"h": h})
        self.c.publish(f"cg/v1/{gateway_id}/cmd", payload, qos=1)

    def _learn_table(self, gateway_id: str, doc: dict[str, Any]) -> None:
        fresh: list[Record] = []
        dups: list[Record] = []
        with self.lock:
            h = self.tables.learn(gateway_id, doc, doc.get("h"))
            if h is None:
                return
            waiting = self.parked.get(gateway_id, [])
            ready = [d for hh, d in waiting if hh == h]
            if ready:
                self.parked[gateway_id] = [(hh, d) for hh, d in waiting if hh != h]
                for d in ready:
                    self._take(gateway_id, "telemetry", d, fresh, dups)
        self._deliver(fresh, dups)

    # ---- commands ------------------------------------------------------------------------------
    def send_command(self, gateway_id: str, command: str, args: dict[str, Any] | None, key_id: str, key_hex: str,
                     timeout_s: float = 10.0, relay: bool = False) -> dict[str, Any]:
        """Sign, publish and wait for the matching reply (by id). Raises TimeoutError: re-send with a new
        nonce (docs/uplink.md: replies are not queued while the gateway is offline)."""
        cmd_id = secrets.token_hex(8)
        fut: Future[dict[str, Any]] = Future()
        self._replies[cmd_id] = fut
        payload = sign_command(key_id, key_hex, gateway_id, "relay" if relay else command, args, cmd_id=cmd_id)
        self.c.publish(f"cg/v1/{gateway_id}/{'relay' if relay else 'cmd'}", payload, qos=1)
        try:
            return fut.result(timeout_s)
        except TimeoutError:
            self._replies.pop(cmd_id, None)
            raise TimeoutError(f"no reply from {gateway_id} to {command} {cmd_id} within {timeout_s:g} s") from None

    def publish(self, topic: str, payload: bytes, timeout_s: float = 5.0) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(timeout_s)

    # ---- fleet view ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Gateways online/offline, queue depths, active alarms, and the ledger's per-store report."""
        with self.lock:
            gws = {g: {"online": v.online, "queue": v.status.get("queue", {}), "active_alarms": v.status.get("active_alarms", 0),
                       "uplink_last_down": v.status.get("uplink_last_down"), "alarms_seen": v.alarms_seen,
                       "status_age_s": round(time.monotonic() - v.status_mono, 1) if v.status_mono else None}
                   for g, v in sorted(self.fleet.items())}
            return {"gateways": gws, "online": sum(v["online"] for v in gws.values()), "offline": sum(not v["online"] for v in gws.values()),
                    "stores": self.ledger.report(), "duplicates": self.ledger.duplicates, "undecodable": self.undecodable,
                    "tables": len(self.tables), "parked": sum(len(q) for q in self.parked.values())}
