"""LoRa through an Ebyte E22 UART module: the registry spec the daemon builds the driver from.

SPEC is built on first access (module __getattr__), as in drivers.modbus: drivers.registry imports
this package while it is itself being imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SPEC"]


def _build(ctx):
    from drivers.lora.driver import LoraDriver

    return LoraDriver(ctx)


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'drivers.lora' has no attribute {name!r}")
    from drivers.lora.config import LoraPort, LoraProfile, check_address
    from drivers.registry import DriverSpec

    spec = DriverSpec(name="lora_e22", protocol="lora", port_schema=LoraPort, profile_schema=LoraProfile,
                      check_address=check_address, build=_build, simulator="drivers.lora.simulator", package="drivers.lora")
    globals()["SPEC"] = spec
    return spec
