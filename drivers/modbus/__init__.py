"""Modbus RTU (RS-485) and Modbus TCP: the registry specs the daemon builds drivers from.

SPEC_RTU / SPEC_TCP are built on first access (module __getattr__): drivers.registry imports this
package while it is itself being imported, so importing the registry from here at the top would
be circular whenever a drivers.modbus module is imported first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SPEC_RTU", "SPEC_TCP"]


def _build_rtu(ctx):
    from drivers.modbus.driver import ModbusDriver

    return ModbusDriver(ctx, tcp=False)


def _build_tcp(ctx):
    from drivers.modbus.driver import ModbusDriver

    return ModbusDriver(ctx, tcp=True)


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'drivers.modbus' has no attribute {name!r}")
    from drivers.modbus.config import ModbusProfile, RtuPort, TcpPort, check_rtu_address, check_tcp_address
    from drivers.registry import DriverSpec

    common = dict(protocol="modbus", profile_schema=ModbusProfile, simulator="drivers.modbus.simulator", package="drivers.modbus")
    specs = {
        "SPEC_RTU": DriverSpec(name="modbus_rtu", port_schema=RtuPort, check_address=check_rtu_address, build=_build_rtu, **common),
        "SPEC_TCP": DriverSpec(name="modbus_tcp", port_schema=TcpPort, check_address=check_tcp_address, build=_build_tcp, **common),
    }
    globals().update(specs)
    return specs[name]
