"""Issue 21: the shipped config/broker files on a real mosquitto. A gateway cannot publish into another
gateway's subtree (PUBACK 0x87, and our Uplink raises the fault and keeps the row) nor read its
commands; the platform (cg_platform) reads everything and sends commands. Both identity variants:
client certificates (use_identity_as_username) and passwords."""

import asyncio
import ipaddress
import os
import re
import subprocess
import threading
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from paho.mqtt.enums import CallbackAPIVersion

from gateway import log as logsetup
from gateway.clock import Clock
from gateway.config.schema import Credentials, Identity
from gateway.config.schema import Uplink as UplinkCfg
from gateway.model import RecordClass
from gateway.uplink.client import Uplink
from tests.integration.test_uplink_tls import _cert, _write
from tests.integration.uplink_support import open_outbox
from tests.support.broker import Broker
from tests.support.wait import async_wait_for, wait_for

BROKER_DIR = Path(__file__).resolve().parents[2] / "config" / "broker"
PLATFORM = "cg_platform"


def shipped_conf(name: str, port: int, workdir: Path, paths: dict[str, str]) -> str:
    """The shipped file with only what a test must change: port, file paths, logging, `user root`."""
    out = []
    for line in (BROKER_DIR / name).read_text().splitlines():
        key = line.split(" ", 1)[0]
        if key == "listener":
            line = f"listener {port} 127.0.0.1"
        elif key in paths:
            line = f"{key} {paths[key]}"
        elif key == "persistence_location":
            line = f"persistence_location {workdir}/"
        elif key == "log_dest":
            line = f"log_dest file {workdir}/mosquitto.log"
        out.append(line)
    if os.geteuid() == 0:
        out.append("user root")  # CLARIFICATIONS: as root mosquitto drops to `mosquitto` and cannot save
    return "\n".join(out) + "\n"


def _start(broker: Broker, conf: str) -> None:
    """Start the fixture's mosquitto on the shipped configuration instead of the fixture's own."""
    path = broker.dir / "mosquitto.conf"

    def write() -> Path:
        path.write_text(conf)
        return path

    broker.write_conf = write
    broker.start()


class Client:
    """A raw paho v5 client recording messages and the reason codes of PUBACKs and SUBACKs."""

    def __init__(self, port: int, name: str, tls: dict | None = None, password: str | None = None) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, int] = {}
        self.subacks: list[int] = []
        self._lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{name}", protocol=mqtt.MQTTv5)
        if tls:
            self.c.tls_set(**tls)
        if password is not None:
            self.c.username_pw_set(name, password)
        self.c.on_message = lambda c, u, m: self._add(self.messages, (m.topic, m.payload))
        self.c.on_publish = lambda c, u, mid, rc, p: self._set(mid, rc.value)
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self._add(self.subacks, *[rc.value for rc in rcs])
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        wait_for(self.c.is_connected, what=f"{name} connected")

    def _add(self, target: list, *items) -> None:
        with self._lock:
            target.extend(items)

    def _set(self, mid: int, rc: int) -> None:
        with self._lock:
            self.pubacks[mid] = rc

    def publish(self, topic: str, payload: bytes) -> int:
        """PUBLISH QoS 1 and return the PUBACK reason code."""
        mid = self.c.publish(topic, payload, qos=1).mid
        return wait_for(lambda: self.pubacks.get(mid, -1) + 1, what="PUBACK") - 1

    def subscribe(self, topic: str) -> int:
        n = len(self.subacks)
        self.c.subscribe(topic, qos=1)
        wait_for(lambda: len(self.subacks) > n, what="SUBACK")
        return self.subacks[-1]

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p in self.messages if t == topic]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def _pki(d: Path) -> dict[str, str]:
    """A district CA with certificates for the broker (127.0.0.1), two gateways and the platform."""
    d.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("district-ca", ca_key, "district-ca", ca_key, ca=True)
    files = {"ca": _write(d / "ca.pem", ca)}
    for cn in ("broker", "gw-001", "gw-002", PLATFORM):
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if cn == "broker" else None
        files[cn] = _write(d / f"{cn}.pem", _cert(cn, key, "district-ca", ca_key, san=san))
        files[cn + ".key"] = _write(d / f"{cn}.key", key=key)
    return files


def _tls(pki, cn):
    return {"ca_certs": pki["ca"], "certfile": pki[cn], "keyfile": pki[cn + ".key"]}


async def _forging_uplink(tmp_path, url, pki):
    """Our real Uplink, configured as gw-002 but holding gw-001's certificate: every record it sends
    lands in gw-002's subtree, which gw-001 may not write."""
    clock = Clock("assume_synced")
    outbox = await open_outbox(tmp_path, clock)
    await outbox.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "fire"})
    conf = msgspec.structs.replace(UplinkCfg(broker_url=url), ca_file=pki["ca"], cert_file=pki["gw-001"], key_file=pki["gw-001.key"])
    up = Uplink(conf, Credentials(), Identity(gateway_id="gw-002"), outbox, clock, logsetup.get())
    task = asyncio.create_task(up.run())
    try:
        await async_wait_for(lambda: up.health()["puback_failures"] >= 1, timeout_s=15, what="PUBACK refusal")
        return up.health(), outbox.stats().depth
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


