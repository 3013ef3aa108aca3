"""The two ends of a cellular message without a serial line: the SMS driver's admission (availability,
per-recipient and global rate limits, queue bound, registration URCs, reboot) on an injected clock, and
the simulated NB-IoT smoke detector (drivers/cellular/simnbiot.SmokeSensorSim): flags, retries with the
same sequence number until acked, heartbeats, and the modem's socket buffer it writes into."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from drivers.base import DriverContext, DriverState
from drivers.cellular.at import Urc
from drivers.cellular.config import SmsPort
from drivers.cellular.pdu import decode_submit
from drivers.cellular.simnbiot import NbiotModemSim, SmokeSensorSim, Socket, make_imei
from drivers.cellular.sms import SmsDriver, _mask
from drivers.codecs import CodecMeta, nbiot_smoke
from gateway.clock import ManualClock
from gateway.errors import CommandRejected, ModemUnavailable
from gateway.model import Stamp
from tests.support.wait import async_wait_for

NUMBER = "+8613800000005"


def sms_driver(clock: ManualClock, **port) -> SmsDriver:
    cfg = SmsPort(path="/dev/null-modem", **port)
    drv = SmsDriver(DriverContext("sms", cfg, (), {}, clock, structlog.get_logger("test")))
    drv._queue = asyncio.PriorityQueue(cfg.queue_max)  # what run() sets up before the first session
    drv._unavailable = ""  # as after a successful bring-up
    return drv


# ---- SMS admission -----------------------------------------------------------------------------------------

async def test_nothing_is_queued_before_the_module_is_up():
    drv = SmsDriver(DriverContext("sms", SmsPort(path="/dev/x"), (), {}, ManualClock(), structlog.get_logger("t")))
    with pytest.raises(ModemUnavailable, match="not started"):
        drv.submit_sms(NUMBER, "火警")
    assert drv.state == DriverState.STARTING


async def test_a_queued_message_is_encoded_with_the_configured_validity():
    drv = sms_driver(ManualClock(), validity_h=24)
    drv.submit_sms(NUMBER, "火" * 71)
    drv.submit_sms("+8613800000006", "警")
    (_, _, first), (_, _, second) = drv._queue.get_nowait(), drv._queue.get_nowait()
    decoded = [decode_submit(p.hex) for p in first.parts]
    assert [d.concat[1:] for d in decoded] == [(2, 1), (2, 2)] and decoded[0].validity == 167  # 24 h (23.040 §9.2.3.12.1)
    assert decode_submit(second.parts[0].hex).concat is None
    assert drv.counters["queued"] == 2


async def test_per_recipient_minimum_interval_and_hourly_maximum():
    clock = ManualClock()
    drv = sms_driver(clock, per_recipient_min_interval_s=10, per_recipient_max_per_hour=3)
    drv.submit_sms(NUMBER, "1")
    with pytest.raises(CommandRejected) as exc:
        drv.submit_sms(NUMBER, "2")  # 0 s later
    assert exc.value.reason == "rate_limited"
    drv.submit_sms("+8613800000006", "other recipient, own budget")
    for _ in range(2):
        clock.advance(10)
        drv.submit_sms(NUMBER, "again")
    clock.advance(10)
    with pytest.raises(CommandRejected, match="in the last hour"):
        drv.submit_sms(NUMBER, "fourth within the hour")
    clock.advance(3600)
    drv.submit_sms(NUMBER, "an hour later")
    assert drv.counters["rate_limited"] == 2


async def test_a_full_queue_refuses_and_does_not_count_the_message_as_sent():
    clock = ManualClock()
    drv = sms_driver(clock, queue_max=2, per_recipient_min_interval_s=0)
    drv.submit_sms(NUMBER, "1")
    drv.submit_sms(NUMBER, "2")
    with pytest.raises(CommandRejected) as exc:
        drv.submit_sms(NUMBER, "3")
    assert exc.value.reason == "queue_full" and len(drv._sent_at[NUMBER]) == 2


async def test_bad_numbers_and_empty_texts_are_refused_before_queueing():
    drv = sms_driver(ManualClock())
    for number, text, reason in (("12a", "火警", "bad_number"), (NUMBER, "", "empty_text")):
        with pytest.raises(CommandRejected) as exc:
            drv.submit_sms(number, text)
        assert exc.value.reason == reason
    assert drv._queue.empty()


async def test_global_pause_waits_only_when_the_minute_is_full():
    clock = ManualClock()
    drv = sms_driver(clock, global_max_per_minute=2)
    await drv._global_pause()
    await drv._global_pause()
    clock.advance(61)  # the minute has passed: no wait
    await asyncio.wait_for(drv._global_pause(), 1)
    assert drv.counters["global_waits"] == 0


async def test_registration_urcs_and_reboots_gate_the_queue():
    drv = sms_driver(ManualClock())
    drv._on_urc(Urc("+CEREG", "+CEREG: 2"))
    with pytest.raises(ModemUnavailable, match="searching"):
        drv.submit_sms(NUMBER, "火警")
    drv._on_urc(Urc("+CREG", "+CREG: 5"))  # 2G/3G registration form, roaming: usable
    drv.submit_sms(NUMBER, "火警")
    drv._on_urc(Urc("+CEREG", "+CEREG: x"))
    assert drv.counters["urc_rejected"] == 1 and drv.modem.cereg == 5
    drv._on_reboot("RDY")
    assert drv.counters["reboots"] == 1
    with pytest.raises(ModemUnavailable, match="rebooted"):
        drv.submit_sms(NUMBER, "火警")


async def test_queued_messages_fail_fast_when_the_module_goes_away():
    drv = sms_driver(ManualClock(), per_recipient_min_interval_s=0)
    futures = [drv.submit_sms(NUMBER, str(i)) for i in range(3)]
    drv._fail_queued(ModemUnavailable("serial port lost"))
    for fut in futures:
        with pytest.raises(ModemUnavailable):
            await fut


def test_phone_numbers_are_masked_in_logs():
    assert _mask("+8613800000005") == "**********0005" and _mask("110") == "110"


# ---- the simulated NB-IoT smoke detector ---------------------------------------------------------------------

def registered_modem() -> NbiotModemSim:
    """A modem that is registered with one listening socket, without a pty (deliver() only queues)."""
    modem = NbiotModemSim()
    modem.cfun, modem.stat = 1, 1
    modem.sockets[0] = Socket(5683)
    return modem


def decoded(data: bytes) -> list:
    return nbiot_smoke.decode(data, CodecMeta("smoke-1", Stamp(0.0, "b", 0, True), "nbiot-modem"))


async def test_alarm_sets_the_flag_and_retries_with_the_same_sequence_until_acked():
    modem = registered_modem()
    sensor = modem.add_sensor(SmokeSensorSim(make_imei(1), "10.168.3.101", 40001, ack_wait_s=0.05, retries=2))
    seq = sensor.trigger("alarm")
    await async_wait_for(lambda: len(sensor.sent) == 3, 5, what="first send and two retries")
    assert {nbiot_smoke.header(d).seq for d in sensor.sent} == {seq}
    assert decoded(sensor.sent[0])[0].values["alarm"] is True
    assert len(modem.sockets[0].buffer) == 3 and seq not in sensor.acked
    await asyncio.sleep(0)  # let the transmit task finish its last wait


async def test_an_ack_stops_the_retries_and_a_bad_ack_is_ignored():
    modem = registered_modem()
    sensor = modem.add_sensor(SmokeSensorSim(make_imei(2), "10.168.3.102", 40002, ack_wait_s=5.0, retries=2))
    seq = sensor.trigger("heartbeat")
    await async_wait_for(lambda: sensor.sent, 5, what="first send")
    sensor.on_downlink(b"\xa5\x01\x80garbage")
    assert seq not in sensor.acked
    sensor.on_downlink(nbiot_smoke.ack(sensor.sent[0]))
    assert seq in sensor.acked
    await asyncio.sleep(0.05)
    assert len(sensor.sent) == 1  # acked within the wait: no retry


async def test_clear_fault_and_battery_low_shape_the_next_reports():
    modem = registered_modem()
    sensor = modem.add_sensor(SmokeSensorSim(make_imei(3), "10.168.3.103", retries=0))
    sensor.trigger("alarm")
    sensor.trigger("clear")
    sensor.trigger("fault")
    sensor.trigger("battery_low")
    await async_wait_for(lambda: len(sensor.sent) == 4, 5, what="four reports")
    alarm, clear, fault, battery = (decoded(d) for d in sensor.sent)
    assert alarm[0].values["alarm"] and not clear[0].values["alarm"]
    assert (fault[1].kind, fault[1].code) == ("fault", "smoke_chamber")  # fault code defaults to 1
    assert battery[0].values["battery_mv"] == 2550 and battery[1].kind == "battery_low"


async def test_heartbeats_follow_the_time_scale():
    modem = registered_modem()
    sensor = modem.add_sensor(SmokeSensorSim(make_imei(4), "10.168.3.104", heartbeat_s=86400, time_scale=86400 / 0.02,
                                             retries=0))
    sensor.start()
    await async_wait_for(lambda: len(sensor.sent) >= 3, 5, what="three compressed heartbeats")
    assert all(nbiot_smoke.header(d).msg_type == nbiot_smoke.HEARTBEAT for d in sensor.sent)
    await modem.stop()


async def test_datagrams_reach_no_socket_while_unregistered_or_without_a_socket():
    modem = NbiotModemSim()
    assert not modem.deliver("10.0.0.1", 1, b"\x01") and modem.dropped == 1
    modem.cfun, modem.stat = 1, 1
    assert not modem.deliver("10.0.0.1", 1, b"\x01") and modem.dropped == 2  # registered, but no socket yet
    modem.sockets[3] = Socket(5683)
    assert modem.deliver("10.0.0.1", 1, b"\x01") and modem.sockets[3].buffer == [("10.0.0.1", 1, b"\x01")]
    modem.set_network("none")  # losing registration empties the socket buffers, like the module
    assert modem.sockets[3].buffer == []
