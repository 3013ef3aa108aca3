"""One MQTT v5 connection: a paho-mqtt 2.x Client driven from the asyncio loop, as aiomqtt does.

Reads and writes run in the loop (add_reader/add_writer on paho's socket, loop_read/loop_write,
loop_misc every second); only the blocking connect() (DNS, TCP, TLS handshake) runs in an executor.
A session is used once: after a disconnect the uplink makes a new one (aiomqtt#46), and the outbox,
not paho's memory, re-feeds whatever was not acknowledged (reliability §2 rule 1, 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.errors import ConfigError, UplinkError
from gateway.uplink import faults
from gateway.uplink.faults import tls_reason

# MQTT v5 §3.2.2.2 CONNACK reason codes that no retry can cure without an operator: go to the cap.
AUTH_REASON_CODES = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})  # bad protocol/client id/credentials, not authorized, banned, bad auth method
# Server busy (0x89), quota exceeded (0x97), connection rate exceeded (0x9F): a clustered broker protecting
# itself (EMQX flapping detection bans a client id after 15 connects a minute, issue 21). Come back late.
BUSY_REASON_CODES = frozenset({0x89, 0x97, 0x9F})
# Use another server (0x9C), server moved (0x9D): §4.11, the CONNACK/DISCONNECT may carry a Server Reference.
MOVED_REASON_CODES = frozenset({0x9C, 0x9D})
READ_PACKETS_PER_TURN = 4  # MQTT packets read per readable callback before other callbacks run


class ConnectRefused(UplinkError):
    """The broker answered CONNACK with a failure reason code (auth=True: credentials/ACL/ban)."""

    rc: int  # always a CONNACK reason code here (UplinkError's rc may be None)

    def __init__(self, reason: str, rc: int, server_reference: str = "") -> None:
        super().__init__(reason, rc)
        self.auth = rc in AUTH_REASON_CODES
        self.busy = rc in BUSY_REASON_CODES
        self.moved = rc in MOVED_REASON_CODES
        self.server_reference = server_reference
        self.reason_word = faults.NOT_AUTHORIZED if self.auth else faults.CONNECT_FAILED


class TlsRefused(UplinkError):
    """The TLS handshake failed (unknown CA, bad client certificate): a configuration problem."""

    def __init__(self, message: str, reason_word: str) -> None:
        super().__init__(message)
        self.reason_word = reason_word


class HostUnresolvable(UplinkError):
    """DNS could not resolve the broker's host name."""

    reason_word = faults.HOST_UNRESOLVABLE


def _properties(packet_type: int) -> Properties:
    # paho-mqtt 2.2 ships py.typed, but Properties.__init__(self, packetType) has no annotations.
    return Properties(packet_type)  # type: ignore[no-untyped-call]


