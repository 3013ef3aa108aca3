"""The uplink against a real mosquitto and the real outbox: PUBACK deletes, outages lose nothing,
alarms first, ACL denial keeps rows, Last Will on a dropped link, every message matches its schema."""

import asyncio
import json
import signal
import subprocess
import time

import pytest

from gateway.clock import Clock
from gateway.config.schema import Credentials
from gateway.model import RecordClass
from tests.integration.uplink_support import GW, Platform, make_uplink, open_outbox, reading
from tests.support.broker import Broker
from gateway.simulate.proxy import FaultProxy
from tests.support.wait import async_wait_for, wait_for
from tests.unit.uplink_schema import check_message


async def _drained(outbox, timeout_s=20.0):
    await async_wait_for(lambda: sum(outbox.stats().depth.values()) == 0, timeout_s=timeout_s, what="outbox drained")


def _check_seq_report(platform, produced):
    """reliability §6 checker: nothing lost, nothing unexpected, FIFO per class."""
    got = platform.seqs()
    seqs = [s for _c, s in got]
    assert set(seqs) == set(produced), f"lost {sorted(set(produced) - set(seqs))[:10]}, unexpected {sorted(set(seqs) - set(produced))[:10]}"
    for cls in ("alarm", "event", "telemetry"):
        first_seen = list(dict.fromkeys(s for c, s in got if c == cls))
        assert first_seen == sorted(first_seen), f"{cls} out of order"


class Gateway:
    """The real outbox + an Uplink behind a FaultProxy, running as a task; `async with` stops all three."""

    def __init__(self, broker_port, tmp_path):
        self.broker_port, self.tmp_path = broker_port, tmp_path

    async def __aenter__(self):
        self.clock = Clock("assume_synced")
        self.outbox = await open_outbox(self.tmp_path, self.clock)
        self.proxy = FaultProxy("127.0.0.1", self.broker_port)
        await self.proxy.start()
        self.up = make_uplink(f"mqtt://127.0.0.1:{self.proxy.port}", self.outbox, self.clock)
        self.task = asyncio.create_task(self.up.run())
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.proxy.stop()
        await self.outbox.close()


def test_records_are_published_deleted_on_puback_and_match_their_schemas(broker, tmp_path):
    platform = Platform(broker.port)

    async def main():
        clock = Clock("assume_synced")
        outbox = await open_outbox(tmp_path, clock)
        produced = [await outbox.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "smoke 2-1-401"})]
        for i in range(300):
            outbox.put_reading(reading(clock, f"hydrant-{i % 3}", i))
        produced.append(await outbox.put(RecordClass.EVENT, "event.tamper", "manhole-1", clock.now(), {}))
        up = make_uplink(broker.url, outbox, clock)
        task = asyncio.create_task(up.run())
        await _drained(outbox)
        # The rows are gone once ack() committed; the counter moves when that coroutine resumes.
        await async_wait_for(lambda: up.health()["records_acked"] >= 302, what="acks counted")
        assert up.last_puback is not None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        produced += list(range(1, outbox.stats().last_seq + 1))
        await outbox.close()
        return set(produced)

    produced = asyncio.run(main())
    # The last message of a clean stop is the retained offline status: everything before it has arrived.
    wait_for(lambda: any(t.endswith("/status") and b'"reason":"shutdown"' in p for t, p, _r in platform.snapshot()),
             timeout_s=10, what="offline status at the platform")
    msgs = platform.snapshot()
    platform.close()
    assert msgs, "nothing arrived"
    for topic, payload, _r in msgs:
        assert check_message(topic, payload) == [], (topic, payload[:200])
    status = [p for t, p, _r in msgs if t.endswith("/status")]
    assert b'"online":true' in status[0] and b'"online":false' in status[-1] and b'"reason":"shutdown"' in status[-1]
    online = json.loads(status[0])
    assert online["drivers"] == {"rs485": {"state": "ok"}} and online["version"] and "queue" in online and online["uptime_s"] >= 0
    _check_seq_report(platform, produced)


