"""Modbus RTU (RS-485) and Modbus TCP: the registry specs the daemon builds drivers from."""

from __future__ import annotations

from drivers.base import DriverSpec, lazy_build
from drivers.modbus.config import ModbusProfile, RtuPort, TcpPort, check_rtu_address, check_tcp_address

SPEC_RTU = DriverSpec(
    name="modbus_rtu", protocol="modbus", port_schema=RtuPort, profile_schema=ModbusProfile,
    check_address=check_rtu_address, build=lazy_build("drivers.modbus.driver:ModbusDriver", tcp=False),
    simulator="drivers.modbus.simulator", package="drivers.modbus",
)
SPEC_TCP = DriverSpec(
    name="modbus_tcp", protocol="modbus", port_schema=TcpPort, profile_schema=ModbusProfile,
    check_address=check_tcp_address, build=lazy_build("drivers.modbus.driver:ModbusDriver", tcp=True),
    simulator="drivers.modbus.simulator", package="drivers.modbus",
)
