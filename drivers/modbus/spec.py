"""Modbus RTU (RS-485) and Modbus TCP: the registry specs the daemon builds drivers from."""

from __future__ import annotations

from drivers.base import DriverContext, DriverSpec
from drivers.modbus.config import ModbusProfile, RtuPort, TcpPort, check_rtu_address, check_tcp_address
from drivers.modbus.driver import ModbusDriver


def _build_rtu(ctx: DriverContext) -> ModbusDriver:
    return ModbusDriver(ctx, tcp=False)


def _build_tcp(ctx: DriverContext) -> ModbusDriver:
    return ModbusDriver(ctx, tcp=True)


SPEC_RTU = DriverSpec(
    name="modbus_rtu", protocol="modbus", port_schema=RtuPort, profile_schema=ModbusProfile,
    check_address=check_rtu_address, build=_build_rtu, simulator="drivers.modbus.simulator", package="drivers.modbus",
)
SPEC_TCP = DriverSpec(
    name="modbus_tcp", protocol="modbus", port_schema=TcpPort, profile_schema=ModbusProfile,
    check_address=check_tcp_address, build=_build_tcp, simulator="drivers.modbus.simulator", package="drivers.modbus",
)
