"""End to end against the simulated centre: a real Outbox, a real TCP socket, the GB 26875 client."""

from __future__ import annotations

import asyncio
import time

from gateway.clock import Clock
from gateway.model import RecordClass
from gateway.uplink.gb26875.frame import Command
from gateway.uplink.gb26875.mapping import part_address
from gateway.uplink.gb26875.objects import DeviceBit, TypeFlag
from gateway.uplink.gb26875.simulator import Centre
from tests.integration.gb26875_support import (connected, fire_alarm_parts, make_client, open_outbox, pending,
                                               running, smoke_alarm)
from tests.support.wait import async_wait_for


def test_smoke_alarm_arrives_as_a_part_state_with_the_fire_alarm_bit_within_1_s(tmp_path):
    async def main():
        async with connected(tmp_path) as (clock, ob, centre, client):
            hb = centre.data_frames(TypeFlag.DEVICE_STATE)[0].objects[0]
            assert hb.state & DeviceBit.NORMAL  # the connection opens with a type-21 heartbeat
            t0 = time.monotonic()
            seq = await smoke_alarm(ob, clock, "smoke-3")
            await async_wait_for(lambda: fire_alarm_parts(centre), timeout_s=5, what="fire alarm frame")
            elapsed = time.monotonic() - t0
            await async_wait_for(lambda: seq not in pending(ob), what="gb26875 ack")
            assert seq in pending(ob, "mqtt")  # the MQTT uplink keeps its own progress
        frame = centre.data_frames(TypeFlag.PART_STATE)[0]
        assert elapsed < 1.0, f"fire alarm took {elapsed:.3f} s"
        assert fire_alarm_parts(centre) == [part_address("smoke-3", {})]
        assert frame.objects[0].part_type == 42 and frame.frame.source == 0x0A01

    asyncio.run(main())


def test_alarm_is_retransmitted_byte_for_byte_while_the_centre_stays_silent_then_delivered(tmp_path):
    async def main():
        async with connected(tmp_path, ack_timeout_s=0.3, retries=5) as (clock, ob, centre, client):
            centre.mode = "silent"
            seq = await smoke_alarm(ob, clock)
            await async_wait_for(lambda: len(fire_alarm_parts(centre)) >= 3, what="retransmissions")
            assert seq in pending(ob)  # unconfirmed: still owed to the centre
            centre.mode = "confirm"
            await async_wait_for(lambda: seq not in pending(ob), what="delivered after retransmission")
        sends = centre.data_frames(TypeFlag.PART_STATE)
        assert {(r.frame.serial, r.frame.data) for r in sends} == {(sends[0].frame.serial, sends[0].frame.data)}
        assert client.health()["retransmits"] >= 2

    asyncio.run(main())


def test_alarms_queued_while_the_centre_was_down_are_all_delivered_alarms_first(tmp_path):
    async def main():
        clock = Clock("assume_synced")
        ob = await open_outbox(tmp_path, clock)
        probe = await Centre().start()
        port = probe.port
        await probe.stop()  # the centre is down: connection refused
        client = make_client(port, ob, clock)
        async with running(client):
            for i in range(2, 21):
                await smoke_alarm(ob, clock, f"smoke-{i}")
            await ob.put(RecordClass.ALARM, "alarm.raised", "smoke-1", clock.now(),
                                      {"transition": "raised", "alarm_id": "a-1", "rule_kind": "event"})
            await async_wait_for(lambda: client.health().get("connect_failed", 0) >= 2, what="failed connects")
            centre = await Centre(port=port).start()
            await async_wait_for(lambda: not pending(ob), timeout_s=15, what="backlog delivered")
            # The centre drops the link mid-stream once; later records still arrive.
            before_drop = len(fire_alarm_parts(centre))
            centre.drop_connections()
            for i in (1, 2):
                await smoke_alarm(ob, clock, f"smoke-{i}")
            await async_wait_for(lambda: not pending(ob), timeout_s=15, what="delivered after the drop")
        parts = fire_alarm_parts(centre)
        assert set(parts[:before_drop]) == {part_address(f"smoke-{i}", {}) for i in range(1, 21)}  # nothing lost
        assert parts[0] == part_address("smoke-1", {})  # the ALARM record went first
        # After the drop the part states are sent again on the new connection (the centre may have lost them).
        assert {part_address("smoke-1", {}), part_address("smoke-2", {})} <= set(parts[before_drop:])
        assert centre.connections == 2 and client.health()["records_delivered"] >= 22
        await centre.stop()
        await ob.close()

    asyncio.run(main())


def test_a_record_the_centre_denies_every_time_is_given_up_and_does_not_block_the_next(tmp_path):
    async def main():
        async with connected(tmp_path, ack_timeout_s=0.1, retries=1) as (clock, ob, centre, client):
            centre.mode = "deny"
            await smoke_alarm(ob, clock, "smoke-1")
            await async_wait_for(lambda: client.health().get("records_denied") == 1, what="denied")
            centre.mode = "confirm"
            seq = await smoke_alarm(ob, clock, "smoke-2")
            await async_wait_for(lambda: seq not in pending(ob), what="next record delivered")
        assert client.health()["denies"] == 2

    asyncio.run(main())


def test_time_sync_is_confirmed_and_offered_to_the_clock(tmp_path):
    async def main():
        async with connected(tmp_path) as (clock, ob, centre, client):
            serial = await centre.send_time_sync()
            await async_wait_for(lambda: centre.answers.get(serial), what="answer to time sync")
        assert centre.answers[serial] == Command.CONFIRM
        assert clock.last_offer_source == "gb26875"
        assert abs(clock._external_offset_s) < 5  # the centre's local time, converted back to UTC

    asyncio.run(main())