@pytest.mark.slow  # over 5 s (issue 16)
def test_broker_outage_loses_nothing_and_sends_the_alarm_first(broker, tmp_path):
    platform = Platform(broker.port)

    async def main():
        clock = Clock("assume_synced")
        outbox = await open_outbox(tmp_path, clock)
        up = make_uplink(broker.url, outbox, clock)
        task = asyncio.create_task(up.run())
        for i in range(50):
            outbox.put_reading(reading(clock, "hydrant-1", i))
        await _drained(outbox)
        await async_wait_for(lambda: len(platform.seqs()) >= 50, what="platform has the first 50")
        await asyncio.to_thread(broker.stop)
        before = len(platform.seqs())
        for i in range(50, 450):  # ~6 s of readings and one alarm while the broker is down
            outbox.put_reading(reading(clock, f"hydrant-{i % 2}", i))
            if i == 300:
                alarm = await outbox.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "fire"})
                up.notify_alarm()
            await asyncio.sleep(0.015)
        await async_wait_for(lambda: up.state != "connected", what="uplink saw the outage")
        await asyncio.to_thread(broker.start)
        await _drained(outbox, 30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        last = outbox.stats().last_seq
        await outbox.close()
        return before, alarm, last

    before, alarm, last = asyncio.run(main())
    wait_for(lambda: len({s for _c, s in platform.seqs()}) >= last, timeout_s=15, what="platform has every seq")
    after = platform.seqs()[before:]
    platform.close()
    _check_seq_report(platform, set(range(1, last + 1)))
    # The first record delivered after the outage is the alarm, although ~250 readings were older.
    assert after[0] == ("alarm", alarm), after[:3]


@pytest.mark.slow  # over 5 s (issue 16)
def test_backlog_flows_within_2_s_of_the_broker_becoming_reachable(broker, tmp_path):
    platform = Platform(broker.port)

    async def main():
        async with Gateway(broker.port, tmp_path) as gw:
            await async_wait_for(lambda: gw.up.state == "connected", what="connected")
            delays = []
            for round_ in range(2):
                gw.proxy.set_mode("cut")
                await async_wait_for(lambda: gw.up.state != "connected", what="outage seen")
                seq = await gw.outbox.put(RecordClass.EVENT, "event.test", "d-1", gw.clock.now(), {"round": round_})
                await asyncio.sleep(2.5)  # long enough for the backoff to have grown, were it not reset by the probe
                t0 = time.monotonic()
                gw.proxy.set_mode("pass")
                await async_wait_for(lambda: ("event", seq) in platform.seqs(), timeout_s=10, what="backlog delivered")
                delays.append(time.monotonic() - t0)
            return delays, gw.up.health()["reconnect_delay_s"]

    delays, hist = asyncio.run(main())
    platform.close()
    assert max(delays) <= 2.0, delays
    assert hist["count"] == 3


def test_last_will_marks_the_gateway_offline_when_the_link_drops(broker, tmp_path):
    platform = Platform(broker.port)

    async def main():
        async with Gateway(broker.port, tmp_path) as gw:
            await async_wait_for(lambda: any(d["online"] for d in platform.on("status")), what="online status")
            gw.proxy.set_mode("cut")  # abrupt: no DISCONNECT reaches the broker
            await async_wait_for(lambda: platform.on("status") and not platform.on("status")[-1]["online"], timeout_s=10, what="LWT")

    asyncio.run(main())
    last = platform.on("status")[-1]
    platform.close()
    assert last["online"] is False and last["reason"] == "connection_lost" and last["gateway_id"] == GW
    # Retained: a platform that connects later still learns the gateway is offline.
    late = Platform(broker.port, client_id="late-platform")
    wait_for(lambda: late.on("status"), what="retained status")
    assert late.on("status")[-1]["online"] is False and late.snapshot()[-1][2] is True
    late.close()


def test_acl_denial_keeps_rows_raises_fault_and_reports_not_authorized(tmp_path):
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite cg/v1/{GW}/status\ntopic read cg/v1/{GW}/cmd\ntopic read cg/v1/{GW}/relay\n")
    broker = Broker(tmp_path / "mosq", extra_conf=f"acl_file {acl}\n").start()
    try:
        async def main():
            clock = Clock("assume_synced")
            outbox = await open_outbox(tmp_path, clock)
            seq = await outbox.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "fire"})
            up = make_uplink(broker.url, outbox, clock)
            task = asyncio.create_task(up.run())
            await async_wait_for(lambda: up.health()["puback_failures"] >= 1, what="PUBACK 135")
            health = up.health()
            depth = outbox.stats().depth
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            fetched = [r.seq for r in outbox.fetch("mqtt", 10)]
            await outbox.close()
            return seq, health, depth, fetched

        seq, health, depth, fetched = asyncio.run(main())
    finally:
        broker.stop()
    assert health["state"] == "not_authorized" and health["fault"] == "puback_135"
    assert health["records_acked"] == 0 and depth.get("alarm") == 1 and fetched == [seq]


