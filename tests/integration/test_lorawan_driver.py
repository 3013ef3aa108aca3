"""LoRaWAN driver against the GWMP forwarder simulator over real UDP on 127.0.0.1 (issue 19 "Tests")."""

from __future__ import annotations

import asyncio
import json

from drivers.lorawan import gwmp, mac
from gateway.clock import ManualClock
from gateway.model import EventKind
from tests.integration.lorawan_rig import build_driver, free_udp_port, rig
from tests.support.wait import async_wait_for


async def test_abp_uplink_decoded_and_raised_as_alarm(tmp_path):
    async with rig(tmp_path) as r:
        r.sim.report("smoke-2-401", "alarm")
        alarms = await async_wait_for(lambda: r.events("smoke-2-401", EventKind.ALARM, "smoke"), what="smoke alarm")
        assert alarms[0].via == "lorawan" and "replay_suspect" not in alarms[0].detail
        reading = r.readings("smoke-2-401")[0]
        assert reading.values["alarm"] is True and reading.values["smoke_pct"] == 12 and reading.values["rssi_dbm"] == -95
        assert r.device("smoke-2-401")["last_fcnt"] == 0 and r.sim.acks_received["push"] >= 1


async def test_otaa_join_then_uplink_with_join_accept_in_rx1(tmp_path):
    async with rig(tmp_path) as r:
        join = r.sim.join("gas-3-102")
        (dl,) = await r.sim.wait_downlink(1)
        assert dl.device_id == "gas-3-102" and r.sim.devices["gas-3-102"].joined
        # JOIN_ACCEPT_DELAY1 = 5 s after the end of the JoinRequest, on the CN470 RX1 channel (up mod 48).
        rx = next(x for x in r.driver.ns.records.values() if x.device_id == "gas-3-102")
        assert rx.joins == 1
        assert dl.txpk["ipol"] is True and dl.txpk["datr"] == "SF7BW125" and dl.txpk["size"] == len(dl.phy) == 17
        up_freq = r.sim.last_sent_freq
        assert dl.txpk["freq"] == round(500.3 + 0.2 * (round((up_freq - 470.3) / 0.2) % 48), 1)
        assert dl.txpk["tmst"] == (r.sim.last_sent_tmst + 5_000_000) & 0xFFFFFFFF
        assert mac.mtype_of(join) is mac.MType.JOIN_REQUEST
        r.sim.report("gas-3-102", "alarm")
        await async_wait_for(lambda: r.events("gas-3-102", EventKind.ALARM, "gas_low"), what="gas alarm after join")
        assert r.device("gas-3-102")["joined"] and r.device("gas-3-102")["last_fcnt"] == 0


async def test_fcnt_rollover_past_65535_accepted(tmp_path):
    async with rig(tmp_path) as r:
        r.sim.devices["smoke-2-401"].fcnt_up = 65534
        for _ in range(4):  # 65534, 65535, 65536 (0 on air), 65537 (1 on air)
            r.sim.report("smoke-2-401", "heartbeat")
        await async_wait_for(lambda: r.device("smoke-2-401")["last_fcnt"] == 65537, what="counter past 65,535")
        assert len(r.readings("smoke-2-401")) == 4 and r.device("smoke-2-401")["replay_suspects"] == 0


async def test_replay_rejected_recorded_and_later_genuine_frame_accepted(tmp_path):
    clock = ManualClock()
    async with rig(tmp_path, clock=clock) as r:
        r.sim.report("leak-riser", "heartbeat")
        await async_wait_for(lambda: r.readings("leak-riser"), what="first frame")
        old = r.sim.devices["leak-riser"].last_phy
        r.sim.devices["leak-riser"].fcnt_up = 2000  # the device moves on (frames we never heard)
        r.sim.report("leak-riser", "heartbeat")
        await async_wait_for(lambda: r.device("leak-riser")["last_fcnt"] == 2000, what="frame 2000")
        clock.advance(5)  # later than the de-duplication window: not another chain's copy
        r.sim.send(old)  # the recorded frame 0, replayed
        sec = await async_wait_for(lambda: r.events("leak-riser", EventKind.SECURITY, "replay_suspect"), what="security event")
        assert sec[0].detail == {"counter": 0, "last_counter": 2000, "alarm": False}
        assert len(r.readings("leak-riser")) == 2  # the replayed heartbeat is not a reading
        r.sim.report("leak-riser", "alarm")  # the genuine next frame, 2001
        await async_wait_for(lambda: r.events("leak-riser", EventKind.ALARM, "leak"), what="genuine alarm after replay")
        assert r.device("leak-riser")["last_fcnt"] == 2001 and r.device("leak-riser")["replay_suspects"] == 1


