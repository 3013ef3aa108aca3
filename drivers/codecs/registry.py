"""Codec registry: profile `codec = "<name>"` -> decode function. Explicit, one line per codec."""

from __future__ import annotations

from drivers.codecs import Decode, gas, manhole, nbiot_smoke, smoke, water_flow
from drivers.codecs import milesight_care, milesight_gs101, milesight_gs524n, milesight_leak, milesight_ws301

CODECS: dict[str, Decode] = {
    "smoke_v1": smoke.decode,
    "gas_v1": gas.decode,
    "water_flow_v1": water_flow.decode,
    "manhole_v1": manhole.decode,
    "nbiot_smoke_v1": nbiot_smoke.decode,
    # LoRaWAN products, from the vendors' published payload descriptions (drivers/lorawan/README.md)
    "milesight_gs524n": milesight_gs524n.decode,
    "milesight_gs101": milesight_gs101.decode,
    "milesight_ws303": milesight_leak.decode_ws303,
    "milesight_em300_sld": milesight_leak.decode_em300_sld,
    "milesight_ws301": milesight_ws301.decode,
    # Care for residents living alone (issue 22): SOS button, water meter pulses (the door uses milesight_ws301)
    "milesight_ws101": milesight_care.decode_ws101,
    "milesight_em300di": milesight_care.decode_em300di,
}
