"""LoRaWAN through an SX1302 concentrator's packet forwarder (GWMP over UDP) and an embedded network server:
the registry spec the daemon builds the driver from."""

from __future__ import annotations

from drivers.base import DriverSpec, lazy_build
from drivers.lorawan.config import LorawanPort, LorawanProfile, check_address

SPEC_LORAWAN = DriverSpec(
    name="lorawan_gwmp", protocol="lorawan", port_schema=LorawanPort, profile_schema=LorawanProfile,
    check_address=check_address, build=lazy_build("drivers.lorawan.driver:LorawanDriver"), simulator="drivers.lorawan.simulator", package="drivers.lorawan",
)