async def test_replayed_alarm_frame_still_raised_flagged(tmp_path):
    clock = ManualClock()
    async with rig(tmp_path, clock=clock) as r:
        r.sim.report("smoke-2-401", "alarm")
        await async_wait_for(lambda: r.events("smoke-2-401", EventKind.ALARM), what="alarm")
        alarm_frame = r.sim.devices["smoke-2-401"].last_phy
        r.sim.report("smoke-2-401", "heartbeat")
        await async_wait_for(lambda: r.device("smoke-2-401")["last_fcnt"] == 1, what="heartbeat")
        clock.advance(5)
        r.sim.send(alarm_frame)
        flagged = await async_wait_for(lambda: [e for e in r.events("smoke-2-401", EventKind.ALARM) if e.detail.get("replay_suspect")])
        assert flagged[0].code == "smoke"
        assert r.device("smoke-2-401")["last_fcnt"] == 1  # a replay never moves the counter


async def test_duplicate_on_two_chains_counted_once(tmp_path):
    async with rig(tmp_path) as r:
        r.sim.set_fault("duplicate", "smoke-2-401")
        r.sim.report("smoke-2-401", "alarm")
        await async_wait_for(lambda: r.counter("duplicate_copies") == 1, what="duplicate counted")
        assert len(r.events("smoke-2-401", EventKind.ALARM)) == 1 and len(r.readings("smoke-2-401")) == 1
        assert r.device("smoke-2-401")["replay_suspects"] == 0 and not r.events("smoke-2-401", EventKind.SECURITY)


async def test_wrong_mic_rejected_and_counted(tmp_path):
    async with rig(tmp_path) as r:
        r.sim.set_fault("wrong_mic", "smoke-2-401")
        r.sim.report("smoke-2-401", "alarm")
        await async_wait_for(lambda: r.counter("reject_mic") == 1, what="mic reject")
        assert not r.events("smoke-2-401", EventKind.ALARM) and r.device("smoke-2-401")["rejects"] == {"mic": 1}
        r.sim.report("smoke-2-401", "alarm")  # the next good frame is heard
        await async_wait_for(lambda: r.events("smoke-2-401", EventKind.ALARM), what="next good alarm")


async def test_confirmed_uplink_gets_ack_in_rx1(tmp_path):
    async with rig(tmp_path) as r:
        r.sim.report("smoke-2-401", "alarm", confirmed=True)
        (dl,) = await r.sim.wait_downlink(1)
        assert dl.device_id == "smoke-2-401" and r.sim.devices["smoke-2-401"].acks == 1
        assert dl.txpk["tmst"] == (r.sim.last_sent_tmst + 1_000_000) & 0xFFFFFFFF  # RECEIVE_DELAY1
        assert dl.txpk["imme"] is False and dl.txpk["powe"] == 17
        frame = mac.parse_data(dl.phy)
        assert frame.mtype is mac.MType.UNCONFIRMED_DOWN and frame.fctrl & mac.ACK
        await async_wait_for(lambda: r.counter("tx_ack_ok") == 1, what="TX_ACK")


async def test_reused_devnonce_refused_and_recorded(tmp_path):
    clock = ManualClock()
    async with rig(tmp_path, clock=clock) as r:
        r.sim.join("gas-3-102")
        await r.sim.wait_downlink(1)
        clock.advance(60)  # a recorded JoinRequest replayed a minute later
        r.sim.set_fault("reused_devnonce", "gas-3-102")
        r.sim.join("gas-3-102")
        await async_wait_for(lambda: r.events("gas-3-102", EventKind.SECURITY, "devnonce_reused"), what="security event")
        assert len(r.sim.downlinks) == 1 and r.device("gas-3-102")["joins"] == 1


