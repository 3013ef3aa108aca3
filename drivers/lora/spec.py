"""LoRa through an Ebyte E22 UART module: the registry spec the daemon builds the driver from."""

from __future__ import annotations

from drivers.base import DriverSpec, lazy_build
from drivers.lora.config import LoraPort, LoraProfile, check_address

SPEC_LORA = DriverSpec(
    name="lora_e22", protocol="lora", port_schema=LoraPort, profile_schema=LoraProfile,
    check_address=check_address, build=lazy_build("drivers.lora.driver:LoraDriver"), simulator="drivers.lora.simulator", package="drivers.lora",
)
