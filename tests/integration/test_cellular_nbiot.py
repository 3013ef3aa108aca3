"""NB-IoT modem driver end to end over a real pty against the BC95 simulator: bring-up, datagrams decoded,
de-duplicated and acked with exact bytes, registration loss and recovery, reboot, every error path."""

from __future__ import annotations

import asyncio

from drivers.base import DriverState
from drivers.codecs import nbiot_smoke as codec
from gateway.model import EventKind
from tests.integration.cellular_support import nbiot_rig
from tests.support.wait import async_wait_for


def sensor(rig, i: int):
    return list(rig.sim.sensors.values())[i]


async def test_bring_up_follows_the_documented_order_and_fills_health(tmp_path):
    async with nbiot_rig(tmp_path) as rig:
        cmds = rig.sim.commands
        order = ["AT", "ATE0", "AT+CMEE=1", "AT+CPIN?", "AT+NBAND=5,8", "AT+CFUN=1", "AT+CPSMS=0", "AT+CEDRXS=0,5",
                 "AT+NSONMI=1", "AT+CGATT=1", "AT+CEREG?", "AT+CGPADDR", "AT+NSOCR=DGRAM,17,5683,1"]
        assert [cmds.index(c) for c in order] == sorted(cmds.index(c) for c in order)
        d = rig.driver.health().detail
        assert (d["sim"], d["registration"], d["csq_dbm"], d["socket"]) == ("ready", "home", -79, 0)
        assert d["imei"] == rig.sim.imei and d["imsi"] == "460111234567890" and d["iccid"].startswith("8986")
        assert d["radio"]["signal_power"] == -1063 and d["radio"]["ecl"] == 0
        assert d["network_time_utc"] is not None and rig.driver.clock.last_offer_source == "modem"


async def test_alarm_datagram_is_decoded_and_acked_with_exact_bytes(tmp_path):
    async with nbiot_rig(tmp_path) as rig:
        s = sensor(rig, 0)
        seq = s.trigger("alarm")
        await async_wait_for(lambda: rig.events(EventKind.ALARM) and seq in s.acked, 10, what="alarm acked")
        event = rig.events(EventKind.ALARM)[0]
        assert (event.device_id, event.code, event.via, event.detail["seq"]) == ("smoke-1", "smoke", "nbiot-modem", seq)
        ack = codec.ack(s.sent[0]).hex().upper()
        assert rig.sim.sent[0].command == f"AT+NSOST=0,{s.ip},{s.port},8,{ack}"
        assert rig.driver.health().detail["last_datagram_wall_s"] is not None


async def test_sensor_retry_is_deduplicated_but_acked_again(tmp_path):
    async with nbiot_rig(tmp_path) as rig:
        s = sensor(rig, 0)
        data = codec.encode(s.imei, codec.ALARM, 77)
        rig.sim.deliver(s.ip, s.port, data)
        rig.sim.deliver(s.ip, s.port, data)  # the first ack was "lost": the sensor sends it again
        await async_wait_for(lambda: len(rig.sim.sent) == 2, 10, what="two acks")
        assert len(rig.events(EventKind.ALARM)) == 1 and rig.counter("duplicates") == 1


async def test_multi_datagram_buffer_is_drained_until_remaining_is_zero(tmp_path):
    async with nbiot_rig(tmp_path, n_sensors=3, nsonmi_mode=1) as rig:
        sock = rig.sim.sockets[0]
        for i, s in enumerate(rig.sim.sensors.values()):
            sock.buffer.append((s.ip, s.port, codec.encode(s.imei, codec.HEARTBEAT, 100 + i)))
        rig.sim.urc("+NSONMI:0,20")  # one URC for three queued datagrams
        await async_wait_for(lambda: len(rig.events(EventKind.HEARTBEAT)) == 3, 10, what="three heartbeats")
        assert rig.sim.commands.count("AT+NSORF=0,1358") == 3 and not sock.buffer


async def test_nsonmi_mode_2_carries_the_data_in_the_urc(tmp_path):
    async with nbiot_rig(tmp_path, nsonmi_mode=2) as rig:
        s = sensor(rig, 1)
        seq = s.trigger("fault")
        await async_wait_for(lambda: seq in s.acked, 10, what="ack")
        assert rig.events(EventKind.FAULT)[0].code == "smoke_chamber"
        assert "AT+NSORF=0,1358" not in rig.sim.commands


async def test_bad_nsorf_lines_are_rejected_counted_and_the_next_datagram_still_works(tmp_path):
    async with nbiot_rig(tmp_path) as rig:
        s = sensor(rig, 0)
        for fault in ("odd_hex", "len_mismatch", "socket7", "non_hex"):
            rig.sim.bad_nsorf = fault
            rig.sim.deliver(s.ip, s.port, codec.encode(s.imei, codec.HEARTBEAT, 1))
            await async_wait_for(lambda: not rig.sim.bad_nsorf, 10, what=f"{fault} consumed")
        await async_wait_for(lambda: rig.counter("datagram_rejected") == 4, 10, what="four rejections")
        seq = s.trigger("alarm")
        await async_wait_for(lambda: seq in s.acked, 10, what="alarm after bad lines")


async def test_unknown_imei_and_garbage_payload_are_rejected_not_acked(tmp_path):
    async with nbiot_rig(tmp_path) as rig:
        from drivers.cellular.simnbiot import make_imei

        rig.sim.deliver("10.168.3.250", 40999, codec.encode(make_imei(99), codec.ALARM, 1))
        rig.sim.deliver("10.168.3.250", 40999, "火警\x00".encode() * 3)
        rig.sim.deliver("10.168.3.250", 40999, b"\x00" * 1358)  # a 2,716-char NSORF line
        await async_wait_for(lambda: rig.counter("datagram_rejected") == 3, 10, what="rejections")
        assert not rig.sim.sent and not rig.events()