@pytest.mark.slow
def test_certificate_identities_are_confined_to_their_own_subtree(tmp_path):
    pki = _pki(tmp_path / "pki")
    work = tmp_path / "mosq"
    work.mkdir()
    acl = BROKER_DIR / "courtyard.acl"
    broker = Broker(work)
    conf = shipped_conf("mosquitto.conf", broker.port, work, {"cafile": pki["ca"], "certfile": pki["broker"],
                                                              "keyfile": pki["broker.key"], "acl_file": str(acl)})
    _start(broker, conf)
    url = f"mqtts://127.0.0.1:{broker.port}"
    clients = []
    try:
        platform = Client(broker.port, PLATFORM, _tls(pki, PLATFORM))
        gw1 = Client(broker.port, "gw-001", _tls(pki, "gw-001"))
        gw2 = Client(broker.port, "gw-002", _tls(pki, "gw-002"))
        clients += [platform, gw1, gw2]
        assert platform.subscribe("$share/ingest/cg/v1/+/event") < 0x80
        assert platform.subscribe("cg/v1/#") < 0x80
        assert gw1.subscribe("cg/v1/gw-001/cmd") < 0x80
        gw2.subscribe("cg/v1/gw-001/cmd")  # mosquitto 2.0 grants the SUBACK; the ACL stops delivery (below)
        # Forgery: gw-002 writing into gw-001's subtree is refused with 0x87 (issue 21 "Why").
        assert gw2.publish("cg/v1/gw-001/event", b'{"seq": 99}') == 0x87
        assert gw2.publish("cg/v1/gw-001/cmd", b"{}") == 0x87  # and cannot command another gateway
        assert gw1.publish("cg/v1/gw-001/event", b'{"seq": 1}') == 0  # its own subtree: accepted
        # The platform may command gw-001; gw-001 gets it, gw-002 (subscribed to it) does not.
        assert platform.publish("cg/v1/gw-001/cmd", b'{"id":"c-1"}') == 0
        wait_for(lambda: gw1.on("cg/v1/gw-001/cmd"), what="gw-001 receives its command")
        wait_for(lambda: platform.on("cg/v1/gw-001/event"), what="platform reads gw-001's event")
        assert gw2.on("cg/v1/gw-001/cmd") == []
        # The forged one never arrived (the real one twice: once per subscription, shared and plain).
        assert set(platform.on("cg/v1/gw-001/event")) == {b'{"seq": 1}'}
        assert gw1.publish("cg/v1/gw-001/alarm_extra", b"{}") == 0x87  # only the five leaves
        health, depth = asyncio.run(_forging_uplink(tmp_path, url, pki))
    finally:
        for c in clients:
            c.close()
        broker.stop()
    assert health["fault"] == "puback_135" and health["state"] == "not_authorized" and health["reason"] == "publish_refused"
    assert health["up"] is False and depth.get("alarm") == 1  # the record stays in the outbox


def test_password_identities_get_the_same_confinement(tmp_path):
    pki = _pki(tmp_path / "pki")
    work = tmp_path / "mosq"
    work.mkdir()
    pw = work / "passwd"
    for i, user in enumerate(("gw-001", "gw-002", PLATFORM)):
        subprocess.run(["mosquitto_passwd", "-b"] + (["-c"] if i == 0 else []) + [str(pw), user, f"pw-{user}"], check=True, capture_output=True)
    broker = Broker(work)
    conf = shipped_conf("mosquitto-password.conf", broker.port, work, {
        "cafile": pki["ca"], "certfile": pki["broker"], "keyfile": pki["broker.key"], "acl_file": str(BROKER_DIR / "courtyard.acl"),
        "password_file": str(pw)})
    _start(broker, conf)
    tls = {"ca_certs": pki["ca"]}
    clients = []
    try:
        platform = Client(broker.port, PLATFORM, tls, password=f"pw-{PLATFORM}")
        gw1 = Client(broker.port, "gw-001", tls, password="pw-gw-001")
        gw2 = Client(broker.port, "gw-002", tls, password="pw-gw-002")
        clients += [platform, gw1, gw2]
        assert platform.subscribe("cg/v1/+/alarm") < 0x80
        assert gw2.publish("cg/v1/gw-001/alarm", b"forged") == 0x87
        assert gw1.publish("cg/v1/gw-001/alarm", b"real") == 0
        wait_for(lambda: platform.on("cg/v1/gw-001/alarm"), what="platform reads the real alarm")
        assert platform.on("cg/v1/gw-001/alarm") == [b"real"]
    finally:
        for c in clients:
            c.close()
        broker.stop()


def test_emqx_rules_state_the_same_rights_as_the_mosquitto_acl():
    """No EMQX here to run: check that the EMQX file grants the same leaves, in the same directions."""
    acl = (BROKER_DIR / "courtyard.acl").read_text()
    emqx = (BROKER_DIR / "emqx-acl.conf").read_text()
    writes = set(re.findall(r"^pattern write cg/v1/%u/(\w+)$", acl, re.M))
    reads = set(re.findall(r"^pattern read cg/v1/%u/(\w+)$", acl, re.M))
    assert writes == {"alarm", "event", "telemetry", "status", "reply", "table"} and reads == {"cmd", "relay"}
    gw_pub = re.search(r"\{allow, all, publish, \[(.*?)\]\}\.", emqx, re.S).group(1)
    gw_sub = re.search(r"\{allow, all, subscribe, \[(.*?)\]\}\.", emqx, re.S).group(1)
    assert set(re.findall(r"cg/v1/\$\{username\}/(\w+)", gw_pub)) == writes
    assert set(re.findall(r"cg/v1/\$\{username\}/(\w+)", gw_sub)) == reads
    assert emqx.rstrip().endswith("{deny, all}.") and f'user {PLATFORM}' in acl and f'"{PLATFORM}"' in emqx
