"""The centre's side of the conversation: 查岗 answered by a person (CLI or button), heartbeats, garbage."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import CommandRejected
from gateway.model import RecordClass
from gateway.uplink.gb26875.frame import Command
from gateway.uplink.gb26875.objects import OperationBit, TypeFlag
from gateway.uplink.gb26875.simulator import Centre
from tests.integration.gb26875_support import connected, pending
from tests.support.wait import async_wait_for


def _inspection_replies(centre: Centre) -> list:
    return [o for r in centre.data_frames(TypeFlag.DEVICE_OPERATION) for o in r.objects if o.flags & OperationBit.INSPECTION_REPLY]


def test_operator_check_is_answered_only_when_a_person_confirms_by_cli(tmp_path):
    async def main():
        async with connected(tmp_path, operator_number=4) as (clock, ob, centre, client):
            with pytest.raises(CommandRejected):
                client.confirm_operator_check("guard-zhang")  # nobody asked yet
            serial = await centre.send_operator_check(5)
            await async_wait_for(lambda: centre.answers.get(serial), what="receipt")
            assert centre.answers[serial] == Command.CONFIRM
            snap = client.health()["operator_check"]
            assert snap["pending"] and 200 < snap["seconds_left"] <= 300
            # A barrier instead of a sleep: the gateway answers the centre's frames in order, so once a
            # later time sync has its receipt, anything it would have sent for the check has been sent.
            barrier = await centre.send_time_sync()
            await async_wait_for(lambda: centre.answers.get(barrier), what="receipt of the later time sync")
            assert not _inspection_replies(centre)  # the gateway never answers on its own
            client.confirm_operator_check("guard-zhang")
            await async_wait_for(lambda: _inspection_replies(centre), what="inspection reply")
        assert _inspection_replies(centre)[0].operator == 4
        assert client.health()["operator_checks_answered"] == 1

    asyncio.run(main())


def test_operator_check_is_answered_by_the_guard_room_button_pressed_after_the_request(tmp_path):
    async def main():
        async with connected(tmp_path) as (clock, ob, centre, client):
            early = await ob.put(RecordClass.EVENT, "event.button", "relay", clock.now(), {"kind": "button", "code": "ack"})
            await async_wait_for(lambda: early not in pending(ob), what="early press handled")
            serial = await centre.send_operator_check(0)
            await async_wait_for(lambda: centre.answers.get(serial), what="receipt")
            assert client.health()["operator_check"]["pending"]  # a press before the request does not count
            await ob.put(RecordClass.EVENT, "event.button", "relay", clock.now(), {"kind": "button", "code": "ack"})
            await async_wait_for(lambda: _inspection_replies(centre), what="inspection reply")
        assert client.health()["operator_check"]["last_answered_by"] == "button:relay"

    asyncio.run(main())


def test_heartbeats_keep_coming_and_garbage_from_the_centre_is_counted_not_fatal(tmp_path):
    async def main():
        async with connected(tmp_path, heartbeat_period_s=0.2) as (clock, ob, centre, client):
            for w in list(centre._writers):
                w.write(b"\x00\xff@@garbage-that-is-not-a-frame" + bytes(40))
            await async_wait_for(lambda: len(centre.data_frames(TypeFlag.DEVICE_STATE)) >= 4, what="heartbeats")
        health = client.health()
        assert health["frames_rejected"] >= 1
        assert health["reconnects"] == 0 and centre.connections == 1

    asyncio.run(main())
