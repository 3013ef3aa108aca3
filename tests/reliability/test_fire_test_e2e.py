"""Issue 23: `gateway test fire` end to end in the simulated courtyard. The simulated fire is marked as a
test everywhere a person or a system could take it for a real one: the SMS starts with 【测试】, the
platform's alarm record carries detail.test, the district fire centre receives a part state in test mode
(b0 = 0, the fire bit with it) — and the inspector's record says who ran it."""

from __future__ import annotations

from gateway.control.client import call
from gateway.uplink.gb26875.objects import TypeFlag
from tests.reliability.matrix_rig import Rig
from tests.support.wait import async_wait_for


async def test_fire_test_is_marked_as_a_test_at_the_platform_the_centre_and_in_the_sms(rig: Rig):
    await rig.start()
    await rig.run_daemon()
    dev = rig.smoke_device()
    centre = rig.cy.sims["gb26875"]
    seen_frames = len(centre.received)
    reply = call(rig.socket, "test_fire", {"device": dev.id, "by": "inspector-zhang"}, timeout_s=10)
    assert reply.ok, reply
    await async_wait_for(lambda: rig.coil("sounder"), 5, what="the sounder (a fire test sounds it)")
    place = f"{dev.building}栋{dev.unit}单元{dev.room}"
    await async_wait_for(lambda: any(place in t for t in rig.sms_texts()), 20, what="the test SMS")
    assert all(t.startswith("【测试】") for t in rig.sms_texts() if place in t), rig.sms_texts()
    alarms = lambda: [r for r in rig.view.records if r.get("cls") == "alarm" and r.get("device") == dev.id]
    await async_wait_for(alarms, 20, what="the alarm record at the platform")
    assert alarms()[0]["body"]["detail"].get("test") is True
    tests = lambda: [r for r in rig.view.records if r.get("kind") == "event.test"]
    await async_wait_for(tests, 20, what="the inspection record at the platform")
    assert tests()[0]["body"].get("by") == "inspector-zhang"

    def test_mode_state() -> bool:
        return any(r.flag == TypeFlag.PART_STATE and any((o.state & 0x01) == 0 and (o.state & 0x02) for o in r.objects)
                   for r in centre.received[seen_frames:])

    await async_wait_for(test_mode_state, 20, what="a part state in test mode with the fire bit at the centre")
