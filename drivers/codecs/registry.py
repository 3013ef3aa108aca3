"""Codec registry: profile `codec = "<name>"` -> decode function. Explicit, one line per codec."""

from __future__ import annotations

from drivers.codecs import Decode, gas, manhole, nbiot_smoke, smoke, water_flow

CODECS: dict[str, Decode] = {
    "smoke_v1": smoke.decode,
    "gas_v1": gas.decode,
    "water_flow_v1": water_flow.decode,
    "manhole_v1": manhole.decode,
    "nbiot_smoke_v1": nbiot_smoke.decode,
}
