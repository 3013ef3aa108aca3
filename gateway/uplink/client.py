"""The MQTT uplink: connection state machine (probe, backoff, connect, serve) around one Session at a time.

    [config_error: TLS files re-read every probe period]
    probing --TCP probe ok--> [backoff] --> connecting --CONNACK 0--> connected --lost--> probing
                                                 |--CONNACK auth rc / TLS refused--> not_authorized (cap)
                                                 |--CONNACK busy/quota/rate/moved--> backoff (busy_backoff_s)
Never raises for a configuration fault (issue 15 item 3): health() says down, with a reason word
(gateway/uplink/faults.py). A new alarm (notify_alarm) cuts every wait short. The Drainer publishes
while connected; commands and relayed reports go through the bounded CommandInbox to .../reply.
"""

from __future__ import annotations

import asyncio
import enum
import random
import ssl
from collections.abc import Callable
from typing import Any

import gateway
from gateway.errors import ConfigError, UplinkError
from gateway.model import RecordClass, Stamp
from gateway.uplink import faults
from gateway.uplink.commands import NonceCache, Verifier
from gateway.uplink.dispatch import Dispatcher, Handler, RelayHandler, Reply
from gateway.uplink.drain import Drainer
from gateway.uplink.inbox import CommandInbox
from gateway.uplink.reconnect import Backoff, Histogram, probe_reason
from gateway.uplink.session import ConnectRefused, HostUnresolvable, Session, TlsRefused, broker_address
from gateway.uplink.wire import Envelope

CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 1.0  # offline status PUBACK + DISCONNECT on shutdown (daemon stop budget is 4 s)


class ConnState(enum.StrEnum):
    DISCONNECTED = "disconnected"  # not started, or stopped
    PROBING = "probing"  # TCP-probing the broker port
    BACKOFF = "backoff"  # broker reachable, waiting before the next full connect
    CONNECTING = "connecting"
    CONNECTED = "connected"
    NOT_AUTHORIZED = "not_authorized"  # CONNACK auth failure, TLS refused, or PUBACK 135 (ACL)
    CONFIG_ERROR = "config_error"  # TLS files missing/invalid/expired, or the broker URL unusable: no attempt made


# States that describe a fault an operator must fix: kept through the retries until a connect succeeds.
STICKY = frozenset({ConnState.NOT_AUTHORIZED, ConnState.CONFIG_ERROR})


