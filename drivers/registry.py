"""The explicit registry of drivers: a dict, no entry points, no import scanning.

Each entry names the port schema it validates, the profile section it reads, how a device
address is checked, how the driver is built and where its simulator lives. A convention test
(tests/unit/test_registry_conventions.py) checks every entry has a simulator, a README and an
example config section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.base import Driver, DriverContext


@dataclass(frozen=True)
class DriverSpec:
    name: str  # the value of `driver =` in a [ports.<name>] section
    protocol: str  # the `protocol =` of the device profiles it can serve
    port_schema: type  # msgspec Struct for the port section (without `driver`)
    profile_schema: type | None  # msgspec Struct for a profile's [<protocol>] table, or None
    check_address: Callable[[Any], str | None]  # None when valid, else "300 is not a Modbus slave id (1..247)"
    build: Callable[[DriverContext], Driver]
    simulator: str  # module path of the simulator, e.g. "drivers.modbus.simulator"
    package: str  # the driver's package; its README.md documents wiring, config and faults


def _builtin() -> dict[str, DriverSpec]:
    # Imported here, not at module top: each driver package imports DriverSpec from this module.
    from drivers import cellular, lora, modbus

    return {
        "modbus_rtu": modbus.SPEC_RTU,
        "modbus_tcp": modbus.SPEC_TCP,
        "lora_e22": lora.SPEC,
        "nbiot_bc95": cellular.SPEC_NBIOT,
        "sms_ec200": cellular.SPEC_SMS,
        "lorawan_gwmp": __import__("drivers.lorawan", fromlist=["SPEC"]).SPEC,  # self-contained: one line to merge
    }


DRIVERS: dict[str, DriverSpec] = {}
DRIVERS.update(_builtin())
