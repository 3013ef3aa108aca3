"""Sensor payload codecs: pure functions `decode(payload, meta) -> list[Reading | Event]`.

A codec raises only gateway.errors.CodecError. Each is registered in drivers/codecs/registry.py
under its name (the profile's `codec = "..."`). LoRa and NB-IoT share codecs where the fields are the same.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from gateway.model import Item, Stamp


class CodecMeta(msgspec.Struct, frozen=True):
    """What the transport knows about a payload: who sent it, when it arrived, by which path."""

    device_id: str
    stamp: Stamp
    via: str  # "lora", "nbiot-modem", "platform-relay"
    rssi_dbm: int | None = None
    snr_db: float | None = None


Decode = Callable[[bytes, CodecMeta], list[Item]]
