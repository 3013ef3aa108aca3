"""The explicit registry of drivers: a dict, no entry points, no import scanning.

Each entry names the port schema it validates, the profile section it reads, how a device
address is checked, how the driver is built and where its simulator lives; each driver package
defines its entries in its own `spec.py`. A convention test (tests/unit/test_registry_conventions.py)
checks every entry has a simulator, a README and an example config section.
"""

from __future__ import annotations

from drivers.base import DriverSpec
from drivers.cellular.spec import SPEC_NBIOT, SPEC_SMS
from drivers.lora.spec import SPEC_LORA
from drivers.lorawan.spec import SPEC_LORAWAN
from drivers.modbus.spec import SPEC_RTU, SPEC_TCP

__all__ = ["DRIVERS", "DriverSpec"]

DRIVERS: dict[str, DriverSpec] = {
    "modbus_rtu": SPEC_RTU,
    "modbus_tcp": SPEC_TCP,
    "lora_e22": SPEC_LORA,
    "nbiot_bc95": SPEC_NBIOT,
    "sms_ec200": SPEC_SMS,
    "lorawan_gwmp": SPEC_LORAWAN,
}
