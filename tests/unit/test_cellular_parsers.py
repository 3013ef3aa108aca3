"""The modem's status and data lines (drivers/cellular/info.py), the command table (commands.py) and the
one ingestion path for NB-IoT reports (ingest.py): edge cases named by 27.007 and the BC95 manual
(protocols.md §1.2), each malformed line a FrameError, never a crash or a wrong value."""

from __future__ import annotations

import calendar

import pytest

from drivers.cellular import info
from drivers.cellular.commands import Timeouts, command_for
from drivers.cellular.config import NbiotProfile
from drivers.cellular.ingest import Ingest
from drivers.cellular.simnbiot import make_imei
from drivers.codecs import nbiot_smoke
from gateway.clock import ManualClock
from gateway.errors import CodecError, FrameError
from gateway.model import Device, DeviceType, Event, EventKind, Reading

# ---- +CSQ (27.007 §8.5) -------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "dbm", "ber"), [
    ("+CSQ:0,99", -113, 99),  # 0: -113 dBm or less
    ("+CSQ:1,0", -111, 0),
    ("+CSQ:17,99", -79, 99),
    ("+CSQ:31,99", -51, 99),  # 31: -51 dBm or greater
    ("+CSQ: 20,7", -73, 7),  # Quectel LTE spacing
    ("+CSQ:99,99", None, 99),  # not known or not detectable
])
def test_csq_maps_rssi_to_dbm(line, dbm, ber):
    assert info.csq_dbm(line) == (dbm, ber)


@pytest.mark.parametrize("line", ["+CSQ:32,99", "+CSQ:-1,99", "+CSQ:x,99", "+CSQ:", "+CSQ:17"])
def test_csq_out_of_range_or_malformed_is_a_frame_error(line):
    with pytest.raises((FrameError, ValueError)):
        info.csq_dbm(line)


# ---- +CEREG (27.007 §10.1.22) --------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "urc", "stat"), [
    ("+CEREG:2,1,5A27,0B5B7F22,9", False, 1),
    ("+CEREG: 0,5", False, 5),
    ('+CEREG: 2,1,"5A2B","0C3D4E5",9', False, 1),
    ("+CEREG:2", True, 2),  # the URC form carries <stat> first
    ("+CEREG:1,5A27,0B5B7F22,9", True, 1),
    ("+CEREG:0,3", False, 3),
])
def test_cereg_reads_stat_from_the_answer_and_the_urc(line, urc, stat):
    assert info.cereg_stat(line, urc=urc) == stat


@pytest.mark.parametrize("line", ["+CEREG:2", "+CEREG:2,9", "+CEREG:2,a"])
def test_cereg_answer_without_a_known_stat_is_a_frame_error(line):
    with pytest.raises(FrameError):
        info.cereg_stat(line)


def test_only_home_and_roaming_count_as_registered():
    assert info.REGISTERED == {1, 5}
    assert set(info.CEREG_STAT) == {0, 1, 2, 3, 4, 5}


# ---- NUESTATS ------------------------------------------------------------------------------------------

def test_nuestats_both_forms_and_junk_lines():
    lines = ("Signal power:-1063", "Total power:-990", "Cell ID:190208338", "ECL:0", "SNR:92",
             "NUESTATS:RADIO,RSRQ,-108", "NUESTATS:BROKEN", "no colon here", "Label: text value")
    got = info.nuestats(lines)
    assert got == {"signal_power": -1063, "total_power": -990, "cell_id": 190208338, "ecl": 0, "snr": 92,
                   "rsrq": -108, "label": "text value"}


# ---- +CCLK (network time) ------------------------------------------------------------------------------

def test_cclk_is_utc_with_the_zone_beside_it():
    want = calendar.timegm((2026, 12, 1, 3, 4, 5, 0, 0, 0))
    assert info.cclk_utc("+CCLK:26/12/01,03:04:05+32") == want
    assert info.cclk_utc('+CCLK: "26/12/01,03:04:05+32"') == want  # quoted (BC26)
    assert info.cclk_utc("+CCLK:26/12/01,03:04:05") == want  # no zone


def test_cclk_two_digit_years_pivot_like_posix():
    # A BC95 without NITZ counts from the epoch: 70/01/01 is 1970 (refused as "no time"), never 2070.
    assert info.cclk_utc("+CCLK:70/01/01,00:00:45+00") == 45.0
    assert info.cclk_utc("+CCLK:68/01/01,00:00:00") == calendar.timegm((2068, 1, 1, 0, 0, 0, 0, 0, 0))


@pytest.mark.parametrize("line", ["+CCLK:26/13/01,03:04:05+32", "+CCLK:26/12/32,00:00:00", "+CCLK:26/12/01,24:00:00",
                                  "+CCLK:garbage", "+CCLK", "+CCLK:26-12-01 03:04:05"])
def test_cclk_impossible_times_are_frame_errors(line):
    with pytest.raises(FrameError):
        info.cclk_utc(line)


