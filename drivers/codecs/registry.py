"""Codec registry: profile `codec = "<name>"` -> decode function. Explicit, one line per codec."""

from __future__ import annotations

from drivers.codecs import Decode, gas, manhole, milesight, nbiot_smoke, smoke, water_flow

CODECS: dict[str, Decode] = {
    "smoke_v1": smoke.decode,
    "gas_v1": gas.decode,
    "water_flow_v1": water_flow.decode,
    "manhole_v1": manhole.decode,
    "nbiot_smoke_v1": nbiot_smoke.decode,
    "milesight_ws101": milesight.decode_ws101,  # SOS button (issue 22)
    "milesight_ws301": milesight.decode_ws301,  # door contact
    "milesight_em300di": milesight.decode_em300di,  # water meter pulse counter
}
