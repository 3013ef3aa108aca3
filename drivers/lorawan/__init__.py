"""LoRaWAN through an SX1302 concentrator's packet forwarder (GWMP over UDP) and an embedded network
server: the registry spec the daemon builds the driver from.

SPEC is built on first access (module __getattr__), as in drivers.lora: drivers.registry imports this
package while it is itself being imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SPEC"]


def _build(ctx):
    from drivers.lorawan.driver import LorawanDriver

    return LorawanDriver(ctx)


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'drivers.lorawan' has no attribute {name!r}")
    from drivers.lorawan.config import LorawanPort, LorawanProfile, check_address
    from drivers.registry import DriverSpec

    spec = DriverSpec(name="lorawan_gwmp", protocol="lorawan", port_schema=LorawanPort, profile_schema=LorawanProfile,
                      check_address=check_address, build=_build, simulator="drivers.lorawan.simulator",
                      package="drivers.lorawan")
    globals()["SPEC"] = spec
    return spec