# ---- NSORF / NSONMI (BC95 manual: <s>,<ip>,<port>,<len>,<hex>,<remaining>) ----------------------------------

def test_nsorf_largest_legal_datagram():
    data = bytes(range(256)) * 5 + bytes(78)  # 1358 bytes, BC95-G PACKET_SIZE_MAX
    dg = info.nsorf(f"6,10.0.0.1,65535,1358,{data.hex().upper()},0")
    assert dg == info.Datagram(6, "10.0.0.1", 65535, data, 0)


@pytest.mark.parametrize(("line", "why"), [
    ("0,10.0.0.1,5683,2,ABCD", "fields"),  # 5 fields
    ("0,10.0.0.1,5683,2,ABCD,0,9", "fields"),  # 7 fields
    ("7,10.0.0.1,5683,2,ABCD,0", "socket"),  # sockets are 0-6
    ("0,10.0.0.1,5683,0,,0", "length"),  # an empty datagram is not a datagram
    ("0,10.0.0.1,5683,1359," + "00" * 1359 + ",0", "length"),  # beyond PACKET_SIZE_MAX
    ("0,10.0.0.1,5683,3,ABCD,0", "length"),  # length disagrees with the hex
    ("0,10.0.0.1,0,2,ABCD,0", "port"),
    ("0,10.0.0.1,65536,2,ABCD,0", "port"),
    ("0,10.0.0.1,5683,2,ABCD,-1", "remaining"),
    ("0,10.0.0.1,5683,2,ZZCD,0", "hex"),
    ("x,10.0.0.1,5683,2,ABCD,0", "non-numeric"),
])
def test_nsorf_inconsistencies_are_frame_errors(line, why):
    with pytest.raises(FrameError):
        info.nsorf(line)


@pytest.mark.parametrize(("line", "want"), [
    ("+NSONMI:0,12", (0, 12)),  # mode 1
    ("+NSONMI:1,10.0.0.1,5683,3,A1B2C3", (1, 3)),  # mode 2
    ("+NSONMI:2,3,A1B2C3", (2, 3)),  # mode 3
])
def test_nsonmi_every_mode(line, want):
    assert info.nsonmi(line) == want


@pytest.mark.parametrize("line", ["+NSONMI:0", "+NSONMI:9,12", "+NSONMI:0,1,2,3", "+NSONMI:a,1"])
def test_nsonmi_malformed(line):
    with pytest.raises(FrameError):
        info.nsonmi(line)


# ---- the command table -----------------------------------------------------------------------------------

T = Timeouts(query_s=0.3, slow_s=10.0, sms_s=120.0)


@pytest.mark.parametrize(("text", "prefix", "bare", "prompt", "timeout"), [
    ("AT+CSQ", "+CSQ", False, False, 0.3),
    ("AT+CGSN=1", "+CGSN", False, False, 0.3),  # BC95 answers +CGSN:<IMEI>
    ("AT+CGSN", "", True, False, 0.3),  # EC200 answers the bare IMEI
    ("AT+CIMI", "", True, False, 0.3),
    ("AT+NSORF=0,1358", "", True, False, 0.3),
    ("AT+NSOCR=DGRAM,17,5683,1", "", True, False, 0.3),
    ("AT+CFUN=1", "+CFUN", False, False, 10.0),  # slow: seconds
    ("AT+CFUN?", "+CFUN", False, False, 0.3),  # a read of a slow command is a query
    ("AT+CGATT=1", "+CGATT", False, False, 10.0),
    ("AT+CMGS=19", "+CMGS", False, True, 120.0),  # up to 120 s on SMS modules
    ("ATE0", "", False, False, 0.3),
    ("AT", "", False, False, 0.3),
])
def test_command_table(text, prefix, bare, prompt, timeout):
    cmd, t = command_for(text, T)
    assert (cmd.text, cmd.prefix, cmd.bare, cmd.prompt, t) == (text, prefix, bare, prompt, timeout)


def test_nrb_ends_on_rebooting():
    cmd, t = command_for("AT+NRB", T)
    assert cmd.finals == ("REBOOTING",) and t == 10.0


# ---- ingest: identity, decoding, de-dup ---------------------------------------------------------------------

IMEIS = [make_imei(1), make_imei(2)]


def _ingest(clock: ManualClock, ack: bool = True) -> Ingest:
    devices = tuple(Device(f"smoke-{i}", "p", DeviceType.SMOKE, "nbiot", imei) for i, imei in enumerate(IMEIS, 1))
    return Ingest(devices, {"p": NbiotProfile(codec="nbiot_smoke_v1", ack=ack)}, clock, dedupe_window_s=600)