class Uplink:
    def __init__(self, cfg: Any, credentials: Any, identity: Any, outbox: Any, clock: Any, log: Any,
                 handlers: dict[str, Handler] | None = None, relay_handler: RelayHandler | None = None,
                 status_provider: Callable[[], dict[str, Any]] | None = None) -> None:
        self.cfg = cfg
        self.creds = credentials
        self.outbox = outbox
        self.clock = clock
        self.log = log.bind(component="uplink") if hasattr(log, "bind") else log
        self.reason, self.detail = faults.STARTING, ""
        self._outage_reason = ""
        self._url_error = ""
        try:
            self.host, self.port, self.use_tls = broker_address(cfg.broker_url)
        except ConfigError as exc:  # validated at config load; still never a reason to stop the daemon
            self.host, self.port, self.use_tls = "", 0, False
            self._url_error = str(exc)
        self._configured = (self.host, self.port)
        self._tls: ssl.SSLContext | None = None
        self._rng = random.Random()
        self.client_id = cfg.client_id or identity.gateway_id
        self.env = Envelope(identity.gateway_id, outbox.store_id)
        self.drainer = Drainer(cfg, outbox, self.env, clock, self.log)
        self.drainer.on_refused = self._publish_refused
        self.drainer.on_recovered = lambda: self._set_state(ConnState.CONNECTED)
        self._status_provider = status_provider or (lambda: {})
        verifier = Verifier(identity.gateway_id, dict(credentials.command_keys), cfg.command_window_s, clock)
        self.dispatcher = Dispatcher(verifier, NonceCache(outbox, cfg.command_window_s), handlers or {}, relay_handler,
                                     self._status_provider, clock, self.log)
        self.inbox = CommandInbox(self.dispatcher, self._send_reply, cfg.command_queue_max, clock, self.log)
        self.backoff = Backoff(cfg.reconnect_base_s, cfg.reconnect_cap_s)
        self.reconnect_delays = Histogram()
        self._state = ConnState.DISCONNECTED
        self._state_since_mono = clock.monotonic()
        self._state_since_wall = clock.wall()
        self._started_mono = clock.monotonic()
        self._down_since_mono: float | None = clock.monotonic()  # None while connected
        self._down_since_wall: float | None = clock.wall()
        self.last_down: dict[str, Any] = {}  # the outage that ended with the last connect: reason, for_s
        self._kick = asyncio.Event()
        self._session: Session | None = None
        self._control_acks: dict[int, asyncio.Future[int]] = {}
        self.fault = ""
        self.connects = 0
        self.connect_failures = 0
        self._failing = False
        self._logged_reason = ""
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
        """state (ConnState word), up, reason/detail (faults.py words; "" while up), since_wall_s (this
        state), down_since_wall_s / down_for_s (the outage; None / 0 while up), config_fault (an operator
        must act), plus counters. The daemon's trouble indication is computed from up + down_for_s."""
        now = self.clock.monotonic()
        d = self.drainer
        up = self._state == ConnState.CONNECTED
        reason = "" if up and not d.fault else (faults.PUBLISH_REFUSED if up else self.reason)
        return {
            "state": str(self._state), "up": up and not d.fault, "reason": reason, "detail": "" if up and not d.fault else (d.fault if up else self.detail),
            "config_fault": reason in faults.CONFIG_REASONS, "since_wall_s": self._state_since_wall,
            "down_since_wall_s": self._down_since_wall, "down_for_s": round(self.down_for_s(), 1), "last_down": self.last_down,
            "state_age_s": round(now - self._state_since_mono, 1), "since_wall": self._state_since_wall,
            "broker": f"{self.host}:{self.port}", "tls": self.use_tls, "fault": self.fault or d.fault,
            "last_puback_wall": d.last_puback_wall,
            "last_puback_age_s": None if d.last_puback_mono is None else round(now - d.last_puback_mono, 1),
            "connects": self.connects, "connect_failures": self.connect_failures, "inflight": len(d.inflight),
            "reconnect_delay_s": self.reconnect_delays.snapshot(), "commands": {**self.dispatcher.health(), **self.inbox.health()},
            **_fields(d.counters),
        }

    async def run(self) -> None:
        """Connect, publish and answer commands until cancelled; then go offline cleanly. Raises only for a
        store failure inside the drain (the supervisor restarts it), never for a configuration fault."""
        worker = asyncio.create_task(self.inbox.run())
        try:
            await self._connection_loop()
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
            await self._stop()

    # ---- state machine -------------------------------------------------------------------------
    def _set_state(self, state: ConnState, reason: str = "", detail: str = "") -> None:
        if state != ConnState.CONNECTED and reason:
            self._note_reason(reason, detail)
        if state != self._state:
            self._state = state
            self._state_since_mono = self.clock.monotonic()
            self._state_since_wall = self.clock.wall()
            if state == ConnState.CONNECTED:
                if self._down_since_mono is not None and self._outage_reason:
                    self.last_down = {"reason": self._outage_reason, "for_s": round(self._state_since_mono - self._down_since_mono, 1),
                                      "until_wall_s": self._state_since_wall}
                self._outage_reason = ""
                self._down_since_mono = self._down_since_wall = None
                self.reason, self.detail = "", ""
            elif self._down_since_mono is None:
                self._down_since_mono, self._down_since_wall = self._state_since_mono, self._state_since_wall

    def _note_reason(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        if reason not in (faults.STARTING, faults.CONNECTING):
            self._outage_reason = reason  # what the retained status reports once the outage is over

    def _phase(self, state: ConnState, reason: str = "", detail: str = "") -> None:
        """A step of the retry loop: does not overwrite a sticky fault state (STICKY) until connected."""
        if self._state in STICKY:
            if reason and self.reason not in faults.CONFIG_REASONS:
                self._note_reason(reason, detail)
            return
        self._set_state(state, reason, detail)

    def _log_down(self, reason: str, detail: str, **kw: Any) -> None:
        # First failure (or a new reason) at WARNING, repeats at DEBUG (STYLE "Errors and logging").
        level = self.log.warning if reason != self._logged_reason else self.log.debug
        self._logged_reason = reason
        level("uplink_down", reason=reason, detail=detail, **kw)

    async def _wait_kick(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self._kick.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass
        self._kick.clear()

    def _load_tls(self) -> bool:
        """Re-read the TLS files (each attempt: a certificate signed later is picked up). False: config fault."""
        if self._url_error:
            self._set_state(ConnState.CONFIG_ERROR, faults.BROKER_URL_INVALID, self._url_error)
            return False
        if not self.use_tls:
            return True
        try:
            self._tls = faults.tls_context(self.cfg.ca_file, self.cfg.cert_file, self.cfg.key_file,
                                           self.clock.wall() if self.clock.synced() else None)
        except faults.TlsFilesError as exc:
            self._set_state(ConnState.CONFIG_ERROR, exc.reason, exc.detail)
            return False
        if self._state == ConnState.CONFIG_ERROR:  # the files are fine now: the fault is no longer sticky
            self._set_state(ConnState.PROBING, faults.CONNECTING, "TLS files loaded")
            self.log.info("uplink_tls_files_loaded")
        return True

    async def _connection_loop(self) -> None:
        outage_start = self.clock.monotonic()
        delay: float | None = None  # None: first attempt after the broker was (re)seen
        long_wait = False  # the last refusal asked for a long back-off: a probe success does not cut it
        while True:
            if not self._load_tls():
                self._log_down(self.reason, self.detail)
                await self._wait_kick(max(self.cfg.probe_interval_s, 1.0))
                continue
            self._phase(ConnState.PROBING)
            was_down = False
            while not await self._probe_once():
                was_down = True
            if was_down and not long_wait:  # evidence the broker is back: reset backoff (CLARIFICATIONS "Reconnect")
                self.backoff.reset()
                delay = None
            wait = self._rng.uniform(0, self.cfg.connect_jitter_s) if delay is None else delay
            if wait > 0:
                self._phase(ConnState.BACKOFF)
                await self._wait_kick(wait)  # an alarm cuts the fleet-spreading jitter short (issue 21)
            self._phase(ConnState.CONNECTING)
            try:
                session = await self._open_session()
            except UplinkError as exc:
                delay, long_wait = self._connect_failed(exc)
                continue
            connected_at = self.clock.monotonic()
            self.reconnect_delays.add(connected_at - outage_start)
            await self._serve(session)
            outage_start = self.clock.monotonic()
            long_wait = False
            if outage_start - connected_at >= self.cfg.stable_after_s:
                self.backoff.reset()
                delay = None
            else:  # accepted then dropped soon (takeover, overload, flapping ban ahead): keep backing off
                delay = self.backoff.next_delay()
            if session.server_reference or session.closed.result() in (0x89, 0x97, 0x9C, 0x9D, 0x9F):
                delay, long_wait = self._server_asked_to_wait(session.closed.result(), session.server_reference)

    async def _probe_once(self) -> bool:
        """One TCP probe; on failure wait out the rest of the period (half of probe_interval_s, since the
        2 s "backlog flows again" promise includes the connect itself; a hung probe times out at the full
        interval, so probes are never further apart than probe_interval_s)."""
        start = self.clock.monotonic()
        reason = await probe_reason(self.host, self.port, self.cfg.probe_interval_s)
        if not reason:
            return True
        self._phase(ConnState.PROBING, reason, f"{self.host}:{self.port}")
        self._log_down(reason, f"{self.host}:{self.port}")
        await self._wait_kick(max(0.0, self.cfg.probe_interval_s / 2 - (self.clock.monotonic() - start)))
        return False

    def _connect_failed(self, exc: UplinkError) -> tuple[float, bool]:
        self.connect_failures += 1
        if self._redirect_used():
            return 0.0, False  # the referred server failed: straight back to the configured one
        if isinstance(exc, ConnectRefused) and (exc.busy or exc.moved):
            return self._server_asked_to_wait(exc.rc, exc.server_reference)
        auth = isinstance(exc, TlsRefused) or (isinstance(exc, ConnectRefused) and exc.auth)
        if isinstance(exc, TlsRefused):
            reason = exc.reason_word
        elif isinstance(exc, ConnectRefused):
            reason = faults.NOT_AUTHORIZED if exc.auth else faults.CONNECT_FAILED
        else:
            reason = faults.HOST_UNRESOLVABLE if isinstance(exc, HostUnresolvable) else faults.CONNECT_FAILED
        if auth:
            self.backoff.to_cap()
            self._set_state(ConnState.NOT_AUTHORIZED, reason, str(exc))
        else:
            self._phase(ConnState.BACKOFF, reason, str(exc))
        self.fault = "not_authorized" if isinstance(exc, ConnectRefused) and exc.auth else ("tls_refused" if isinstance(exc, TlsRefused) else "connect_failed")
        delay = self.backoff.next_delay()
        self._log_down(reason, str(exc), rc=exc.rc, retry_in_s=round(delay, 1))
        self._failing = True
        return delay, False

    def _server_asked_to_wait(self, rc: int, reference: str) -> tuple[float, bool]:
        """CONNACK/DISCONNECT busy, quota, rate (0x89/0x97/0x9F) or moved (0x9C/0x9D): a long, jittered
        wait (EMQX bans a flapping client id for 5 min), or at once to the v5 Server Reference if given."""
        moved = rc in (0x9C, 0x9D) or bool(reference)
        target = _parse_reference(reference, self.port) if reference else None
        reason = faults.SERVER_MOVED if moved else faults.SERVER_BUSY
        self._phase(ConnState.BACKOFF, reason, f"rc 0x{rc:02X}" + (f", server reference {reference!r}" if reference else ""))
        if target is not None:
            self.host, self.port = target
            self._log_down(reason, self.detail, redirect=f"{self.host}:{self.port}")
            return 0.0, False
        delay = self.cfg.busy_backoff_s * self._rng.uniform(0.5, 1.0)
        self.fault = reason
        self._log_down(reason, self.detail, rc=rc, retry_in_s=round(delay, 1))
        return delay, True

    def _redirect_used(self) -> bool:
        if (self.host, self.port) == self._configured:
            return False
        self.host, self.port = self._configured
        return True

    async def _open_session(self) -> Session:
        s = Session(self.client_id, self.cfg.keepalive_s, self.cfg.session_expiry_s, self.cfg.max_inflight, self._on_publish, self._on_message)
        s.configure_auth(self.creds.mqtt_username, self.creds.mqtt_password, self._tls if self.use_tls else None)
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
        self._phase(ConnState.PROBING, faults.CONNECTION_LOST, f"rc {session.closed.result()}")
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
        self.drainer.session_lost()
        self._set_state(ConnState.DISCONNECTED, faults.STOPPED)

    def _publish_refused(self, rc: int) -> None:
        if rc == 0x87:
            self._set_state(ConnState.NOT_AUTHORIZED, faults.PUBLISH_REFUSED, f"PUBACK 0x{rc:02X}: the broker ACL refuses this topic")

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
            **({"uplink_last_down": self.last_down} if self.last_down else {}),
            "drivers": provided.get("drivers", {}), "active_alarms": provided.get("active_alarms", 0),
            # config_version, its hash, pending and last apply error (docs/fleet.md), once the daemon provides them
            **({"config": provided["config"]} if isinstance(provided.get("config"), dict) else {}),
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
        if topic in (self.env.topics.cmd, self.env.topics.relay):
            self.inbox.offer(topic == self.env.topics.relay, payload)  # O(1): no parsing in paho's callback

    def _send_reply(self, reply: Reply) -> None:
        session = self._session
        if session is not None:
            stamp: Stamp = self.clock.now()
            msg = self.env.reply(self.clock.boot_id, stamp, reply.id, reply.command, reply.status, reply.reason, reply.result)
            self._publish_control(session, msg.topic, msg.payload)


def _parse_reference(reference: str, default_port: int) -> tuple[str, int] | None:
    """MQTT v5 §4.11 Server Reference, first entry of "host[:port] host2..." (the form EMQX and HiveMQ send)."""
    first = reference.split()[0] if reference.split() else ""
    host, _, port = first.rpartition(":") if first.count(":") == 1 else (first, "", "")
    try:
        return (host, int(port)) if port else ((first, default_port) if first else None)
    except ValueError:
        return None


def _fields(struct: Any) -> dict[str, Any]:
    return {f: getattr(struct, f) for f in struct.__struct_fields__}
