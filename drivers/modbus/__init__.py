"""Modbus RTU (RS-485) and Modbus TCP driver; registry specs in drivers.modbus.spec."""
