"""Issue 21 reconnect manners, against a tiny fake broker that answers CONNECT with a chosen v5 CONNACK
(a clustered broker protecting itself) and against the real mosquitto: busy/quota/rate refusals wait
long, a Server Reference is followed at once, a session dropped soon after CONNACK does not reset the
backoff, and an alarm cuts the fleet-spreading first-connect jitter short."""

import asyncio
import time

import pytest

from gateway.clock import Clock
from gateway.model import RecordClass
from tests.integration.uplink_support import make_uplink, open_outbox
from tests.support.wait import async_wait_for


def _connack(rc: int, server_reference: str = "") -> bytes:
    """MQTT v5 §3.2: CONNACK with flags 0, reason code, and optionally a Server Reference (0x1C)."""
    props = b""
    if server_reference:
        ref = server_reference.encode()
        props = b"\x1c" + len(ref).to_bytes(2, "big") + ref
    body = bytes([0, rc, len(props)]) + props  # property length < 128: one varint byte
    return bytes([0x20, len(body)]) + body


class FakeBroker:
    """Counts CONNECT packets (TCP probes send none) and answers each with the same CONNACK."""

    def __init__(self, rc: int, server_reference: str = "", close_after_s: float | None = None) -> None:
        self.reply = _connack(rc, server_reference)
        self.close_after_s = close_after_s
        self.connects: list[float] = []
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> "FakeBroker":
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await reader.read(1)
            if first[:1] == b"\x10":  # CONNECT
                self.connects.append(time.monotonic())
                writer.write(self.reply)
                await writer.drain()
                if self.close_after_s is not None:
                    await asyncio.sleep(self.close_after_s)
                else:
                    await reader.read(65536)  # the client closes after a refusal
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


async def _with_uplink(tmp_path, url, body, **cfg):
    clock = Clock("assume_synced")
    outbox = await open_outbox(tmp_path, clock)
    up = make_uplink(url, outbox, clock, **cfg)
    task = asyncio.create_task(up.run())
    try:
        return await body(up, outbox, clock)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()


@pytest.mark.parametrize("rc", [0x9F, 0x97, 0x89])
def test_busy_quota_and_rate_refusals_back_off_long_but_an_alarm_still_goes_at_once(tmp_path, rc):
    async def main():
        fake = await FakeBroker(rc).start()

        async def body(up, outbox, clock):
            # (a probe runs between the refusal and the wait: state is "probing" for that moment)
            await async_wait_for(lambda: fake.connects and up.health()["reason"] == "server_busy" and up.state == "backoff", what="refused busy")
            first = up.health()
            quiet_until = time.monotonic() + 3.0  # with busy_backoff_s = 60 the next try is >= 30 s away
            await async_wait_for(lambda: time.monotonic() > quiet_until or len(fake.connects) > 1, timeout_s=5, what="quiet window")
            tries_while_quiet = len(fake.connects)
            await outbox.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "fire"})
            # "At once" against a 30-60 s busy wait; 10 s of slack for a loaded CI box (commit fsync, probe, connect).
            await async_wait_for(lambda: len(fake.connects) > tries_while_quiet, timeout_s=10, what="alarm retries at once")
            return first, tries_while_quiet

        try:
            return await _with_uplink(tmp_path, f"mqtt://127.0.0.1:{fake.port}", body, busy_backoff_s=60.0, probe_interval_s=0.5)
        finally:
            await fake.stop()

    first, tries_while_quiet = asyncio.run(main())
    assert tries_while_quiet == 1  # probes kept succeeding, yet no reconnect storm (no backoff reset on probe)
    assert first["state"] == "backoff" and first["fault"] == "server_busy" and f"0x{rc:02X}" in first["detail"]
    assert first["config_fault"] is False


def test_server_moved_with_a_server_reference_is_followed_at_once(broker, tmp_path):
    async def main():
        fake = await FakeBroker(0x9D, server_reference=f"127.0.0.1:{broker.port}").start()

        async def body(up, outbox, clock):
            t0 = time.monotonic()
            await async_wait_for(lambda: up.state == "connected", timeout_s=5, what="connected to the referred server")
            return time.monotonic() - t0, up.health()

        try:
            return await _with_uplink(tmp_path, f"mqtt://127.0.0.1:{fake.port}", body, busy_backoff_s=60.0), fake.connects
        finally:
            await fake.stop()

    (took_s, health), connects = asyncio.run(main())
    assert len(connects) == 1 and took_s < 5.0
    assert health["broker"] == f"127.0.0.1:{broker.port}"


def test_a_session_dropped_right_after_connack_does_not_reset_the_backoff(tmp_path):
    """A broker that accepts then kicks (takeover, overload): without stable_after_s each CONNACK 0 would
    reset the backoff and the gateway would reconnect every ~0.5 s into a flapping ban."""
    async def main():
        fake = await FakeBroker(0x00, close_after_s=0.05).start()

        async def body(up, outbox, clock):
            t0 = time.monotonic()
            await async_wait_for(lambda: time.monotonic() - t0 > 6.0, timeout_s=8, interval_s=0.1, what="6 s of flapping")
            return list(fake.connects)

        try:
            return await _with_uplink(tmp_path, f"mqtt://127.0.0.1:{fake.port}", body, reconnect_base_s=1.0, stable_after_s=60.0)
        finally:
            await fake.stop()

    connects = asyncio.run(main())
    gaps = [b - a for a, b in zip(connects, connects[1:])]
    assert 2 <= len(connects) <= 4, gaps  # delays 0.5-1, 1-2, 2-4 s: growing, not a 0.5 s storm
    assert gaps == sorted(gaps) or max(gaps) >= 1.0


@pytest.mark.slow
def test_first_connect_waits_in_the_jitter_window_unless_an_alarm_is_waiting(broker, tmp_path):
    async def body(up, outbox, clock):
        await async_wait_for(lambda: up.state == "backoff", what="waiting in the jitter window")
        held = up.state
        t0 = time.monotonic()
        await outbox.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "fire"})
        await async_wait_for(lambda: outbox.stats().depth.get("alarm", 0) == 0, timeout_s=15, what="alarm delivered")
        return held, time.monotonic() - t0

    held, took_s = asyncio.run(_with_uplink(tmp_path, broker.url, body, connect_jitter_s=600.0))
    assert held == "backoff" and took_s < 10.0  # against a window of up to 600 s; slack for a loaded box
