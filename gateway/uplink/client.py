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
import contextlib
import random
import ssl
from collections.abc import Callable
from typing import Any

import gateway
from gateway.errors import CommandRejected, ConfigError, GatewayError, UplinkError
from gateway.model import RecordClass
from gateway.uplink import faults
from gateway.uplink.commands import NonceCache, Verifier
from gateway.uplink.dispatch import Dispatcher, Handler, RelayHandler
from gateway.uplink.drain import Drainer
from gateway.uplink.inbox import CommandInbox
from gateway.uplink.ownmsgs import OwnMessages
from gateway.uplink.linkstate import ConnState, LinkState
from gateway.uplink.reconnect import Backoff, Histogram, parse_server_reference, probe_reason
from gateway.uplink.session import ConnectRefused, Session, TlsRefused, broker_address
from gateway.uplink.wire import Envelope

CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 1.0  # offline status PUBACK + DISCONNECT on shutdown (daemon stop budget is 4 s)


class Uplink:
    def __init__(self, cfg: Any, credentials: Any, identity: Any, outbox: Any, clock: Any, log: Any,
                 handlers: dict[str, Handler] | None = None, relay_handler: RelayHandler | None = None,
                 status_provider: Callable[[], dict[str, Any]] | None = None,
                 reload_credentials: Callable[[], Any] | None = None) -> None:
        """reload_credentials: given when the daemon could not load the credentials file (it passes empty
        Credentials): the uplink stays down with reason credentials_invalid and retries the loader each
        attempt, so fixing the file needs no restart (issue 15 item 3)."""
        self.cfg = cfg
        self._reload_credentials = reload_credentials
        self.creds = credentials
        self.outbox = outbox
        self.clock = clock
        self.log = log.bind(component="uplink") if hasattr(log, "bind") else log
        self.link = LinkState(clock)
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
        self.dispatcher.handlers.setdefault("table", self._table_command)
        self.own = OwnMessages(self.env, clock, lambda: self._session)
        self.inbox = CommandInbox(self.dispatcher, self.own.reply, cfg.command_queue_max, clock, self.log)
        self.backoff = Backoff(cfg.reconnect_base_s, cfg.reconnect_cap_s)
        self.reconnect_delays = Histogram()
        self._started_mono = clock.monotonic()
        self._kick = asyncio.Event()
        self._session: Session | None = None
        self.fault = ""
        self.connects = 0
        self.connect_failures = 0
        self._failing = False
        self._logged_reason = ""
        outbox.on_commit(self._on_commit)

    # ---- public --------------------------------------------------------------------------------
    @property
    def state(self) -> ConnState:
        return self.link.state

    @property
    def last_puback(self) -> float | None:
        """Wall time of the last PUBACK (< 0x80) for an outbox record, or None if none yet."""
        return self.drainer.last_puback_wall

    def down_for_s(self) -> float:
        """How long the platform has been unreachable (0 while connected); counts from start if never up."""
        return self.link.down_for_s()

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
        return {
            **self.link.fields(d.fault),
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
        self.link.set(state, reason, detail)

    def _phase(self, state: ConnState, reason: str = "", detail: str = "") -> None:
        self.link.phase(state, reason, detail)

    def _log_down(self, reason: str, detail: str, **kw: Any) -> None:
        # First failure (or a new reason) at WARNING, repeats at DEBUG (STYLE "Errors and logging").
        level = self.log.warning if reason != self._logged_reason else self.log.debug
        self._logged_reason = reason
        level("uplink_down", reason=reason, detail=detail, **kw)

    async def _wait_kick(self, timeout_s: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (gh-86296); a likely
        # cause of rare teardown hangs seen in the drain-rate test and the fleet simulation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._kick.wait()
        self._kick.clear()

    def _load_tls(self) -> bool:
        """Re-read the TLS files (each attempt: a certificate signed later is picked up). False: config fault."""
        if self._url_error:
            self._set_state(ConnState.CONFIG_ERROR, faults.BROKER_URL_INVALID, self._url_error)
            return False
        if self._reload_credentials is not None:
            try:
                self.creds = self._reload_credentials()
            except GatewayError as exc:  # ConfigError: missing, group-readable or invalid file
                self._set_state(ConnState.CONFIG_ERROR, faults.CREDENTIALS_INVALID, str(exc)[:300])
                return False
            self._reload_credentials = None
            self.dispatcher.verifier.set_keys(dict(self.creds.command_keys))
        if not self.use_tls:
            return True
        try:
            self._tls = faults.tls_context(self.cfg.ca_file, self.cfg.cert_file, self.cfg.key_file,
                                           self.clock.wall() if self.clock.synced() else None)
        except faults.TlsFilesError as exc:
            self._set_state(ConnState.CONFIG_ERROR, exc.reason, exc.detail)
            return False
        if self.link.state == ConnState.CONFIG_ERROR:  # the files are fine now: the fault is no longer sticky
            self._set_state(ConnState.PROBING, faults.CONNECTING, "TLS files loaded")
            self.log.info("uplink_tls_files_loaded")
        return True

    async def _connection_loop(self) -> None:
        outage_start = self.clock.monotonic()
        delay: float | None = None  # None: first attempt after the broker was (re)seen
        long_wait = False  # the last refusal asked for a long back-off: a probe success does not cut it
        while True:
            if not self._load_tls():
                self._log_down(self.link.reason, self.link.detail)
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
        if self._leave_redirect():  # the referred server failed: back to the configured one, not at once
            self._phase(ConnState.BACKOFF, faults.SERVER_MOVED, f"referred server failed: {exc}")
            return self.cfg.busy_backoff_s * self._rng.uniform(0.5, 1.0), True
        if isinstance(exc, ConnectRefused) and (exc.busy or exc.moved):
            return self._server_asked_to_wait(exc.rc, exc.server_reference)
        reason = getattr(exc, "reason_word", faults.CONNECT_FAILED)
        if isinstance(exc, TlsRefused) or (isinstance(exc, ConnectRefused) and exc.auth):
            self.backoff.to_cap()  # an operator must act: retrying sooner cannot help
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
        target = parse_server_reference(reference, self.port) if reference else None
        reason = faults.SERVER_MOVED if moved else faults.SERVER_BUSY
        self._phase(ConnState.BACKOFF, reason, f"rc 0x{rc:02X}" + (f", server reference {reference!r}" if reference else ""))
        if target is not None:
            self.host, self.port = target
            self._log_down(reason, self.link.detail, redirect=f"{self.host}:{self.port}")
            return 0.0, False
        delay = self.cfg.busy_backoff_s * self._rng.uniform(0.5, 1.0)
        self.fault = reason
        self._log_down(reason, self.link.detail, rc=rc, retry_in_s=round(delay, 1))
        return delay, True

    def _leave_redirect(self) -> bool:
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
            waiting: list[asyncio.Future[None] | asyncio.Future[int]] = [drain, closed]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # On cancellation the session stays open: _stop() still publishes "offline" through it.
            for t in (drain, status):
                t.cancel()
            await asyncio.gather(drain, status, return_exceptions=True)
        session.abort()  # no-op when the broker already closed it
        self._session = None
        self.drainer.session_lost()
        self.own.session_lost()
        self._phase(ConnState.PROBING, faults.CONNECTION_LOST, f"rc {session.closed.result()}")
        self.log.warning("uplink_disconnected", rc=session.closed.result())
        failed = None if drain.cancelled() else drain.exception()
        if failed is not None:
            raise failed  # a store failure: the supervisor restarts us

    async def _stop(self) -> None:
        session, self._session = self._session, None
        if session is not None and session.connected:
            mid = self.own.status(False, {"reason": "shutdown"}, session)
            await self.own.wait_acked(mid, STOP_TIMEOUT_S)
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
        if cls_min == RecordClass.ALARM and self.link.state != ConnState.CONNECTED:
            self._kick.set()
        self.drainer.on_commit(cls_min)

    def _on_publish(self, mid: int, rc: int) -> None:
        if not self.own.on_publish(mid, rc):
            self.drainer.on_publish(mid, rc)

    def status_fields(self) -> dict[str, Any]:
        provided = dict(self._status_provider())
        stats = self.outbox.stats()
        return {
            "version": gateway.__version__,
            "uptime_s": round(self.clock.monotonic() - self._started_mono, 1),
            "queue": dict(stats.depth), "oldest_age_s": {k: round(v, 1) for k, v in stats.oldest_age_s.items()},
            "store_fault": stats.fault, "uplink_fault": self.drainer.fault, "evicted": stats.evicted,
            **({"uplink_last_down": self.link.last_down} if self.link.last_down else {}),
            "drivers": provided.get("drivers", {}), "active_alarms": provided.get("active_alarms", 0),
            # config_version, its hash, pending and last apply error (docs/fleet.md), once the daemon provides them
            **({"config": provided["config"]} if isinstance(provided.get("config"), dict) else {}),
            # software update progress and result (docs/fleet.md), once the daemon provides them
            **({"update": provided["update"]} if isinstance(provided.get("update"), dict) else {}),
        }

    def _publish_status(self, online: bool) -> int | None:
        return self.own.status(online, self.status_fields())

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.status_interval_s)
            self._publish_status(online=True)

    async def _table_command(self, args: dict[str, Any]) -> dict[str, Any]:
        """`table` {"h"}: a recent v2 stream table by hash ("" = current), for a platform that missed it."""
        h = args.get("h", "")
        doc = self.drainer.batcher.table_doc(h) if isinstance(h, str) else None
        if doc is None:
            raise CommandRejected("unknown_table", f"no recent telemetry table {str(h)[:20]!r}")
        return doc

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic in (self.env.topics.cmd, self.env.topics.relay):
            self.inbox.offer(topic == self.env.topics.relay, payload)  # O(1): no parsing in paho's callback


def _fields(struct: Any) -> dict[str, Any]:
    return {f: getattr(struct, f) for f in struct.__struct_fields__}
