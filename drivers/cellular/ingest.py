"""One ingestion path for NB-IoT sensor reports, whichever way they came (modem socket or platform relay):
find the device by IMEI, decode with the profile's codec, de-duplicate sensor retries by (device, sequence).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from types import ModuleType
from typing import Any, NamedTuple

from drivers.codecs import CodecMeta
from drivers.codecs import nbiot_smoke
from gateway.errors import CodecError, FrameError
from gateway.model import Device, Item, Stamp

# NB-IoT codecs also say who sent a datagram (`header(payload).imei/.seq`) and how to ack it (`ack`),
# which the modem path needs before it knows the device. Decoding itself goes through CODECS.
ENVELOPES: dict[str, ModuleType] = {nbiot_smoke.NAME: nbiot_smoke}
MAX_REMEMBERED = 20_000  # (device, seq) pairs kept for de-dup; a courtyard has tens of detectors


class Accepted(NamedTuple):
    device: Device
    items: list[Item]  # empty for a duplicate
    ack: bytes | None  # what to send back (also for a duplicate: the first ack may have been lost)
    duplicate: bool


def _decoder(codec: str):
    from drivers.codecs.registry import CODECS

    return CODECS[codec]  # the profile schema only admits registered codec names


class Ingest:
    def __init__(self, devices: tuple[Device, ...], profiles: dict[str, Any], clock, dedupe_window_s: float = 600.0) -> None:
        self.clock = clock
        self.window_ns = int(dedupe_window_s * 1e9)
        self.by_imei = {str(d.address): d for d in devices}
        self.by_id = {d.id: d for d in devices}
        self.codec_of = {d.id: profiles[d.profile].codec for d in devices if d.profile in profiles}
        self.ack_of = {d.id: profiles[d.profile].ack for d in devices if d.profile in profiles}
        self.counters: Counter = Counter()
        self._seen: OrderedDict[tuple[str, int], int] = OrderedDict()

    def identify(self, payload: bytes) -> tuple[Device, Any]:
        """Which configured device sent this datagram (by the IMEI inside it). FrameError if none."""
        problems = []
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
        if self._duplicate(device.id, h.seq):
            self.counters["duplicates"] += 1
            return Accepted(device, [], ack, True)
        meta = CodecMeta(device.id, stamp or self.clock.now(), via, rssi_dbm=rssi_dbm)
        items = _decoder(codec)(payload, meta)
        self._remember(device.id, h.seq)
        self.counters["accepted"] += 1
        return Accepted(device, items, ack, False)

    def _duplicate(self, device_id: str, seq: int) -> bool:
        seen = self._seen.get((device_id, seq))
        return seen is not None and self.clock.monotonic_ns() - seen < self.window_ns

    def _remember(self, device_id: str, seq: int) -> None:
        key = (device_id, seq)
        self._seen[key] = self.clock.monotonic_ns()
        self._seen.move_to_end(key)
        while len(self._seen) > MAX_REMEMBERED:
            self._seen.popitem(last=False)