def broker_address(url: str) -> tuple[str, int, bool]:
    """mqtt://host[:1883] or mqtts://host[:8883] -> (host, port, tls)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError([f"uplink.broker_url {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"])
    tls = parts.scheme == "mqtts"
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


class Session:
    """paho Client + asyncio glue. Callbacks (on_publish, on_message) run in the loop thread."""

    def __init__(self, client_id: str, keepalive_s: int, session_expiry_s: int, max_inflight: int,
                 on_publish: Callable[[int, int], None], on_message: Callable[[str, bytes], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self.keepalive_s = keepalive_s
        self.session_expiry_s = session_expiry_s
        self._on_publish_cb = on_publish
        self._on_message_cb = on_message
        self.connected = False
        self.session_present = False
        self._connack: asyncio.Future[int] = self._loop.create_future()
        self.server_reference = ""  # MQTT v5 §3.2.2.3.16 / §3.14.2.2.5, from a CONNACK or DISCONNECT
        # Topic aliases (MQTT v5 §3.3.2.3.4): after the first PUBLISH on a topic, later ones send a 2-byte
        # alias instead of the ~27-byte topic (issue 17: bytes on the wire). Per connection, so per Session;
        # only as many as the broker's CONNACK Topic Alias Maximum allows (mosquitto max_topic_alias, default 10).
        self.topic_alias_max = 0
        self._aliases: dict[str, int] = {}
        self.closed: asyncio.Future[int] = self._loop.create_future()  # result: disconnect reason code
        self._misc_task: asyncio.Task[None] | None = None
        self._fds: set[int] = set()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5, reconnect_on_failure=False)
        c.max_inflight_messages_set(max_inflight)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = lambda _c, _u, mid, rc, _p: self._on_publish_cb(mid, rc.value)
        c.on_message = lambda _c, _u, msg: self._on_message_cb(msg.topic, bytes(msg.payload))  # paho hands a bytearray slice
        c.on_socket_open = lambda _c, _u, sock: self._in_loop(self._add_reader, sock)
        c.on_socket_close = lambda _c, _u, sock: self._in_loop(self._forget, sock)
        c.on_socket_register_write = lambda _c, _u, sock: self._in_loop(self._add_writer, sock)
        c.on_socket_unregister_write = lambda _c, _u, sock: self._in_loop(self._remove_writer, sock)
        self.client = c

    # ---- socket glue (paho calls these from connect() in the executor, or from the loop) -------
    def _in_loop(self, fn: Callable[[Any], None], sock: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(sock)
        else:
            self._loop.call_soon_threadsafe(fn, sock)

    def _add_reader(self, sock: Any) -> None:
        try:
            self._loop.add_reader(sock, self._readable, sock)
            self._fds.add(sock.fileno())
        except (ValueError, OSError):  # closed before the loop got to it: the connect reports the failure
            pass

    def _readable(self, sock: Any) -> None:
        """Read at most READ_PACKETS_PER_TURN packets, then give the loop back (the sounder's timer, the
        rules). paho's loop_read ignores its max_packets and reads one packet per message in flight: with
        a drain's PUBLISHes or the busy replies of a command flood in flight, one call read dozens of 30 KB
        commands (35 ms of loop time measured). More data on a plain socket wakes the selector again;
        bytes an SSL socket has already decrypted do not, so those get another turn explicitly."""
        c = self.client
        read_one = getattr(c, "_packet_read", None)
        if read_one is None:  # a paho without its packet reader: its own unbounded loop_read
            c.loop_read()
        else:
            for _ in range(READ_PACKETS_PER_TURN):
                if c.socket() is not sock:
                    return
                rc = read_one()
                if rc == mqtt.MQTT_ERR_AGAIN:
                    break
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    c._loop_rc_handle(rc)  # what loop_read does with a read error: close, on_disconnect
                    return
        if c.socket() is sock and getattr(sock, "pending", lambda: 0)() > 0:
            self._loop.call_soon(self._readable, sock)

    def _add_writer(self, sock: Any) -> None:
        try:
            self._loop.add_writer(sock, self.client.loop_write)
        except (ValueError, OSError):
            pass

    def _remove_writer(self, sock: Any) -> None:
        try:
            self._loop.remove_writer(sock)
        except (ValueError, OSError):
            pass

    def _forget(self, sock: Any) -> None:
        for fd in list(self._fds):
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self._fds.clear()

    # ---- paho callbacks (loop thread) ----------------------------------------------------------
    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: Any, props: Any) -> None:
        self.server_reference = str(getattr(props, "ServerReference", "") or "")
        self.topic_alias_max = int(getattr(props, "TopicAliasMaximum", 0) or 0)
        if not self._connack.done():
            self._connack.set_result(rc.value)
        if not rc.is_failure:
            self.connected = True
            self.session_present = bool(getattr(flags, "session_present", False))

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, rc: Any, props: Any) -> None:
        self.connected = False
        self.server_reference = str(getattr(props, "ServerReference", "") or "") or self.server_reference
        code = rc.value if hasattr(rc, "value") else int(rc or 0)
        if not self._connack.done():
            self._connack.set_exception(UplinkError("connection closed before CONNACK", code))
        if not self.closed.done():
            self.closed.set_result(code)

    async def _misc(self) -> None:
        # Keepalive: PINGREQ when due, and a dead link detected after ~1.5 keepalive (reliability §2 rule 6).
        while self.client.socket() is not None:
            self.client.loop_misc()
            await asyncio.sleep(1.0)
        if not self.closed.done():
            self._on_disconnect(None, None, None, mqtt.MQTT_ERR_CONN_LOST, None)

    # ---- public --------------------------------------------------------------------------------
    async def connect(self, host: str, port: int, timeout_s: float) -> None:
        """TCP (+TLS) connect in an executor, then wait for CONNACK. Raises ConnectRefused, TlsRefused, UplinkError."""
        props = _properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s  # MQTT v5 §3.1.2.11.2: queued cmds survive short outages
        try:  # asyncio.timeout, not wait_for: wait_for can swallow a cancellation on 3.11 (gh-86296)
            async with asyncio.timeout(timeout_s):
                await self._loop.run_in_executor(
                    None, lambda: self.client.connect(host, port, self.keepalive_s, clean_start=False, properties=props))
        except ssl.SSLError as exc:
            self.abort()
            raise TlsRefused(f"TLS handshake with {host}:{port} failed: {exc.reason or exc}", tls_reason(exc)) from None
        except (socket.gaierror, UnicodeError) as exc:  # UnicodeError: IDNA refuses the name before any lookup
            self.abort()
            raise HostUnresolvable(f"cannot resolve {host!r}: {exc}") from None
        except (OSError, TimeoutError) as exc:
            self.abort()
            raise UplinkError(f"connect to {host}:{port} failed: {exc or type(exc).__name__}") from None
        self._misc_task = asyncio.create_task(self._misc())
        try:
            async with asyncio.timeout(timeout_s):
                rc = await asyncio.shield(self._connack)
        except TimeoutError:
            self.abort()
            raise UplinkError(f"no CONNACK from {host}:{port} within {timeout_s:g} s") from None
        if rc >= 0x80:
            self.abort()
            raise ConnectRefused(f"broker refused the connection: {ReasonCode(PacketTypes.CONNACK, identifier=rc)}", rc, self.server_reference)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """QoS 1 PUBLISH; returns the mid. Only while connected: paho never queues for us offline."""
        if not self.connected:
            raise UplinkError("not connected")
        alias = self._aliases.get(topic)
        props = None
        if alias is not None or len(self._aliases) < self.topic_alias_max:
            props = _properties(PacketTypes.PUBLISH)
            if alias is None:  # first use: topic and the alias it binds
                alias = self._aliases[topic] = len(self._aliases) + 1
            else:
                topic = ""  # the broker maps the alias back to the topic
            props.TopicAlias = alias
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=props)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise UplinkError("publish refused by the client", int(info.rc))
        return info.mid

    def subscribe(self, topics: list[str]) -> None:
        self.client.subscribe([(t, 1) for t in topics])

    def will_set(self, topic: str, payload: bytes) -> None:
        self.client.will_set(topic, payload, qos=1, retain=True)

    def configure_auth(self, username: str, password: str, tls: ssl.SSLContext | None) -> None:
        if username:
            self.client.username_pw_set(username, password or None)
        if tls is not None:
            self.client.tls_set_context(tls)

    async def disconnect(self, timeout_s: float = 1.0) -> None:
        """Clean DISCONNECT (reason 0: the broker does not send the Last Will)."""
        if self.connected:
            self.client.disconnect()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(self.closed)
        self.abort()

    def abort(self) -> None:
        """Drop the socket now (no DISCONNECT packet): used after failures and timeouts."""
        self.connected = False
        sock = self.client.socket()
        if sock is not None:
            self._forget(sock)
            self.client._sock_close()  # paho has no public "close now"; this runs on_socket_close too
        if self._misc_task is not None and not self._misc_task.done():
            self._misc_task.cancel()
        if not self.closed.done():
            self.closed.set_result(mqtt.MQTT_ERR_CONN_LOST.value)
