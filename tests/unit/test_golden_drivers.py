"""One test per driver looping its golden cases (tests/cases/<driver>/*): Modbus RTU frames, LoRa frames
(keyed and keyless), NB-IoT AT transcripts (BC95 NSONMI/NSORF), SMS PDUs and the sensor codecs.
Byte streams are fed whole and one byte at a time: a serial line may deliver either, the output must not
depend on it. How cases are written and reviewed: tests/unit/golden.py."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from drivers.cellular import info
from drivers.cellular.at import AtParser, Done, Prompt, Reboot, Urc
from drivers.cellular.commands import Timeouts, command_for
from drivers.cellular.pdu import decode_submit, encode_submit
from drivers.codecs import CodecMeta
from drivers.codecs.registry import CODECS
from drivers.lora.frame import Deframer, Frame
from drivers.modbus.framing import Request, RtuFrame, RtuParser, parse_reply
from gateway.errors import CodecError, FrameError, GatewayError, ModbusDeviceError, ModemError
from gateway.model import Stamp
from tests.unit.golden import cases, check, read_hex, read_transcript, settings

STAMP = Stamp(1_700_000_000.0, "boot-golden", 1, True)


def _ids(driver: str) -> dict[str, Any]:
    found = cases(driver)
    return {"argvalues": found, "ids": [c.name for c in found]}


def _rejected(err: FrameError) -> dict[str, Any]:
    return {"rejected": err.reason, "bytes": err.data.hex()}


def _whole_and_bytewise(feed_new, data: bytes) -> list:
    """Run `feed_new()` -> feed function twice: all bytes at once, then one byte at a time; same output."""
    whole = feed_new()(data)
    feed = feed_new()
    bytewise = [o for b in data for o in feed(bytes([b]))]
    return [whole, bytewise]


# ---- Modbus RTU (Modbus over Serial Line v1.02, Application Protocol v1.1b3) ---------------------------

def _modbus(frame: RtuFrame | FrameError, request: Request | None) -> dict[str, Any]:
    if isinstance(frame, FrameError):
        return _rejected(frame)
    out: dict[str, Any] = {"unit": frame.unit, "pdu": frame.pdu.hex()}
    if request is not None:
        try:
            out["values"] = [int(v) for v in parse_reply(request, frame.pdu)]
        except ModbusDeviceError as exc:
            out["exception_code"] = exc.exception_code
        except FrameError as exc:
            out["reply_error"] = exc.reason
    return out


@pytest.mark.parametrize("case", **_ids("modbus_rtu"))
def test_modbus_rtu_golden(case):
    cfg = settings(case)
    request = Request(**cfg["request"]) if "request" in cfg else None
    data = read_hex(case / "input.hex")

    def new():
        return RtuParser(server=cfg.get("role") == "server").feed

    whole, bytewise = ([_modbus(f, request) for f in run] for run in _whole_and_bytewise(new, data))
    assert [o for o in whole if "unit" in o] == [o for o in bytewise if "unit" in o]  # frames never depend on chunking
    check(case, whole)


# ---- LoRa frames through the E22's transparent UART (protocols.md §2.1, drivers/lora/README.md) --------

def _lora(item: Frame | FrameError) -> dict[str, Any]:
    if isinstance(item, FrameError):
        return _rejected(item)
    return {"device_id": item.device_id, "fcnt": item.fcnt, "type": item.type.name, "payload": item.payload.hex(),
            "rssi_dbm": item.rssi_dbm, "encrypted": item.encrypted, "verified": item.verified, "wire_bytes": item.wire_bytes}


@pytest.mark.parametrize("case", **_ids("lora"))
def test_lora_frame_golden(case):
    cfg = settings(case)
    keys = {int(dev, 0): (bytes.fromhex(k) if k else None) for dev, k in cfg["keys"].items()}
    data = read_hex(case / "input.hex")
    runs = []
    for bytewise in (False, True):
        d = Deframer(keys, rssi=cfg.get("rssi", True), sub_packet=cfg.get("sub_packet", 240), listen=cfg.get("listen", False))
        out = [o for b in data for o in d.feed(bytes([b]))] if bytewise else d.feed(data)
        out += d.expire()  # the line went quiet: a truncated candidate at the head is judged now
        runs.append([_lora(o) for o in out])
    # Chunking may cut unsynchronised noise differently; the frames and the other verdicts must not change.
    def verdicts(run):
        return [o for o in run if o.get("rejected") != "no_sync"]
    assert verdicts(runs[0]) == verdicts(runs[1])
    check(case, runs[0])


# ---- NB-IoT AT transcripts (Quectel BC95 AT Commands Manual V2.0; protocols.md §1.2-1.3) ------------------

def _error(err: GatewayError | None) -> dict[str, Any] | None:
    if err is None:
        return None
    if isinstance(err, ModemError):
        return {"type": "ModemError", "kind": err.kind, "code": err.code}
    return {"type": type(err).__name__}


def _at(o: Done | Urc | Reboot | Prompt) -> list[dict[str, Any]]:
    if isinstance(o, Done):
        out: list[dict[str, Any]] = [{"done": o.command.text, "lines": list(o.lines), "error": _error(o.error)}]
        if o.command.text.startswith("AT+NSORF") and o.error is None:
            for line in o.lines:
                try:
                    dg = info.nsorf(line)
                    out.append({"datagram": {"socket": dg.socket, "ip": dg.ip, "port": dg.port, "data": dg.data.hex(),
                                             "remaining": dg.remaining}})
                except FrameError as exc:
                    out.append({"datagram_rejected": exc.reason})
        for line in o.lines if o.error is None else ():
            if line.startswith("+CSQ"):
                out.append({"csq_dbm": info.csq_dbm(line)[0]})  # 27.007 §8.5: -113 + 2 * rssi
            elif line.startswith("+CEREG"):
                out.append({"cereg_stat": info.CEREG_STAT[info.cereg_stat(line)]})  # 27.007 §10.1.22
        return out
    if isinstance(o, Urc):
        out = [{"urc": o.prefix, "line": o.line}]
        if o.prefix == "+NSONMI":
            try:
                out.append({"nsonmi": list(info.nsonmi(o.line))})
            except FrameError as exc:
                out.append({"nsonmi_rejected": exc.reason})
        return out
    if isinstance(o, Reboot):
        return [{"reboot": o.line}]
    return [{"prompt": True}]


@pytest.mark.parametrize("case", **_ids("nbiot_at"))
def test_nbiot_at_transcript_golden(case):
    runs = []
    for bytewise in (False, True):
        p, got = AtParser(), []
        for mark, value in read_transcript(case / "at.txt"):
            if mark == ">":
                assert isinstance(value, str)
                p.begin(command_for(value, Timeouts())[0])
                continue
            assert isinstance(value, bytes)
            chunks = [value[i : i + 1] for i in range(len(value))] if bytewise else [value]
            for chunk in chunks:
                got += [x for o in p.feed(chunk) for x in _at(o)]
        got.append({"counters": {k: v for k, v in sorted(p.counters.items()) if v}, "in_flight": p.in_flight.text if p.in_flight else None})
        runs.append(got)
    assert runs[0] == runs[1]
    check(case, runs[0])


# ---- SMS-SUBMIT PDUs (3GPP TS 23.040 §9.2.2.2, UCS2 per 23.038, UDH concatenation) -----------------------

@pytest.mark.parametrize("case", **_ids("sms_pdu"))
def test_sms_pdu_golden(case):
    spec = json.loads((case / "input.json").read_text())
    pdus = encode_submit(spec["number"], spec["text"], spec.get("validity", 0xAA), spec.get("reference", 0))
    got = []
    for pdu in pdus:
        d = decode_submit(pdu.hex)
        got.append({"pdu": pdu.hex, "cmgs_length": pdu.tpdu_octets,
                    "decoded": {"number": d.number, "text": d.text, "validity": d.validity, "concat": d.concat and list(d.concat)}})
    assert "".join(g["decoded"]["text"] for g in got) == spec["text"]  # the parts join back to the message
    check(case, got)


# ---- Sensor codecs (drivers/codecs/README.md) -----------------------------------------------------------

@pytest.mark.parametrize("case", **_ids("codecs"))
def test_codec_golden(case):
    cfg = settings(case)
    meta = CodecMeta(cfg.get("device_id", "dev-1"), STAMP, cfg.get("via", "lora"), rssi_dbm=cfg.get("rssi_dbm"),
                     snr_db=cfg.get("snr_db"))
    payload = read_hex(case / "input.hex")
    try:
        items = CODECS[cfg["codec"]](payload, meta)
    except CodecError as exc:
        got = [{"codec_error": str(exc)}]
    else:
        got = []
        for item in items:
            d = msgspec.to_builtins(item)
            assert d.pop("stamp") == msgspec.to_builtins(STAMP) and d.pop("device_id") == meta.device_id
            got.append(d)
    check(case, got)