async def test_busy_ack_is_retried(tmp_path):
    async with nbiot_rig(tmp_path) as rig:
        rig.sim.send_busy = 2  # +CME ERROR:159 twice, then accepted
        s = sensor(rig, 0)
        seq = s.trigger("alarm")
        await async_wait_for(lambda: seq in s.acked, 10, what="ack after busy")
        assert rig.counter("acks_sent") == 1 and rig.counter("ack_failed") == 0


async def test_registration_loss_and_recovery(tmp_path):
    async with nbiot_rig(tmp_path) as rig:
        rig.sim.set_network("none")
        await async_wait_for(lambda: rig.driver.health().state == DriverState.DEGRADED, 10, what="degraded")
        assert rig.driver.health().detail["registration"] == "searching"
        s = sensor(rig, 0)
        assert not rig.sim.deliver(s.ip, s.port, codec.encode(s.imei, codec.ALARM, 5))  # no coverage: lost
        rig.sim.set_network("ok")
        await async_wait_for(lambda: rig.driver.health().state == DriverState.OK, 10, what="recovered")
        seq = s.trigger("alarm")
        await async_wait_for(lambda: seq in s.acked, 10, what="alarm after recovery")


async def test_reboot_mid_command_triggers_full_reinit(tmp_path):
    async with nbiot_rig(tmp_path, status_interval_s=5.0) as rig:
        before = rig.sim.commands.count("AT+NSOCR=DGRAM,17,5683,1")
        rig.sim.faults.reboot_next_command = True
        s = sensor(rig, 0)
        s.trigger("heartbeat")  # NSONMI -> NSORF -> the modem reboots instead of answering
        await async_wait_for(lambda: rig.counter("reinits") >= 1, 10, what="reinit")
        await async_wait_for(lambda: rig.sim.commands.count("AT+NSOCR=DGRAM,17,5683,1") > before
                             and rig.driver.health().state == DriverState.OK, 15, what="socket re-created")
        seq = s.trigger("alarm")
        await async_wait_for(lambda: seq in s.acked, 10, what="alarm after reboot")
        assert rig.counter("at_reboot_evidence") >= 1


async def test_sim_missing_is_down_with_a_clear_reason_then_recovers(tmp_path):
    from drivers.cellular.spec import SPEC_NBIOT
    from drivers.cellular.simnbiot import NbiotModemSim
    from tests.integration.cellular_support import nbiot_context, smoke_devices

    path = str(tmp_path / "nbiot")
    sim = NbiotModemSim()
    sim.sim_present = False
    await sim.start(path)
    driver = SPEC_NBIOT.build(nbiot_context(path, smoke_devices(1), reopen_cap_s=0.5))
    task = asyncio.create_task(driver.run(lambda item: None))
    try:
        await async_wait_for(lambda: driver.health().detail["sim"] == "absent", 10, what="sim absent")
        assert driver.health().state == DriverState.DOWN
        sim.sim_present = True
        await async_wait_for(lambda: driver.health().state == DriverState.OK, 15, what="recovered with a SIM")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sim.stop()


async def test_echo_off_modem_and_loose_urcs_and_garbage_still_deliver(tmp_path):
    async with nbiot_rig(tmp_path, sim_kw={"echo": False}) as rig:
        rig.sim.faults.strict_urc = False
        rig.sim.faults.urc_period_s = 0.05
        rig.sim.faults.garbage_period_s = 0.05
        s = sensor(rig, 0)
        seqs = [s.trigger("heartbeat") for _ in range(5)]
        await async_wait_for(lambda: all(q in s.acked for q in seqs), 20, what="five acks through noise")
        assert rig.counter("at_garbage_lines") > 0 or rig.counter("at_urcs") > 0


async def test_a_driver_restart_keeps_de_dup_and_flags_an_old_sequence(tmp_path):
    """Issue 15 item 5 on the modem path: the (device, sequence) state is persisted in the state directory."""
    state = tmp_path / "state"
    state.mkdir()
    async with nbiot_rig(tmp_path, n_sensors=1, state_dir=state) as rig:
        s = sensor(rig, 0)
        rig.sim.deliver(s.ip, s.port, codec.encode(s.imei, codec.ALARM, 77))
        await async_wait_for(lambda: rig.events(EventKind.ALARM), 10, what="alarm")
    assert (state / "counters-nbiot.json").exists()
    (tmp_path / "again").mkdir()
    async with nbiot_rig(tmp_path / "again", n_sensors=1, state_dir=state) as rig:
        s = sensor(rig, 0)
        rig.sim.deliver(s.ip, s.port, codec.encode(s.imei, codec.ALARM, 77))  # the retry, after our restart
        rig.sim.deliver(s.ip, s.port, codec.encode(s.imei, codec.HEARTBEAT, 20))  # a recorded old datagram
        rig.sim.deliver(s.ip, s.port, codec.encode(s.imei, codec.HEARTBEAT, 78))
        await async_wait_for(lambda: len(rig.sim.sent) == 3, 10, what="three acks")
        assert rig.counter("duplicates") == 1 and rig.counter("replay_suspects") == 1
        assert not rig.events(EventKind.ALARM) and len(rig.events(EventKind.HEARTBEAT)) == 1
        (sec,) = rig.events(EventKind.SECURITY)
        assert sec.detail == {"counter": 20, "last_counter": 77, "alarm": False} and sec.via == "nbiot-modem"
        assert rig.driver.health().detail["devices"]["smoke-1"]["replay"]["replay_suspects"] == 1
