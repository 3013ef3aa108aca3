"""Cellular drivers: NB-IoT sensor reports through a BC95/BC28 modem (nbiot_bc95), SMS through an LTE Cat-1
module (sms_ec200). The registry specs the daemon builds them from."""

from __future__ import annotations

from drivers.base import DriverSpec
from drivers.cellular.config import NbiotPort, NbiotProfile, SmsPort, check_imei, check_no_device
from drivers.cellular.nbiot import NbiotDriver
from drivers.cellular.sms import SmsDriver

SPEC_NBIOT = DriverSpec(
    name="nbiot_bc95", protocol="nbiot", port_schema=NbiotPort, profile_schema=NbiotProfile,
    check_address=check_imei, build=NbiotDriver, simulator="drivers.cellular.simulator", package="drivers.cellular",
)
SPEC_SMS = DriverSpec(
    name="sms_ec200", protocol="sms", port_schema=SmsPort, profile_schema=None,
    check_address=check_no_device, build=SmsDriver, simulator="drivers.cellular.simulator", package="drivers.cellular",
)
