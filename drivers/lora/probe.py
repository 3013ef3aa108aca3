"""Installer probe `gateway lora listen PORT`: every frame heard, with its RSSI, as it arrives
(daemon stopped). Without keys a keyed frame is shown unverified: it proves range, not identity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from drivers.lora.frame import Deframer, Frame


async def listen(port: str, baud: int = 9600, keys: Mapping[int, bytes | None] | None = None, rssi: bool = True,
                 sub_packet: int = 240, edition: str = "2024") -> AsyncIterator[dict[str, Any]]:
    """Yield {device_id, fcnt, type, rssi_dbm, verified, encrypted, payload} per frame until cancelled.
    `edition`: the module's firmware edition ("2018" prints RSSI as -value/2; see README)."""
    import serial_asyncio_fast

    reader, writer = await serial_asyncio_fast.open_serial_connection(url=port, baudrate=baud)
    deframer = Deframer(keys or {}, rssi=rssi, sub_packet=sub_packet, listen=True, edition=edition)
    try:
        while True:
            try:
                async with asyncio.timeout(3.0):
                    data = await reader.read(512)
            except TimeoutError:
                data, items = b"", deframer.expire()  # quiet line: a partial frame will not complete
            else:
                if not data:
                    return  # port closed (unplugged)
                items = deframer.feed(data)
            for item in items:
                if isinstance(item, Frame):
                    yield {"device_id": f"{item.device_id:#010x}", "address": item.device_id, "fcnt": item.fcnt,
                           "type": item.type.name.lower(), "rssi_dbm": item.rssi_dbm, "verified": item.verified,
                           "encrypted": item.encrypted, "payload": item.payload.hex() if not item.encrypted or keys else ""}
    finally:
        writer.close()
