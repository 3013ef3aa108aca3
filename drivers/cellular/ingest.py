"""One ingestion path for NB-IoT sensor reports, whichever way they came (modem socket or platform relay):
find the device by IMEI, decode with the profile's codec, then the sequence number through the shared
anti-replay guard (drivers/sequence.py): a retry is a duplicate, an old sequence is a replay suspect,
and what was accepted survives a restart (drivers/counters.py).
"""

from __future__ import annotations

import zlib
from collections import Counter
from typing import Any, NamedTuple, Protocol

import structlog

from drivers.codecs import CodecMeta, Decode
from drivers.codecs import nbiot_smoke
from drivers.counters import CounterStore
from drivers.sequence import SequenceGuard, Verdict, is_alarm, screen, security_event
from gateway.clock import Clock
from gateway.errors import CodecError, FrameError
from gateway.model import Device, Event, EventKind, Item, Stamp


class Header(Protocol):
    """Who sent a datagram, read before its device (and so its codec's decode) is known."""

    @property
    def imei(self) -> str: ...
    @property
    def seq(self) -> int: ...


class Envelope(Protocol):
    """What an NB-IoT codec module offers beyond decode (nbiot_smoke is one)."""

    def header(self, payload: bytes) -> Header:
        """Raises CodecError when the datagram is not this codec's."""
        ...

    def ack(self, payload: bytes) -> bytes: ...


# NB-IoT codecs also say who sent a datagram (`header(payload).imei/.seq`) and how to ack it (`ack`),
# which the modem path needs before it knows the device. Decoding itself goes through CODECS.
ENVELOPES: dict[str, Envelope] = {nbiot_smoke.NAME: nbiot_smoke}
# UDP (and a platform relaying a backlog) can reorder: an unseen sequence this close below the newest is
# accepted as late, not suspected. Sensors send a few reports a day, so 16 covers any real reordering.
REORDER_WINDOW = 16


class Accepted(NamedTuple):
    device: Device
    items: list[Item]  # empty for a duplicate
    ack: bytes | None  # what to send back (also for a duplicate: the first ack may have been lost)
    duplicate: bool
    replay_suspect: bool = False  # items = the security event + the report's alarms, flagged


def _decoder(codec: str) -> Decode:
    from drivers.codecs.registry import CODECS

    return CODECS[codec]  # the profile schema only admits registered codec names


class Ingest:
    """`store` persists the sequence state (None: memory only). `dedupe_window_s` is kept for callers
    and has no effect: a retry is recognised by (device, sequence, content) however late it comes."""

    def __init__(self, devices: tuple[Device, ...], profiles: dict[str, Any], clock: Clock, dedupe_window_s: float = 600.0,
                 store: CounterStore | None = None, resync_frames: int = 3, resync_min_s: float = 60.0) -> None:
        self.clock = clock
        self.store = store or CounterStore(None, "nbiot", structlog.get_logger())
        self.guard = SequenceGuard(self.store, "nbiot", REORDER_WINDOW, resync_frames, resync_min_s)
        self.by_imei = {str(d.address): d for d in devices}
        self.by_id = {d.id: d for d in devices}
        self.codec_of = {d.id: profiles[d.profile].codec for d in devices if d.profile in profiles}
        self.ack_of = {d.id: profiles[d.profile].ack for d in devices if d.profile in profiles}
        self.counters: Counter[str] = Counter()

    def identify(self, payload: bytes) -> tuple[Device, Header]:
        """Which configured device sent this datagram (by the IMEI inside it). FrameError if none."""
        problems: list[str] = []
        for name in sorted(set(self.codec_of.values())):
            envelope = ENVELOPES.get(name)
            if envelope is None:
                continue
            try:
                h = envelope.header(payload)
            except CodecError as exc:
                problems.append(str(exc))
                continue
            device = self.by_imei.get(h.imei)
            if device is None:
                raise FrameError(f"datagram from unknown IMEI {h.imei}", payload)
            return device, h
        raise FrameError("no configured codec accepts this datagram: " + "; ".join(problems or ["no NB-IoT codec"]), payload)

    def accept(self, payload: bytes, via: str, *, device_id: str = "", imei: str = "", stamp: Stamp | None = None,
               rssi_dbm: int | None = None) -> Accepted:
        """Decode one report. Raises FrameError (unknown sender, mismatch) or CodecError (bad payload)."""
        device, h = self.identify(payload)
        if device_id and device_id != device.id:
            raise FrameError(f"report for {device_id} carries the IMEI of {device.id}", payload)
        if imei and imei != str(device.address):
            raise FrameError(f"report for IMEI {imei} carries IMEI {device.address}", payload)
        codec = self.codec_of[device.id]
        ack = ENVELOPES[codec].ack(payload) if self.ack_of.get(device.id, True) else None
        stamp = stamp or self.clock.now()
        items = _decoder(codec)(payload, CodecMeta(device.id, stamp, via, rssi_dbm=rssi_dbm))
        alarm = any(is_alarm(i) for i in items)
        digest = f"{zlib.crc32(payload):08x}"  # a retry repeats the datagram byte for byte
        check = self.guard.check(device.id, h.seq, digest, self.clock.monotonic(), urgent=alarm)
        if check.verdict is Verdict.DUPLICATE:
            self.counters["duplicates"] += 1
            return Accepted(device, [], ack, True)
        if check.verdict is Verdict.SUSPECT:
            # No MIC on this path: "authentic" means only "well-formed from a configured IMEI" (README).
            passed, dropped = screen(items, check.verdict)
            self.guard.note_screened(device.id, len(passed), dropped)
            self.counters["replay_suspects"] += 1
            return Accepted(device, [security_event(device.id, stamp, via, h.seq, check, bool(passed)), *passed], ack, False, True)
        if check.verdict is Verdict.RESYNC:
            self.counters["resyncs"] += 1
            items = [Event(device.id, EventKind.COUNTER_RESET, stamp, code="counter_reset", via=via,
                           detail={"seq": h.seq, "last_seq": -1 if check.last is None else check.last}), *items]
        self.counters["accepted"] += 1
        return Accepted(device, items, ack, False)
