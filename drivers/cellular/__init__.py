"""Cellular drivers: NB-IoT sensor reports through a BC95/BC28 modem (nbiot_bc95), SMS through an LTE Cat-1
module (sms_ec200). The registry specs are built on first access, as in drivers.modbus (import cycle)."""

from __future__ import annotations

from typing import Any

__all__ = ["SPEC_NBIOT", "SPEC_SMS"]


def _build_nbiot(ctx):
    from drivers.cellular.nbiot import NbiotDriver

    return NbiotDriver(ctx)


def _build_sms(ctx):
    from drivers.cellular.sms import SmsDriver

    return SmsDriver(ctx)


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'drivers.cellular' has no attribute {name!r}")
    from drivers.cellular.config import NbiotPort, NbiotProfile, SmsPort, check_imei, check_no_device
    from drivers.registry import DriverSpec

    common = dict(simulator="drivers.cellular.simulator", package="drivers.cellular")
    specs = {
        "SPEC_NBIOT": DriverSpec(name="nbiot_bc95", protocol="nbiot", port_schema=NbiotPort, profile_schema=NbiotProfile,
                                 check_address=check_imei, build=_build_nbiot, **common),
        "SPEC_SMS": DriverSpec(name="sms_ec200", protocol="sms", port_schema=SmsPort, profile_schema=None,
                               check_address=check_no_device, build=_build_sms, **common),
    }
    globals().update(specs)
    return specs[name]
