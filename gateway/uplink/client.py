"""The MQTT uplink: connection state machine (probe, backoff, connect, serve) around one Session at a time.

    probing --TCP probe ok--> [backoff] --> connecting --CONNACK 0--> connected --lost--> probing
                                                 |--CONNACK auth rc / TLS refused--> not_authorized (cap)
A new alarm (notify_alarm) cuts every wait short. The Drainer publishes while connected; commands and
relayed reports arrive on .../cmd and .../relay and are answered on .../reply.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import Any

import gateway
from gateway.errors import ConfigError, UplinkError
from gateway.model import RecordClass, Stamp
from gateway.uplink.commands import NonceCache, Verifier
from gateway.uplink.dispatch import Dispatcher, Handler, RelayHandler
from gateway.uplink.drain import Drainer
from gateway.uplink.reconnect import Backoff, Histogram, probe
from gateway.uplink.session import ConnectRefused, Session, TlsRefused, broker_address, tls_context
from gateway.uplink.wire import Envelope

CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 1.0  # offline status PUBACK + DISCONNECT on shutdown (daemon stop budget is 4 s)
STABLE_SESSION_S = 10.0  # a session shorter than this does not reset the backoff (no connect/drop storm)


class ConnState(enum.StrEnum):
    DISCONNECTED = "disconnected"  # not started, or stopped
    PROBING = "probing"  # TCP-probing the broker port
    BACKOFF = "backoff"  # broker reachable, waiting before the next full connect
    CONNECTING = "connecting"
    CONNECTED = "connected"
    NOT_AUTHORIZED = "not_authorized"  # CONNACK auth failure, TLS refused, or PUBACK 135 (ACL)


class Uplink:
    def __init__(self, cfg: Any, credentials: Any, identity: Any, outbox: Any, clock: Any, log: Any,
                 handlers: dict[str, Handler] | None = None, relay_handler: RelayHandler | None = None,
                 status_provider: Callable[[], dict[str, Any]] | None = None) -> None:
        self.cfg = cfg
        self.creds = credentials
        self.outbox = outbox
        self.clock = clock
        self.log = log.bind(component="uplink") if hasattr(log, "bind") else log
        self.host, self.port, use_tls = broker_address(cfg.broker_url)
        try:
            self._tls = tls_context(cfg.ca_file, cfg.cert_file, cfg.key_file) if use_tls else None
        except (OSError, ValueError) as exc:
            raise ConfigError([f"uplink TLS files (ca_file/cert_file/key_file): {exc}"]) from None
        self.client_id = cfg.client_id or identity.gateway_id
        self.env = Envelope(identity.gateway_id, outbox.store_id)
        self.drainer = Drainer(cfg, outbox, self.env, clock, self.log)
        self.drainer.on_refused = self._publish_refused
        self.drainer.on_recovered = lambda: self._set_state(ConnState.CONNECTED)
        self._status_provider = status_provider or (lambda: {})
        verifier = Verifier(identity.gateway_id, dict(credentials.command_keys), cfg.command_window_s, clock)
        self.dispatcher = Dispatcher(verifier, NonceCache(outbox, cfg.command_window_s), handlers or {}, relay_handler,
                                     self._status_provider, clock, self.log)
        self.backoff = Backoff(cfg.reconnect_base_s, cfg.reconnect_cap_s)
        self.reconnect_delays = Histogram()
        self._state = ConnState.DISCONNECTED
        self._state_since_mono = clock.monotonic()
        self._state_since_wall = clock.wall()
        self._started_mono = clock.monotonic()
        self._down_since_mono: float | None = clock.monotonic()  # None while connected
        self._kick = asyncio.Event()
        self._session: Session | None = None
        self._control_acks: dict[int, asyncio.Future[int]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.fault = ""
        self.connects = 0
        self.connect_failures = 0
        self._failing = False
        outbox.on_commit(self._on_commit)

    # ---- public --------------------------------------------------------------------------------
    @property
    def state(self) -> ConnState:
        return self._state

    @property
    def last_puback(self) -> float | None:
        """Wall time of the last PUBACK (< 0x80) for an outbox record, or None if none yet."""
        return self.drainer.last_puback_wall

    def down_for_s(self) -> float:
        """How long the platform has been unreachable (0 while connected); counts from start if never up."""
        return 0.0 if self._down_since_mono is None else self.clock.monotonic() - self._down_since_mono

    def notify_alarm(self) -> None:
        """A new alarm: skip any probe interval or backoff wait and try to connect now."""
        self._kick.set()
        self.drainer.on_commit(RecordClass.ALARM)

    def health(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        d = self.drainer
        return {
            "state": str(self._state), "state_age_s": round(now - self._state_since_mono, 1), "since_wall": self._state_since_wall,
            "broker": f"{self.host}:{self.port}", "tls": self._tls is not None, "fault": self.fault or d.fault,
            "last_puback_wall": d.last_puback_wall,
            "last_puback_age_s": None if d.last_puback_mono is None else round(now - d.last_puback_mono, 1),
            "connects": self.connects, "connect_failures": self.connect_failures, "inflight": len(d.inflight),
            "reconnect_delay_s": self.reconnect_delays.snapshot(), "commands": self.dispatcher.health(),
            **_fields(d.counters),
        }

    async def run(self) -> None:
        """Connect, publish and answer commands until cancelled; then go offline cleanly."""
        try:
            await self._connection_loop()
        finally:
            await self._stop()

    # ---- state machine -------------------------------------------------------------------------
    def _set_state(self, state: ConnState) -> None:
        if state != self._state:
            self._state = state
            self._state_since_mono = self.clock.monotonic()
            self._state_since_wall = self.clock.wall()
            if state == ConnState.CONNECTED:
                self._down_since_mono = None
            elif self._down_since_mono is None:
                self._down_since_mono = self._state_since_mono

    async def _wait_kick(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._kick.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass
        self._kick.clear()

    async def _connection_loop(self) -> None:
        outage_start = self.clock.monotonic()
        delay: float | None = None  # None: first attempt after the broker was (re)seen
        while True:
            if self._state != ConnState.NOT_AUTHORIZED:
                self._set_state(ConnState.PROBING)
            was_down = False
            while not await self._probe_once():
                was_down = True
            if was_down:  # evidence the broker is back: reset backoff (CLARIFICATIONS "Reconnect")
                self.backoff.reset()
                delay = None
            wait = self.backoff.first_jitter() if delay is None else delay
            if wait > 0:
                if self._state != ConnState.NOT_AUTHORIZED:
                    self._set_state(ConnState.BACKOFF)
                await self._wait_kick(wait)
            if self._state != ConnState.NOT_AUTHORIZED:
                self._set_state(ConnState.CONNECTING)
            try:
                session = await self._open_session()
            except UplinkError as exc:
                delay = self._connect_failed(exc)
                continue
            connected_at = self.clock.monotonic()
            self.reconnect_delays.add(connected_at - outage_start)
            await self._serve(session)
            outage_start = self.clock.monotonic()
            if outage_start - connected_at >= STABLE_SESSION_S:
                self.backoff.reset()
                delay = None
            else:  # accepted then dropped at once (client-id takeover, broker overload): back off
                delay = self.backoff.next_delay()

    async def _probe_once(self) -> bool:
        """One TCP probe; on failure wait out the rest of the period (half of probe_interval_s, since the
        2 s "backlog flows again" promise includes the connect itself; a hung probe times out at the full
        interval, so probes are never further apart than probe_interval_s)."""
        start = self.clock.monotonic()
        if await probe(self.host, self.port, self.cfg.probe_interval_s):
            return True
        await self._wait_kick(max(0.0, self.cfg.probe_interval_s / 2 - (self.clock.monotonic() - start)))
        return False

    def _connect_failed(self, exc: UplinkError) -> float:
        self.connect_failures += 1
        auth = isinstance(exc, TlsRefused) or (isinstance(exc, ConnectRefused) and exc.auth)
        if auth:
            self.backoff.to_cap()
            self._set_state(ConnState.NOT_AUTHORIZED)
        self.fault = "not_authorized" if isinstance(exc, ConnectRefused) and exc.auth else ("tls_refused" if isinstance(exc, TlsRefused) else "connect_failed")
        delay = self.backoff.next_delay()
        (self.log.debug if self._failing else self.log.warning)("uplink_connect_failed", error=str(exc), rc=exc.rc, retry_in_s=round(delay, 1))
        self._failing = True
        return delay

    async def _open_session(self) -> Session:
        s = Session(self.client_id, self.cfg.keepalive_s, self.cfg.session_expiry_s, self.cfg.max_inflight, self._on_publish, self._on_message)
        s.configure_auth(self.creds.mqtt_username, self.creds.mqtt_password, self._tls)
        s.will_set(self.env.topics.status, self.env.status(self.clock.boot_id, self.clock.now(), False, {"reason": "connection_lost"}).payload)
        await s.connect(self.host, self.port, CONNECT_TIMEOUT_S)
        return s

    async def _serve(self, session: Session) -> None:
        self._session = session
        self.connects += 1
        self.fault = ""
        self._set_state(ConnState.CONNECTED)
        self.log.info("uplink_connected", broker=f"{self.host}:{self.port}", session_present=session.session_present, after_failures=self._failing)
        self._failing = False
        session.subscribe([self.env.topics.cmd, self.env.topics.relay])
        self._publish_status(online=True)
        drain = asyncio.create_task(self.drainer.run(session))
        status = asyncio.create_task(self._status_loop())
        closed = asyncio.ensure_future(session.closed)
        try:
            await asyncio.wait([drain, closed], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # On cancellation the session stays open: _stop() still publishes "offline" through it.
            for t in (drain, status):
                t.cancel()
            await asyncio.gather(drain, status, return_exceptions=True)
        session.abort()  # no-op when the broker already closed it
        self._session = None
        self.drainer.session_lost()
        self._fail_control_acks()
        self.log.warning("uplink_disconnected", rc=session.closed.result())
        if not drain.cancelled() and drain.exception() is not None:
            raise drain.exception()  # type: ignore[misc]  # a store failure: the supervisor restarts us

    async def _stop(self) -> None:
        session, self._session = self._session, None
        if session is not None and session.connected:
            mid = self._publish_status(online=False, session=session, reason="shutdown")
            fut = self._control_acks.get(mid) if mid is not None else None
            if fut is not None:
                await asyncio.wait([fut], timeout=STOP_TIMEOUT_S)
            await session.disconnect(STOP_TIMEOUT_S)
        elif session is not None:
            session.abort()
        for task in self._tasks:
            task.cancel()
        self.drainer.session_lost()
        self._set_state(ConnState.DISCONNECTED)

    def _publish_refused(self, rc: int) -> None:
        if rc == 0x87:
            self._set_state(ConnState.NOT_AUTHORIZED)

    # ---- messages ------------------------------------------------------------------------------
    def _on_commit(self, cls_min: RecordClass) -> None:
        if cls_min == RecordClass.ALARM and self._state != ConnState.CONNECTED:
            self._kick.set()
        self.drainer.on_commit(cls_min)

    def _on_publish(self, mid: int, rc: int) -> None:
        fut = self._control_acks.pop(mid, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(rc)
            return
        self.drainer.on_publish(mid, rc)

    def _fail_control_acks(self) -> None:
        for fut in self._control_acks.values():
            if not fut.done():
                fut.set_result(-1)
        self._control_acks.clear()

    def _publish_control(self, session: Session, topic: str, payload: bytes, retain: bool = False) -> int | None:
        try:
            mid = session.publish(topic, payload, retain=retain)
        except UplinkError:
            return None  # not connected: status is re-sent on connect; a lost reply is re-asked by the platform
        self._control_acks[mid] = asyncio.get_running_loop().create_future()
        return mid

    def status_fields(self) -> dict[str, Any]:
        provided = dict(self._status_provider())
        stats = self.outbox.stats()
        return {
            "version": gateway.__version__,
            "uptime_s": round(self.clock.monotonic() - self._started_mono, 1),
            "queue": dict(stats.depth), "oldest_age_s": {k: round(v, 1) for k, v in stats.oldest_age_s.items()},
            "store_fault": stats.fault, "uplink_fault": self.drainer.fault,
            "drivers": provided.get("drivers", {}), "active_alarms": provided.get("active_alarms", 0),
        }

    def _publish_status(self, online: bool, session: Session | None = None, reason: str = "") -> int | None:
        session = session or self._session
        if session is None:
            return None
        fields = self.status_fields() if online else {"reason": reason}
        msg = self.env.status(self.clock.boot_id, self.clock.now(), online, fields)
        return self._publish_control(session, msg.topic, msg.payload, retain=True)

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.status_interval_s)
            self._publish_status(online=True)

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic not in (self.env.topics.cmd, self.env.topics.relay):
            return
        task = asyncio.get_running_loop().create_task(self._answer(topic == self.env.topics.relay, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, relay: bool, payload: bytes) -> None:
        reply = await self.dispatcher.handle(relay, payload)
        session = self._session
        if session is not None:
            stamp: Stamp = self.clock.now()
            msg = self.env.reply(self.clock.boot_id, stamp, reply.id, reply.command, reply.status, reply.reason, reply.result)
            self._publish_control(session, msg.topic, msg.payload)


def _fields(struct: Any) -> dict[str, Any]:
    return {f: getattr(struct, f) for f in struct.__struct_fields__}
