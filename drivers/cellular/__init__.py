"""Cellular drivers: NB-IoT sensor reports (nbiot_bc95) and SMS (sms_ec200); registry specs in drivers.cellular.spec."""