async def test_restart_keeps_counters_sessions_and_nonces(tmp_path):
    async with rig(tmp_path) as r:
        r.sim.join("gas-3-102")
        await r.sim.wait_downlink(1)
        gas = r.sim.devices["gas-3-102"]
        r.sim.report("gas-3-102", "heartbeat")
        r.sim.devices["smoke-2-401"].fcnt_up = 70000
        r.sim.report("smoke-2-401", "heartbeat")
        replay = r.sim.devices["smoke-2-401"].last_phy  # frame 70000, replayed after the restart
        r.sim.report("smoke-2-401", "heartbeat")
        await async_wait_for(lambda: r.device("smoke-2-401")["last_fcnt"] == 70001 and r.device("gas-3-102")["last_fcnt"] == 0)
        await r.driver.store.flush()
    state = json.loads((tmp_path / "counters-lw.json").read_text())["records"]
    assert state["lorawan:smoke-2-401:26011bda"]["hw"] == 70001 and state["nonces:gas-3-102"]["used"] == sorted(gas.dev_nonces)
    assert state["session:gas-3-102"]["dev_addr"] == f"{gas.dev_addr:08x}"
    async with rig(tmp_path) as r2:
        r2.sim.devices["gas-3-102"] = gas  # the same device, still in its session: no rejoin needed
        r2.sim.report("gas-3-102", "alarm")
        await async_wait_for(lambda: r2.events("gas-3-102", EventKind.ALARM), what="alarm on the restored session")
        r2.sim.send(replay)  # no trust-on-first-use after a restart: frame 70000 is a replay
        await async_wait_for(lambda: r2.events("smoke-2-401", EventKind.SECURITY), what="replay after restart")
        r2.sim.set_fault("reused_devnonce", "gas-3-102")
        r2.sim.join("gas-3-102")
        await async_wait_for(lambda: r2.events("gas-3-102", EventKind.SECURITY, "devnonce_reused"))


async def test_forwarder_silent_takes_driver_down_with_reason(tmp_path):
    clock = ManualClock()
    async with rig(tmp_path, clock=clock, forwarder_timeout_s=30) as r:
        assert r.driver.health().state == "ok"
        r.sim.set_fault("silent")
        clock.advance(29)
        assert r.driver.health().state == "ok"
        clock.advance(2)  # 31 s without a keepalive: down, within the 100 s fault budget
        h = r.driver.health()
        assert h.state == "down" and "silent for 31 s" in h.detail["reason"]
        r.sim.clear_fault("silent")
        await async_wait_for(lambda: r.driver.health().state == "ok", what="forwarder back")


async def test_no_forwarder_ever_is_down_after_the_timeout(tmp_path):
    clock = ManualClock()
    driver = build_driver(free_udp_port(), tmp_path, clock, forwarder_timeout_s=30)
    assert driver.health().state == "starting"
    clock.advance(31)
    h = driver.health()
    assert h.state == "down" and "no packet forwarder" in h.detail["reason"]


async def test_unwritable_state_dir_keeps_running_in_memory(tmp_path):
    # Tests run as root, which ignores directory modes: a path below a regular file is refused for anyone.
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    async with rig(blocked, state_flush_s=0.1) as r:
        r.sim.join("gas-3-102")
        await r.sim.wait_downlink(1)
        r.sim.report("gas-3-102", "alarm")
        await async_wait_for(lambda: r.events("gas-3-102", EventKind.ALARM))
        h = r.driver.health()
        assert h.state == "degraded" and not h.detail["counter_state"]["persisted"] and h.detail["counter_state"]["error"]