def test_acl_tightened_mid_drain_keeps_rows_and_all_arrive_once_it_is_restored(tmp_path):
    """R5 at run time: the platform engineer's ACL change (mosquitto re-reads acl_file on SIGHUP) refuses the
    drain's PUBLISHes mid-backlog (PUBACK 135); the rows stay, the state says not_authorized, and once the
    ACL is put back every reading arrives (the drain's cursor went back to the floor for the refused ones)."""
    allow = "topic readwrite cg/v1/#\n"
    acl = tmp_path / "acl"
    acl.write_text(allow)
    broker = Broker(tmp_path / "mosq", extra_conf=f"acl_file {acl}\n").start()
    platform = Platform(broker.port)
    n = 3000
    try:
        async def main():
            clock = Clock("assume_synced")
            outbox = await open_outbox(tmp_path, clock)
            for i in range(n):
                outbox.put_reading(reading(clock, f"hydrant-{i % 7}", i))
            await outbox.flush()
            up = make_uplink(broker.url, outbox, clock, drain_readings_per_s=1000.0, batch_max_readings=100, max_inflight=5,
                             reconnect_base_s=0.2, reconnect_cap_s=1.0)
            task = asyncio.create_task(up.run())
            try:
                await async_wait_for(lambda: up.health()["records_acked"] >= n // 3, what="a third of the backlog acknowledged")
                acl.write_text(f"topic readwrite cg/v1/{GW}/status\ntopic read cg/v1/{GW}/cmd\ntopic read cg/v1/{GW}/relay\n"
                               "topic read cg/v1/#\n")
                broker.proc.send_signal(signal.SIGHUP)
                await async_wait_for(lambda: up.health()["puback_failures"] >= 1, what="PUBACK 135 after the ACL change")
                denied = up.health()
                left = outbox.stats().depth.get("telemetry", 0)
                acl.write_text(allow)
                broker.proc.send_signal(signal.SIGHUP)
                await _drained(outbox, timeout_s=30)
                return denied, left, up.health()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await outbox.close()

        denied, left, final = asyncio.run(main())
        wait_for(lambda: len({q for _c, q in platform.seqs()}) >= n, timeout_s=20, what="every reading at the platform")
        _check_seq_report(platform, range(1, n + 1))
    finally:
        platform.close()
        broker.stop()
    assert denied["state"] == "not_authorized" and denied["fault"] == "puback_135"
    assert 0 < left < n  # refused mid-drain: part delivered, the rest kept
    assert final["records_acked"] == n and final["fault"] == ""


def test_refused_credentials_go_to_the_cap_and_a_new_alarm_retries_at_once(tmp_path):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), GW, "right-password"], check=True, capture_output=True)
    # A wrong password is refused even where anonymous clients are allowed (mosquitto checks what is given).
    broker = Broker(tmp_path / "mosq", extra_conf=f"password_file {pw}\n").start()
    try:
        async def main():
            clock = Clock("assume_synced")
            outbox = await open_outbox(tmp_path, clock)
            up = make_uplink(broker.url, outbox, clock, Credentials(mqtt_username=GW, mqtt_password="wrong"))
            task = asyncio.create_task(up.run())
            await async_wait_for(lambda: up.health()["connect_failures"] == 1, what="first refusal")
            first = up.health()
            retry_wait = up.backoff.ceiling()
            t0 = time.monotonic()
            await outbox.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(), {"title": "fire"})  # wakes the uplink
            await async_wait_for(lambda: up.health()["connect_failures"] == 2, timeout_s=5, what="immediate retry")
            retried_after = time.monotonic() - t0
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()
            return first, retry_wait, retried_after

        first, retry_wait, retried_after = asyncio.run(main())
    finally:
        broker.stop()
    assert first["state"] == "not_authorized" and first["fault"] == "not_authorized"
    assert retry_wait == 30.0  # straight to reconnect_cap_s
    assert retried_after < 5.0  # not the 15-30 s backoff: the alarm cut it short


