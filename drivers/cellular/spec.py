"""Cellular drivers: NB-IoT sensor reports through a BC95/BC28 modem (nbiot_bc95), SMS through an LTE Cat-1
module (sms_ec200). The registry specs the daemon builds them from."""

from __future__ import annotations

from drivers.base import DriverSpec, lazy_build
from drivers.cellular.config import NbiotPort, NbiotProfile, SmsPort, check_imei, check_no_device

SPEC_NBIOT = DriverSpec(
    name="nbiot_bc95", protocol="nbiot", port_schema=NbiotPort, profile_schema=NbiotProfile,
    check_address=check_imei, build=lazy_build("drivers.cellular.nbiot:NbiotDriver"), simulator="drivers.cellular.simulator", package="drivers.cellular",
)
SPEC_SMS = DriverSpec(
    name="sms_ec200", protocol="sms", port_schema=SmsPort, profile_schema=None,
    check_address=check_no_device, build=lazy_build("drivers.cellular.sms:SmsDriver"), simulator="drivers.cellular.simulator", package="drivers.cellular",
)