async def test_upstream_bridge_gets_a_verbatim_copy_and_can_send_downlinks(tmp_path):
    loop = asyncio.get_running_loop()
    got: list[tuple[bytes, tuple]] = []

    class Upstream(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.append((data, addr))

    up, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    try:
        async with rig(tmp_path, upstream=f"127.0.0.1:{up.get_extra_info('sockname')[1]}") as r:
            r.sim.report("smoke-2-401", "alarm")
            await async_wait_for(lambda: any(d[3] == gwmp.Ident.PUSH_DATA and b"rxpk" in d for d, _ in got), what="copy upstream")
            push = next(d for d, _ in got if d[3] == gwmp.Ident.PUSH_DATA and b"rxpk" in d)
            assert gwmp.parse(push).rxpk[0].data == r.sim.devices["smoke-2-401"].last_phy  # verbatim
            await async_wait_for(lambda: r.events("smoke-2-401", EventKind.ALARM), what="local alarm as well")
            # the district server answers with its own downlink: it reaches the forwarder through us
            txpk = gwmp.TxPk(b"\x60" + bytes(11), 123, 506.7, "SF7BW125", 17).json()
            up.sendto(gwmp.pull_resp(2, 0x4242, txpk), got[0][1])
            await r.sim.wait_downlink(1)
            assert r.sim.downlinks[0].txpk["tmst"] == 123 and r.counter("bridge_down") == 1
    finally:
        up.close()


async def test_retransmitted_confirmed_uplink_is_acked_again_not_a_replay(tmp_path):
    # LoRaWAN 1.0.2 §18.4: the ACK was lost, the device sends the same frame (same FCnt) a few seconds later.
    clock = ManualClock()
    async with rig(tmp_path, clock=clock) as r:
        r.sim.report("smoke-2-401", "alarm", confirmed=True)
        await r.sim.wait_downlink(1)
        clock.advance(3)  # ACK_TIMEOUT later: outside the de-duplication window
        r.sim.send(r.sim.devices["smoke-2-401"].last_phy)
        await r.sim.wait_downlink(2)
        assert r.sim.devices["smoke-2-401"].acks == 2 and r.counter("retransmissions") == 1
        assert len(r.events("smoke-2-401", EventKind.ALARM)) == 1 and not r.events("smoke-2-401", EventKind.SECURITY)
        assert r.device("smoke-2-401")["retransmissions"] == 1 and r.device("smoke-2-401")["replay_suspects"] == 0


async def test_mac_commands_link_check_and_dev_status_answered(tmp_path):
    async with rig(tmp_path) as r:
        dev = r.sim.devices["smoke-2-401"]
        r.sim.send(dev.uplink(b"", None, fopts=bytes([mac.Cid.LINK_CHECK])), lsnr_db=2.5)
        (dl,) = await r.sim.wait_downlink(1)
        cmds = mac.parse_data(dl.phy).fopts
        # LinkCheckAns: margin = 2.5 dB - (-7.5 dB SF7 floor) = 10, one gateway; DevStatusReq piggy-backed.
        assert cmds == bytes([mac.Cid.LINK_CHECK, 10, 1, mac.Cid.DEV_STATUS])
        r.sim.send(dev.uplink(b"", None, fopts=bytes([mac.Cid.DEV_STATUS, 200, 7])))
        await async_wait_for(lambda: r.device("smoke-2-401")["battery"] == 200, what="DevStatusAns")
        assert r.device("smoke-2-401")["margin_db"] == 7
        r.sim.send(dev.uplink(b"", None, fctrl=mac.ADR_ACK_REQ))  # ADR is off, but the device wants a downlink
        await r.sim.wait_downlink(2)


async def test_eu868_join_accept_carries_the_cflist(tmp_path):
    async with rig(tmp_path, region="EU868") as r:
        r.sim.region = "EU868"
        r.sim.join("gas-3-102")
        (dl,) = await r.sim.wait_downlink(1)
        assert len(dl.phy) == 33 and dl.txpk["freq"] == r.sim.last_sent_freq and dl.txpk["powe"] == 14
        ja = mac.open_join_accept(r.sim.devices["gas-3-102"].app_key, dl.phy)
        assert [int.from_bytes(ja.cflist[i:i + 3], "little") / 10_000 for i in range(0, 15, 3)] == [867.1, 867.3, 867.5, 867.7, 867.9]


async def test_rx1_too_late_is_sent_again_in_rx2(tmp_path):
    async with rig(tmp_path) as r:
        r.sim.tx_error = "TOO_LATE"  # the forwarder refuses every downlink as too late
        r.sim.report("smoke-2-401", "alarm", confirmed=True)
        first, second = await r.sim.wait_downlink(2)
        assert first.phy == second.phy and second.txpk["freq"] == 505.3 and second.txpk["datr"] == "SF12BW125"
        assert second.txpk["tmst"] == (first.txpk["tmst"] + 1_000_000) & 0xFFFFFFFF  # RECEIVE_DELAY2
        await async_wait_for(lambda: r.counter("tx_ack_too_late") == 2, what="both TX_ACK errors counted")
        assert r.counter("downlinks_rx2") == 1 and r.counter("downlinks") == 2  # RX2 once, never a third


async def test_abp_counter_reset_resyncs_after_a_run_of_frames(tmp_path):
    # An ABP detector whose battery was changed starts again at FCnt 0 (drivers/sequence.py rule 5).
    clock = ManualClock()
    async with rig(tmp_path, clock=clock, resync_frames=3, resync_min_s=60) as r:
        dev = r.sim.devices["leak-riser"]
        dev.fcnt_up = 500
        r.sim.report("leak-riser", "heartbeat")
        await async_wait_for(lambda: r.device("leak-riser")["last_fcnt"] == 500)
        dev.fcnt_up = 0  # battery change
        for i in range(3):
            clock.advance(40)
            r.sim.report("leak-riser", "alarm" if i == 0 else "heartbeat")
            await async_wait_for(lambda: r.counter("uplinks") == 2 + i, what=f"frame {i}")
        reset = await async_wait_for(lambda: r.events("leak-riser", EventKind.COUNTER_RESET), what="re-sync")
        assert reset[0].detail == {"fcnt": 2, "last_fcnt": 500} and r.device("leak-riser")["last_fcnt"] == 2
        flagged = r.events("leak-riser", EventKind.ALARM)
        assert len(flagged) == 1 and flagged[0].detail["replay_suspect"] is True  # before the re-sync: flagged
        r.sim.report("leak-riser", "heartbeat")  # frame 3: an ordinary frame again
        await async_wait_for(lambda: r.device("leak-riser")["last_fcnt"] == 3)
        assert len(r.events("leak-riser", EventKind.SECURITY)) == 2


async def test_lost_join_accept_never_strands_the_device(tmp_path):
    async with rig(tmp_path) as r:
        gas = r.sim.devices["gas-3-102"]
        r.sim.join("gas-3-102")
        await r.sim.wait_downlink(1)
        r.sim.report("gas-3-102", "heartbeat")
        await async_wait_for(lambda: r.device("gas-3-102")["frames"] == 1)
        old = (gas.dev_addr, gas.nwk_skey, gas.app_skey, gas.fcnt_up)
        r.sim.join("gas-3-102")  # the device rejoins, but the JoinAccept is lost on the air ...
        await r.sim.wait_downlink(2)
        gas.dev_addr, gas.nwk_skey, gas.app_skey, gas.fcnt_up = old  # ... so it keeps its old session
        r.sim.report("gas-3-102", "alarm")
        await async_wait_for(lambda: r.events("gas-3-102", EventKind.ALARM), what="alarm on the old session")
        r.sim.join("gas-3-102")  # third join, received this time
        await r.sim.wait_downlink(3)
        r.sim.report("gas-3-102", "heartbeat")
        await async_wait_for(lambda: r.device("gas-3-102")["frames"] == 3, what="uplink on the new session")
        assert f"lorawan:gas-3-102:{old[0]:08x}" not in r.driver.store.records  # the old mark is dropped
        assert r.device("gas-3-102")["dev_addr"] == f"{gas.dev_addr:08x}" and r.device("gas-3-102")["joins"] == 3


async def test_simulator_replay_fault_is_seen_as_a_replay(tmp_path):
    clock = ManualClock()
    async with rig(tmp_path, clock=clock) as r:
        r.sim.report("smoke-2-401", "alarm")
        r.sim.report("smoke-2-401", "heartbeat")
        await async_wait_for(lambda: r.device("smoke-2-401")["last_fcnt"] == 1)
        clock.advance(10)
        r.sim.set_fault("replay", "smoke-2-401")  # frame 0 (an alarm) again
        sec = await async_wait_for(lambda: r.events("smoke-2-401", EventKind.SECURITY), what="security event")
        assert sec[0].detail == {"counter": 0, "last_counter": 1, "alarm": True}
        assert [e.detail.get("replay_suspect", False) for e in r.events("smoke-2-401", EventKind.ALARM)] == [False, True]