def test_ingest_identifies_decodes_and_acks():
    clock = ManualClock()
    ing = _ingest(clock)
    payload = nbiot_smoke.encode(IMEIS[1], nbiot_smoke.ALARM, 77, flags=1)
    got = ing.accept(payload, "nbiot-modem", rssi_dbm=-79)
    assert got.device.id == "smoke-2" and not got.duplicate
    assert got.ack == nbiot_smoke.ack(payload) and got.ack[3:6] == bytes([nbiot_smoke.ALARM, 0, 77])
    reading, event = got.items
    assert isinstance(reading, Reading) and reading.values["alarm"] is True
    assert isinstance(event, Event) and (event.kind, event.code) == (EventKind.ALARM, "smoke")
    assert ing.counters["accepted"] == 1


def test_a_retry_is_acked_again_but_not_emitted_twice():
    clock = ManualClock()
    ing = _ingest(clock)
    payload = nbiot_smoke.encode(IMEIS[0], nbiot_smoke.ALARM, 5, flags=1)
    ing.accept(payload, "nbiot-modem")
    clock.advance(5)
    again = ing.accept(payload, "nbiot-modem")  # the sensor's retry, byte for byte
    assert again.duplicate and again.items == [] and again.ack is not None  # the first ack may have been lost
    assert ing.counters["duplicates"] == 1 and ing.counters["accepted"] == 1


def test_profiles_without_ack_send_none():
    ing = _ingest(ManualClock(), ack=False)
    assert ing.accept(nbiot_smoke.encode(IMEIS[0], nbiot_smoke.HEARTBEAT, 1), "nbiot-modem").ack is None


def test_unknown_imei_and_identity_mismatches_are_frame_errors():
    ing = _ingest(ManualClock())
    with pytest.raises(FrameError, match="unknown IMEI"):
        ing.accept(nbiot_smoke.encode(make_imei(9), nbiot_smoke.ALARM, 1), "nbiot-modem")
    payload = nbiot_smoke.encode(IMEIS[0], nbiot_smoke.ALARM, 1)
    with pytest.raises(FrameError, match="carries the IMEI"):
        ing.accept(payload, "platform-relay", device_id="smoke-2")
    with pytest.raises(FrameError, match="carries IMEI"):
        ing.accept(payload, "platform-relay", imei=IMEIS[1])
    assert ing.counters["accepted"] == 0


@pytest.mark.parametrize("payload", [b"", b"\xa5\x01", bytes(20), b"\xff" * 1358])
def test_garbage_datagrams_are_refused_with_the_codecs_reason(payload):
    with pytest.raises(FrameError, match="no configured codec accepts"):
        _ingest(ManualClock()).accept(payload, "nbiot-modem")


def test_a_report_of_unknown_type_is_refused_with_the_codec_reason():
    body = bytearray(nbiot_smoke.encode(IMEIS[0], nbiot_smoke.HEARTBEAT, 1))
    body[10] = 0x0A
    body[-1] = sum(body[:-1]) & 0xFF  # checksum right: only the type is unknown
    with pytest.raises(FrameError, match="unknown message type 0x0a"):
        _ingest(ManualClock()).accept(bytes(body), "nbiot-modem")
    with pytest.raises(CodecError):  # the codec itself says CodecError
        nbiot_smoke.header(bytes(body))


# ---- port schemas: the limits an installer can hit -------------------------------------------------------------

def test_sms_port_defaults_follow_the_manuals_and_carry_into_timeouts():
    import msgspec

    from drivers.cellular.config import SmsPort, check_no_device

    port = msgspec.convert({"path": "/dev/ttyUSB2"}, SmsPort)
    assert (port.baud, port.validity_h, port.send_timeout_s) == (115200, 96.0, 120.0)  # EC200; 96 h = 0xAA; CMGS max
    assert port.timeouts == Timeouts(query_s=0.3, slow_s=10.0, sms_s=120.0)
    for bad in ({"path": ""}, {"path": "/dev/x", "validity_h": 0.5}, {"path": "/dev/x", "global_max_per_minute": 61},
                {"path": "/dev/x", "send_timeout_s": 301}, {"path": "/dev/x", "unknown": 1}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, SmsPort)
    assert "serves no devices" in check_no_device("anything")


def test_nbiot_port_limits():
    import msgspec

    from drivers.cellular.config import NbiotPort

    assert msgspec.convert({"path": "/dev/ttyAMA1"}, NbiotPort).bands == (5, 8)  # China Telecom B5, Mobile/Unicom B8
    for bad in ({"path": "/dev/x", "bands": [86]}, {"path": "/dev/x", "listen_port": 0}, {"path": "/dev/x", "nsonmi_mode": 3},
                {"path": "/dev/x", "ack_within_s": 31}, {"path": "/dev/x", "dialect": "qi"}, {"path": "/dev/x", "baud": 14400}):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, NbiotPort)


def test_simulated_imeis_pass_the_luhn_check():
    from drivers.cellular.config import check_imei

    assert all(check_imei(make_imei(n)) is None for n in (1, 2, 999, 900001, 999001))
