"""Simulated Quectel BC95/BC28 (NSO dialect, Neul spacing: no space after the colon) with its registration
state machine and UDP socket buffers, and the NB-IoT smoke detectors that send it datagrams and wait for acks.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

from drivers.cellular.config import luhn_digit
from drivers.cellular.simmodem import AtModemSim
from drivers.codecs import nbiot_smoke as codec

REGISTER_DELAY_S = 0.3  # CFUN=1 -> registered; real modules take 10-60 s (protocols.md §1.4)
MAX_SOCKETS = 7


def make_imei(n: int, tac: str = "86123456") -> str:
    """A valid IMEI (TAC + 6-digit serial + Luhn digit) for simulated sensor number n."""
    body = f"{tac}{n:06d}"
    return body + str(luhn_digit(body))


@dataclass
class SentDatagram:
    command: str  # the exact AT+NSOST line
    ip: str
    port: int
    data: bytes


@dataclass
class Socket:
    port: int
    buffer: list[tuple[str, int, bytes]] = field(default_factory=list)


class NbiotModemSim(AtModemSim):
    banner = ("Neul ", "OK")
    urc_noise = ("+CSCON:1", "+CSCON:0", "+NPSMR:0")

    def __init__(self, imei: str = "", baud: int = 0, echo: bool = True, nitz_utc: float | None = None) -> None:
        super().__init__(baud, echo)
        self.imei = imei or make_imei(999001, tac="86700004")
        self.sim_present = True
        self.network = "ok"  # "ok" | "none" (no coverage) | "denied"
        self.register_delay_s = REGISTER_DELAY_S
        self.nitz_utc = nitz_utc  # None: CCLK answers from the host clock
        self.sent: list[SentDatagram] = []
        self.sensors: dict[tuple[str, int], SmokeSensorSim] = {}
        self.send_busy = 0  # answer this many NSOST with +CME ERROR:159
        self.bad_nsorf = ""  # "odd_hex" | "len_mismatch" | "socket7" | "non_hex": corrupt the next NSORF line
        self.remaining_stuck = False  # remaining_len never reaches 0
        self.dropped = 0  # datagrams that reached no socket (not registered, no socket)
        self.reset_state()

    # ---- control API ---------------------------------------------------------------------------

    def set_network(self, network: str) -> None:
        """"ok" | "none" | "denied": loss and recovery send +CEREG URCs like the real module."""
        self.network = network
        if self.cfun:
            self._set_stat({"ok": 1, "none": 2, "denied": 3}[network])

    def deliver(self, ip: str, port: int, data: bytes) -> bool:
        """A datagram from a sensor arrives over the air for our listening socket."""
        sock, socket = next(((s, v) for s, v in self.sockets.items() if v is not None), (None, None))
        if sock is None or socket is None or self.stat not in (1, 5):
            self.dropped += 1
            return False
        if self.nsonmi == 2:
            self.urc(f"+NSONMI:{sock},{ip},{port},{len(data)},{data.hex().upper()}")
            return True
        socket.buffer.append((ip, port, data))
        self.urc(f"+NSONMI:{sock},{len(data)}")
        return True

    def add_sensor(self, sensor: SmokeSensorSim) -> SmokeSensorSim:
        sensor.modem = self
        self.sensors[(sensor.ip, sensor.port)] = sensor
        return sensor

    # ---- module state --------------------------------------------------------------------------

    def reset_state(self) -> None:
        self.cmee = False
        self.cfun = 0
        self.stat = 0
        self.cereg_n = 0
        self.nsonmi = 1
        self.sockets: dict[int, Socket | None] = {i: None for i in range(MAX_SOCKETS)}

    def _set_stat(self, stat: int) -> None:
        if stat != self.stat:
            self.stat = stat
            if self.cereg_n:
                self.urc(f"+CEREG:{stat}")
            if stat not in (1, 5):
                for s in self.sockets.values():
                    if s is not None:
                        s.buffer.clear()

    async def _register(self) -> None:
        self._set_stat(2)
        await asyncio.sleep(self.register_delay_s)
        if self.cfun:
            self._set_stat({"ok": 1, "none": 2, "denied": 3}[self.network])

    def _err(self, code: int) -> tuple[list[str], str]:
        return [], f"+CME ERROR:{code}" if self.cmee else "ERROR"

    # ---- commands ------------------------------------------------------------------------------

    def handle(self, cmd: str) -> tuple[list[str], str]:
        c = cmd.upper()
        simple = {"AT": [], "AT+CPSMS=0": [], "AT+CEDRXS=0,5": [], "AT+CSCON=1": [], "AT+CGATT=1": [],
                  "ATI": ["Quectel", "BC95-B8", "Revision:BC95B8HBR01A03"], "AT+CGSN=1": [f"+CGSN:{self.imei}"]}
        if c in simple:
            return simple[c], "OK"
        if c == "AT+CMEE=1":
            self.cmee = True
            return [], "OK"
        if c in ("AT+CPIN?", "AT+NCCID", "AT+CIMI"):
            if not self.sim_present:
                return self._err(10)
            return {"AT+CPIN?": ["+CPIN:READY"], "AT+NCCID": ["+NCCID:89860317452052012345"],
                    "AT+CIMI": ["460111234567890"]}[c], "OK"
        if c.startswith("AT+NBAND="):
            return [], "OK"
        if c in ("AT+CFUN=1", "AT+CFUN=0"):
            self.cfun = int(c[-1])
            if self.cfun and self.sim_present:
                self.spawn(self._register(), "register")
            elif not self.cfun:
                self._set_stat(0)
            return [], "OK"
        if m := re.fullmatch(r"AT\+CEREG=([0-5])", c):
            self.cereg_n = int(m.group(1))
            return [], "OK"
        if c == "AT+CEREG?":
            tail = ",5A27,0B5B7F22,9" if self.cereg_n == 2 and self.stat in (1, 5) else ""
            return [f"+CEREG:{self.cereg_n},{self.stat}{tail}"], "OK"
        if c == "AT+CGATT?":
            return [f"+CGATT:{int(self.stat in (1, 5))}"], "OK"
        if c == "AT+CGPADDR":
            return ["+CGPADDR:0,10.168.3.17" if self.stat in (1, 5) else "+CGPADDR:0"], "OK"
        if c == "AT+CSQ":
            return ["+CSQ:17,99" if self.stat in (1, 5) else "+CSQ:99,99"], "OK"
        if c == "AT+NUESTATS":
            return ["Signal power:-1063", "Total power:-990", "TX power:230", "TX time:1234", "RX time:56789",
                    "Cell ID:190208338", "ECL:0", "SNR:92", "EARFCN:2506", "PCI:266", "RSRQ:-108"], "OK"
        if c == "AT+CCLK?":
            t = time.gmtime(self.nitz_utc if self.nitz_utc is not None else time.time())
            return [time.strftime("+CCLK:%y/%m/%d,%H:%M:%S+32", t)], "OK"
        if m := re.fullmatch(r"AT\+NSONMI=([0-3])", c):
            self.nsonmi = int(m.group(1))
            return [], "OK"
        if c == "AT+NRB":
            asyncio.get_running_loop().call_later(0.2, self.reboot, "REBOOT_CAUSE_APPLICATION_AT")
            return ["REBOOTING"], ""
        if c.startswith("AT+NSO"):
            return self._socket_command(cmd)
        return self._err(4)

    def _socket_command(self, cmd: str) -> tuple[list[str], str]:
        if m := re.fullmatch(r"AT\+NSOCR=DGRAM,17,(\d+),1", cmd):
            port = int(m.group(1))
            if self.stat not in (1, 5):
                return self._err(3)
            if any(s is not None and s.port == port for s in self.sockets.values()):
                return self._err(3)
            sid = next(i for i, s in self.sockets.items() if s is None)
            self.sockets[sid] = Socket(port)
            return [str(sid)], "OK"
        if m := re.fullmatch(r"AT\+NSOCL=(\d)", cmd):
            if self.sockets.get(int(m.group(1))) is None:
                return self._err(3)
            self.sockets[int(m.group(1))] = None
            return [], "OK"
        if m := re.fullmatch(r"AT\+NSORF=(\d),(\d+)", cmd):
            return self._nsorf(int(m.group(1)), int(m.group(2)))
        if m := re.fullmatch(r"AT\+NSOST=(\d),([\d.]+),(\d+),(\d+),([0-9A-Fa-f]*)(?:,\d+)?", cmd):
            return self._nsost(cmd, *m.groups())
        return self._err(4)

    def _nsorf(self, sid: int, max_len: int) -> tuple[list[str], str]:
        sock = self.sockets.get(sid)
        if sock is None:
            return self._err(3)
        if not sock.buffer:
            return [], "OK"
        ip, port, data = sock.buffer.pop(0)
        data = data[:max_len]
        remaining = sum(len(d) for _, _, d in sock.buffer) + (7 if self.remaining_stuck else 0)
        hexdata, length, sid_out = data.hex().upper(), len(data), sid
        fault, self.bad_nsorf = self.bad_nsorf, ""
        if fault == "odd_hex":
            hexdata = hexdata[:-1]
        elif fault == "len_mismatch":
            length += 1
        elif fault == "socket7":
            sid_out = 7
        elif fault == "non_hex":
            hexdata = "ZZ" + hexdata[2:]
        return [f"{sid_out},{ip},{port},{length},{hexdata},{remaining}"], "OK"

    def _nsost(self, cmd: str, sid: str, ip: str, port: str, length: str, hexdata: str) -> tuple[list[str], str]:
        if self.sockets.get(int(sid)) is None:
            return self._err(3)
        if len(hexdata) != 2 * int(length):
            return self._err(3)
        if self.send_busy:
            self.send_busy -= 1
            return self._err(159)
        data = bytes.fromhex(hexdata)
        self.sent.append(SentDatagram(cmd, ip, int(port), data))
        sensor = self.sensors.get((ip, int(port)))
        if sensor is not None:
            sensor.on_downlink(data)
        return [f"{sid},{len(data)}"], "OK"


class SmokeSensorSim:
    """An NB-IoT smoke detector: heartbeats every heartbeat_s / time_scale, events on demand, retries
    (same sequence number) until acked, like a real PSM sensor waiting a few seconds for the ack."""

    EVENTS = {"alarm": codec.ALARM, "clear": codec.ALARM_CLEARED, "silence": codec.SILENCED, "self_test": codec.SELF_TEST,
              "fault": codec.FAULT, "fault_cleared": codec.FAULT_CLEARED, "removed": codec.REMOVED,
              "battery_low": codec.BATTERY_LOW, "heartbeat": codec.HEARTBEAT}

    def __init__(self, imei: str, ip: str, port: int = 40000, heartbeat_s: float = 86400.0, time_scale: float = 1.0,
                 ack_wait_s: float = 3.0, retries: int = 2) -> None:
        self.imei, self.ip, self.port = imei, ip, port
        self.heartbeat_s, self.time_scale = heartbeat_s, time_scale
        self.ack_wait_s, self.retries = ack_wait_s, retries
        self.modem: NbiotModemSim | None = None
        self.seq = 0
        self.flags = 0
        self.battery_mv = 3600
        self.sent: list[bytes] = []  # every datagram put on the air, retries included
        self.acked: set[int] = set()
        self._acks: dict[int, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        assert self.modem is not None, "add the sensor to a modem first"
        self._task = self.modem.spawn(self._heartbeats(), f"sensor-{self.imei}")

    def send(self, msg_type: int, *, fault_code: int = 0, retry: bool = True) -> int:
        """Put one new message on the air (and retry until acked). Returns its sequence number."""
        self.seq = (self.seq + 1) & 0xFFFF
        bit = {codec.ALARM: 0x01, codec.SILENCED: 0x02, codec.FAULT: 0x04, codec.BATTERY_LOW: 0x08, codec.REMOVED: 0x10}
        if msg_type in bit:
            self.flags |= bit[msg_type]
        if msg_type == codec.ALARM_CLEARED:
            self.flags &= ~0x03
        if msg_type == codec.FAULT_CLEARED:
            self.flags &= ~0x04
        if msg_type in (codec.FAULT, codec.FAULT_CLEARED) and not fault_code:
            fault_code = 1
        data = codec.encode(self.imei, msg_type, self.seq, flags=self.flags, fault_code=fault_code,
                            battery_mv=self.battery_mv, smoke_db_m=0.35 if self.flags & 1 else 0.02)
        assert self.modem is not None
        self.modem.spawn(self._transmit(self.seq, data, retry), f"tx-{self.imei}-{self.seq}")
        return self.seq

    def trigger(self, event: str) -> int:
        if event == "battery_low":
            self.battery_mv = 2550
        return self.send(self.EVENTS[event])

    def on_downlink(self, data: bytes) -> None:
        try:
            _, seq = codec.parse_ack(data)
        except Exception:  # noqa: BLE001 - a bad ack is ignored by the sensor, as a real one would
            return
        self.acked.add(seq)
        if seq in self._acks:
            self._acks[seq].set()

    async def _transmit(self, seq: int, data: bytes, retry: bool) -> None:
        assert self.modem is not None
        event = self._acks.setdefault(seq, asyncio.Event())
        for _ in range(1 + (self.retries if retry else 0)):
            self.sent.append(data)
            self.modem.deliver(self.ip, self.port, data)
            try:
                async with asyncio.timeout(self.ack_wait_s):
                    await event.wait()
                return
            except TimeoutError:
                continue

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s / self.time_scale)
            self.send(codec.HEARTBEAT)
