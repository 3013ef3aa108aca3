"""The platform side of fleet operations: sign commands with gateway.uplink.sign_command, publish
them to cg/v1/<gw>/cmd over MQTT v5 and collect the replies on cg/v1/<gw>/reply (docs/uplink.md)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.platform.signing import sign_command


class BrokerRefused(ConnectionError):
    """The broker answered CONNACK with a failure (bad username or password, not authorised...)."""


class MqttTransport:
    """One platform connection; replies matched to commands by id."""

    def __init__(self, broker_url: str, key_id: str, key_hex: str, *, username: str = "", password: str = "",
                 ca_file: str = "", client_id: str = "fleet-tool") -> None:
        self.key_id, self.key_hex = key_id, key_hex
        url = urlsplit(broker_url)
        self._replies: dict[str, dict[str, Any]] = {}
        self._cv = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if url.scheme == "mqtts":
            self.c.tls_set(ca_certs=ca_file or None)
        if username:
            self.c.username_pw_set(username, password)
        self.c.on_message = self._on_message
        connected = threading.Event()
        refused: list[str] = []

        def on_connect(c: mqtt.Client, u: Any, f: mqtt.ConnectFlags, rc: ReasonCode, p: Properties | None) -> None:
            # A refusal (bad credentials, not authorised) is the operator's to fix now: waiting for replies
            # that can never come would report every gateway of a wave as unanswered instead.
            if rc.is_failure:
                refused.append(f"{rc.getName()} (0x{rc.value:02X})")
            else:
                c.subscribe("cg/v1/+/reply", qos=1)
            connected.set()

        self.c.on_connect = on_connect
        self.c.connect(url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883), 30)
        self.c.loop_start()
        if not connected.wait(10) or refused:
            self.close()
            if refused:
                raise BrokerRefused(f"{broker_url} refused the connection: {refused[0]}")
            raise ConnectionError(f"no connection to {broker_url} within 10 s")

    def _on_message(self, c: Any, u: Any, msg: Any) -> None:
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            with self._cv:
                self._replies[doc["id"]] = doc
                self._cv.notify_all()

    def command(self, gateway_id: str, command: str, args: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        payload = sign_command(self.key_id, self.key_hex, gateway_id, command, args)
        cmd_id = json.loads(payload)["id"]
        self.c.publish(f"cg/v1/{gateway_id}/cmd", payload, qos=1)
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while cmd_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cv.wait(left)
            return self._replies.pop(cmd_id)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()
