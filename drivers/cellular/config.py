"""Typed config of the cellular drivers: [ports.X] for the NB-IoT modem (nbiot_bc95) and the SMS module
(sms_ec200), a profile's [nbiot] table, and the device-address checks (IMEI with its Luhn digit)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from drivers.cellular.commands import Timeouts

Baud = Literal[4800, 9600, 19200, 38400, 57600, 115200]
Path = Annotated[str, Meta(min_length=1)]


class NbiotPort(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """[ports.X] driver = "nbiot_bc95": a Quectel BC95/BC28 ("nso") or BC26/BC260Y ("qi") on a UART.

    Receiving sensor datagrams on the gateway's own modem needs a private APN / VPDN that routes between
    terminals (protocols.md §1.1); the APN is provisioned on the SIM by the operator, not set here.
    """

    # "modem": the gateway's own modem receives the sensors' UDP datagrams (private APN / VPDN);
    # "relay": no modem, the street platform relays the reports over MQTT (the common case).
    mode: Literal["modem", "relay"] = "modem"
    path: str = ""  # /dev/ttyAMA1 (Pi 4 uart2 overlay) or /dev/serial/by-path/... for a USB adapter
    baud: Baud = 9600  # BC95 default
    dialect: Literal["nso"] = "nso"  # "qi" (BC26/BC260Y) is not implemented yet
    listen_port: Annotated[int, Meta(ge=1, le=65535)] = 5683  # UDP port the sensors send to
    bands: tuple[Annotated[int, Meta(ge=1, le=85)], ...] = (5, 8)  # B5 China Telecom, B8 Mobile/Unicom
    nsonmi_mode: Literal[1, 2] = 1  # 1: "+NSONMI:<s>,<len>" then NSORF (data never in a URC)
    apn_note: Annotated[str, Meta(max_length=200)] = ""  # for humans: which VPDN / contract this is
    ack_within_s: Annotated[float, Meta(gt=0, le=30)] = 2.0  # sensors wait a few seconds (§1.1)
    dedupe_window_s: Annotated[float, Meta(gt=0, le=86400)] = 600.0  # how long a (device, seq) is remembered
    query_timeout_s: Annotated[float, Meta(gt=0, le=10)] = 0.3
    slow_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 10.0
    attach_timeout_s: Annotated[float, Meta(gt=0, le=3600)] = 180.0  # registration takes 10-60 s typical
    status_interval_s: Annotated[float, Meta(ge=5, le=3600)] = 60.0  # CSQ / CEREG / NUESTATS poll
    reopen_cap_s: Annotated[float, Meta(gt=0, le=600)] = 30.0

    def __post_init__(self) -> None:
        if self.mode == "modem" and not self.path:
            raise ValueError('mode "modem" needs path = "/dev/..." (the modem\'s UART)')

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(query_s=self.query_timeout_s, slow_s=self.slow_timeout_s)


class SmsPort(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """[ports.X] driver = "sms_ec200": an LTE Cat-1 module (Quectel EC200 class) for SMS. No devices."""

    path: Path  # the module's AT port, e.g. /dev/serial/by-id/usb-Quectel_EC200..-if02-port0
    baud: Baud = 115200
    validity_h: Annotated[float, Meta(ge=1, le=24 * 63)] = 96.0  # TP-VP; 96 h = 0xAA (23.040 §9.2.3.12.1)
    per_recipient_min_interval_s: Annotated[float, Meta(ge=0, le=3600)] = 10.0
    per_recipient_max_per_hour: Annotated[int, Meta(ge=1, le=1000)] = 30
    global_max_per_minute: Annotated[int, Meta(ge=1, le=60)] = 10  # operators flag bursts as spam
    queue_max: Annotated[int, Meta(ge=1, le=1000)] = 100
    query_timeout_s: Annotated[float, Meta(gt=0, le=10)] = 0.3
    slow_timeout_s: Annotated[float, Meta(gt=0, le=60)] = 10.0
    send_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 120.0  # CMGS maximum response time
    status_interval_s: Annotated[float, Meta(ge=5, le=3600)] = 60.0
    reopen_cap_s: Annotated[float, Meta(gt=0, le=600)] = 30.0

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts(query_s=self.query_timeout_s, slow_s=self.slow_timeout_s, sms_s=self.send_timeout_s)


class NbiotProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A profile's [nbiot] table."""

    codec: str  # a CODECS name, e.g. "nbiot_smoke_v1"
    ack: bool = True  # the sensor waits for an application ack and retries without one


def luhn_digit(digits14: str) -> int:
    """IMEI check digit (3GPP TS 23.003 Annex B: Luhn over the first 14 digits)."""
    total = 0
    for i, ch in enumerate(reversed(digits14)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


def check_imei(address: Any) -> str | None:
    if isinstance(address, int) and not isinstance(address, bool):
        return f"{address!r} must be a quoted string: address = \"{address}\" (an IMEI is 15 digits)"
    if not isinstance(address, str) or len(address) != 15 or not address.isdigit():
        return f"{address!r} is not an IMEI (15 digits, printed on the detector's label and box)"
    expected = luhn_digit(address[:14])
    if int(address[14]) != expected:
        return f"{address!r} fails the IMEI check digit (expected last digit {expected}): a typo?"
    return None


def check_no_device(address: Any) -> str | None:
    return "the SMS module port serves no devices; remove the device or put it on its own port"
