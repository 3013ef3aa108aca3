"""The reference platform consumer (gateway.platform) against a real mosquitto and our real Uplink:
two consumers in one shared-subscription group together see every seq exactly once; a signed command's
reply is matched by id; `gateway platform watch` shows the fleet (issue 21)."""

import asyncio
import json
import subprocess
import sys
import threading

import pytest

from gateway.clock import Clock
from gateway.config.schema import Credentials
from gateway.model import RecordClass
from gateway.platform.consumer import PlatformConsumer
from tests.integration.uplink_support import GW, make_uplink, open_outbox, reading
from tests.support.wait import async_wait_for

KEY_ID, KEY = "ops-1", "5a" * 32


class Seen:
    def __init__(self) -> None:
        self.keys: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, rec: dict) -> None:
        with self.lock:
            self.keys.append((rec["gateway_id"], rec["store_id"], rec["seq"]))


@pytest.mark.slow
def test_two_shared_consumers_see_every_seq_exactly_once_and_commands_get_matched_replies(broker, tmp_path):
    seen_a, seen_b = Seen(), Seen()
    a = PlatformConsumer(broker.url, client_id="ingest-a", group="ingest", on_record=seen_a)
    b = PlatformConsumer(broker.url, client_id="ingest-b", group="ingest", on_record=seen_b)
    a.start()
    b.start()
    n_readings, n_alarms = 3000, 30  # an alarm after every 100 readings

    async def main():
        clock = Clock("assume_synced")
        outbox = await open_outbox(tmp_path, clock)
        up = make_uplink(broker.url, outbox, clock, Credentials(command_keys={KEY_ID: KEY}))
        task = asyncio.create_task(up.run())
        try:
            await async_wait_for(lambda: up.state == "connected", what="connected")
            for i in range(n_readings):
                outbox.put_reading(reading(clock, f"hydrant-{i % 7}", i))
                if i % 100 == 99:
                    await outbox.put(RecordClass.ALARM, "alarm.raised", f"smoke-{i}", clock.now(), {"title": "fire"})
                    await asyncio.sleep(0.01)
            total = n_readings + n_alarms
            await async_wait_for(lambda: len(seen_a.keys) + len(seen_b.keys) >= total, timeout_s=30, what="every record")
            reply = await asyncio.to_thread(a.send_command, GW, "ping", {}, KEY_ID, KEY, 10.0)
            snap = a.snapshot()
            watch = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway", "platform", "watch", "--broker", broker.url,
                                                           "--group", "watch", "--every", "1.5", "--count", "1", "--json"],
                                            capture_output=True, text=True, timeout=30)
            return total, reply, snap, watch
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()

    try:
        total, reply, snap, watch = asyncio.run(main())
    finally:
        a.stop()
        b.stop()
    ka, kb = set(seen_a.keys), set(seen_b.keys)
    assert len(ka) == len(seen_a.keys) and len(kb) == len(seen_b.keys)  # each consumer dedupes
    assert not (ka & kb) and len(ka | kb) == total  # the group together: every seq exactly once
    assert ka and kb  # and the load was shared
    seqs = sorted(k[2] for k in ka | kb)
    assert seqs == list(range(seqs[0], seqs[0] + total))  # no hole
    assert reply["status"] == "accepted" and reply["command"] == "ping" and reply["result"]["pong"] is True
    assert snap["gateways"][GW]["online"] is True and snap["online"] == 1
    view = json.loads(watch.stdout.splitlines()[-1])
    assert watch.returncode == 0 and view["gateways"][GW]["online"] is True  # the retained status reaches a new watcher


@pytest.mark.slow
def test_a_late_consumer_without_the_retained_table_asks_for_it_and_loses_nothing(broker, tmp_path):
    """Telemetry batch v2 (issue 17): the retained table cleared (a broker that lost it), a consumer joining
    after the session's first batch parks the batches it cannot expand, asks with the signed `table`
    command, and expands them from the gateway's reply."""
    early, late = Seen(), Seen()
    first = PlatformConsumer(broker.url, client_id="early", on_record=early)
    first.start()

    async def main():
        clock = Clock("assume_synced")
        outbox = await open_outbox(tmp_path, clock)
        up = make_uplink(broker.url, outbox, clock, Credentials(command_keys={KEY_ID: KEY}), batch_linger_ms=20)
        task = asyncio.create_task(up.run())
        try:
            await async_wait_for(lambda: up.state == "connected", what="connected")
            for i in range(40):
                outbox.put_reading(reading(clock, f"hydrant-{i % 4}", i))
            await async_wait_for(lambda: len(early.keys) >= 40, timeout_s=20, what="first readings (table inline)")
            first.c.publish(f"cg/v1/{GW}/table", b"", qos=1, retain=True).wait_for_publish(5)  # the broker forgets the table
            c = PlatformConsumer(broker.url, client_id="late", on_record=late, table_key=(KEY_ID, KEY), session_expiry_s=0)
            await asyncio.to_thread(c.start)
            try:
                for i in range(40, 80):
                    outbox.put_reading(reading(clock, f"hydrant-{i % 4}", i))
                await async_wait_for(lambda: len(late.keys) >= 40, timeout_s=20, what="late consumer expands every batch")
                return c.snapshot(), up.health()
            finally:
                c.stop()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await outbox.close()

    try:
        snap, health = asyncio.run(main())
    finally:
        first.stop()
    assert sorted(k[2] for k in late.keys) == sorted(k[2] for k in early.keys)[40:80]  # every later reading, once
    assert snap["parked"] == 0 and snap["undecodable"] == 0
    assert health["commands"]["accepted"] >= 1 and health["tables_published"] >= 1