def test_restart_resends_unacknowledged_records_with_the_same_seq_and_bytes(broker, tmp_path):
    platform = Platform(broker.port)

    async def main():
        async with Gateway(broker.port, tmp_path) as gw:
            await async_wait_for(lambda: gw.up.state == "connected", what="connected")
            gw.proxy.set_mode("mute_down")  # the broker gets the PUBLISH; its PUBACK never comes back
            seq = await gw.outbox.put(RecordClass.ALARM, "alarm.raised", "smoke-1", gw.clock.now(), {"title": "fire"})
            await async_wait_for(lambda: platform.on("alarm"), what="alarm at the platform")
            assert gw.outbox.stats().depth.get("alarm") == 1  # not acknowledged: still in the outbox
        # The gateway restarts (new process in real life: new outbox handle, new uplink, same database).
        clock = Clock("assume_synced")
        outbox = await open_outbox(tmp_path, clock)
        up = make_uplink(broker.url, outbox, clock)
        task = asyncio.create_task(up.run())
        await _drained(outbox)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await outbox.close()
        return seq

    seq = asyncio.run(main())
    wait_for(lambda: len(platform.on("alarm")) >= 2, what="the resend")
    alarms = [p for t, p, _r in platform.snapshot() if t.endswith("/alarm")]
    platform.close()
    assert len(alarms) == 2 and alarms[0] == alarms[1]  # a keyed duplicate: identical bytes
    assert [(c, s) for c, s in platform.seqs()] == [("alarm", seq), ("alarm", seq)]


def test_topic_aliases_replace_the_topic_after_the_first_publish_and_subscribers_see_full_topics(broker, tmp_path):
    """Issue 17: MQTT v5 topic aliases within the broker's Topic Alias Maximum (mosquitto: 10)."""
    from gateway.uplink.session import Session

    platform = Platform(broker.port)
    acked: list[int] = []

    async def main():
        s = Session("gw-alias", 30, 0, 20, lambda mid, rc: acked.append(rc), lambda t, p: None)
        await s.connect("127.0.0.1", broker.port, 10)
        try:
            for i in range(3):
                s.publish(f"cg/v1/{GW}/telemetry", b'{"n":%d}' % i)
            s.publish(f"cg/v1/{GW}/event", b'{"n":9}')
            await async_wait_for(lambda: len(acked) == 4, what="four PUBACKs")
            return s.topic_alias_max, dict(s._aliases)
        finally:
            await s.disconnect()

    alias_max, aliases = asyncio.run(main())
    wait_for(lambda: len(platform.snapshot()) >= 4, what="four messages at the platform")
    got = [(t, p) for t, p, _r in platform.snapshot()]
    platform.close()
    assert alias_max == 10 and aliases == {f"cg/v1/{GW}/telemetry": 1, f"cg/v1/{GW}/event": 2} and acked == [0, 0, 0, 0]
    assert got == [(f"cg/v1/{GW}/telemetry", b'{"n":%d}' % i) for i in range(3)] + [(f"cg/v1/{GW}/event", b'{"n":9}')]


def test_one_readable_turn_reads_a_bounded_number_of_packets(broker):
    """paho's loop_read reads one packet per message in flight (its max_packets is ignored), so a flood of
    commands arriving while our PUBLISHes are in flight was read dozens at a time, holding the alarm path's
    loop for tens of ms. Session._readable reads at most READ_PACKETS_PER_TURN and yields; every message
    still arrives. Relies on paho's packet reader: an upgrade without it fails here, not silently."""
    import paho.mqtt.client as mqtt

    from gateway.uplink.session import READ_PACKETS_PER_TURN, Session

    assert hasattr(mqtt.Client, "_packet_read") and hasattr(mqtt.Client, "_loop_rc_handle")
    got: list[bytes] = []
    per_turn: list[int] = []
    n = 60

    async def main():
        s = Session("gw-reads", 30, 0, 100, lambda mid, rc: None, lambda t, p: got.append(p))
        original = s._readable

        def counted(sock):
            before = len(got)
            original(sock)
            per_turn.append(len(got) - before)

        s._readable = counted  # add_reader takes the attribute at registration (connect)
        await s.connect("127.0.0.1", broker.port, 10)
        try:
            subscribed = []
            s.client.on_subscribe = lambda *a: subscribed.append(1)
            s.client.subscribe("cg/v1/gw-reads/cmd", qos=1)
            await async_wait_for(lambda: subscribed, what="SUBACK")
            flood = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="flood", protocol=mqtt.MQTTv5)
            flood.connect("127.0.0.1", broker.port)
            flood.loop_start()
            for i in range(n):  # with our own PUBLISHes in flight meanwhile
                s.publish("cg/v1/gw-reads/telemetry", b"x" * 200)
                flood.publish("cg/v1/gw-reads/cmd", b"%d" % i + b"y" * 4000, qos=1)
            await async_wait_for(lambda: len(got) == n, 30, what="every command")
            flood.loop_stop()
            flood.disconnect()
        finally:
            await s.disconnect()

    asyncio.run(main())
    assert sorted(int(p[: p.index(b"y")]) for p in got) == list(range(n))
    assert max(per_turn) <= READ_PACKETS_PER_TURN, per_turn
