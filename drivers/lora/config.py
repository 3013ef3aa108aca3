"""Typed config of the LoRa E22 driver: the [ports.X] section (driver = "lora_e22"), a profile's
[lora] table, and the device address check (our 32-bit device id, carried in every frame)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

# REG0 b2-0 air data rate: code -> bit/s, per firmware edition of Ebyte's user manual. The 2024 manual
# (E22-xxxT22S series, (c) 2012-2024, §7.2) reads 000, 001 and 010 all as 2.4k; the 2018 editions
# (E22-400T22S1C, E22-900T22D, (c) 2012-2018, §7.2) read 000 as 0.3k and 001 as 1.2k. 010..111 agree.
AIR_RATES_BY_EDITION: dict[str, dict[int, int]] = {
    "2024": {0: 2400, 1: 2400, 2: 2400, 3: 4800, 4: 9600, 5: 19200, 6: 38400, 7: 62500},
    "2018": {0: 300, 1: 1200, 2: 2400, 3: 4800, 4: 9600, 5: 19200, 6: 38400, 7: 62500},
}
AIR_RATES_BPS = AIR_RATES_BY_EDITION["2024"]
AMBIGUOUS_AIR_CODES = (0, 1)  # mean different rates in the two editions
AirRate = Literal[300, 1200, 2400, 4800, 9600, 19200, 38400, 62500]
# "auto": the manuals give no way to read the edition (PID 80H-86H is "product information, 7 bytes"
# without a layout), so auto refuses the ambiguous air-rate codes and reads RSSI the 2024 way.
Edition = Literal["auto", "2024", "2018"]
Gpio = Annotated[int, Meta(ge=0, le=4095)]


class LoraPort(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """[ports.X] driver = "lora_e22": one Ebyte E22 module on a UART, receiving in fixed-point mode.

    Use a stable path (/dev/ttyAMA1 for a Pi 4 PL011 uart2..5, or /dev/serial/by-path/...).
    """

    path: Annotated[str, Meta(min_length=1)]
    baud: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600  # REG0 b7-5, normal mode
    address: Annotated[int, Meta(ge=0, le=0xFFFF)] = 0xFFFF  # the module's ADDH:ADDL; FFFF hears every address
    channel: Annotated[int, Meta(ge=0, le=83)] = 23  # REG2: 410.125 + CH MHz (23 = 433.125 MHz)
    air_rate_bps: AirRate = 2400
    fixed_point: bool = True  # REG3 b6; must be on (the downlink addresses one sensor)
    rssi_byte: bool = True  # REG3 b7: one RSSI byte after every received packet
    sub_packet_bytes: Literal[240, 128, 64, 32] = 240  # REG1 b7-6
    # Mode pins and AUX as sysfs GPIO numbers (`gpio_root`/gpioN/value). Without M0/M1 the registers
    # cannot be read and verification is skipped (logged); the module must then be strapped to mode 00.
    # Without M0/M1: verify through the 2024 firmware's software mode switching (REG1 b4 must be on;
    # `C0 C1 C2 C3 02 <mode>` at the normal baud). Ignored when the pins are wired.
    software_mode_switch: bool = False
    m0_gpio: Gpio | None = None
    m1_gpio: Gpio | None = None
    aux_gpio: Gpio | None = None
    gpio_root: str = "/sys/class/gpio"
    # A frame never waits longer than this for its missing bytes: a 269-byte frame at 2.4 kbit/s is ~1.2 s on air.
    frame_timeout_s: Annotated[float, Meta(gt=0, le=30)] = 3.0
    # Downlinks: at least this long between two transmissions (a transmitting module hears nothing).
    downlink_interval_s: Annotated[float, Meta(ge=0, le=600)] = 2.0
    downlink_queue_max_s: Annotated[float, Meta(gt=0, le=600)] = 30.0  # refuse a command that would wait longer
    downlink_broadcast: bool = False  # send to FFFF instead of the sensor's module address (low 16 bits of its id)
    aux_timeout_s: Annotated[float, Meta(gt=0, le=10)] = 1.0
    # Firmware edition of the module (air-rate codes 000/001 and the RSSI byte differ): see AIR_RATES_BY_EDITION.
    e22_edition: Edition = "auto"
    # Re-sync after a sensor's counter restarts (battery change): this many strictly increasing frames
    # below the last accepted counter, spanning at least resync_min_s (drivers/sequence.py, README).
    resync_frames: Annotated[int, Meta(ge=2, le=100)] = 3
    resync_min_s: Annotated[float, Meta(ge=0, le=7 * 86400)] = 60.0
    # Deprecated, accepted so old configs still load, no effect: a counter above the last accepted one
    # is now always accepted (issue 15: a window and a quiet-time reset let one replay deafen a detector).
    replay_window: Annotated[int, Meta(ge=1, le=32767)] = 1000
    counter_reset_quiet_s: Annotated[float, Meta(ge=0, le=30 * 86400)] = 300.0
    reopen_cap_s: Annotated[float, Meta(gt=0, le=600)] = 30.0

    def __post_init__(self) -> None:
        if not self.fixed_point:
            raise ValueError("fixed_point must be true: the downlink addresses one sensor (ADDH ADDL CHAN frame)")
        if (self.m0_gpio is None) != (self.m1_gpio is None):
            raise ValueError("give both m0_gpio and m1_gpio (the mode needs both pins) or neither")
        if self.air_rate_bps < 2400 and self.e22_edition != "2018":
            raise ValueError(f"air_rate_bps = {self.air_rate_bps} exists only on 2018-edition E22 firmware: set e22_edition = \"2018\"")

    @property
    def air_rates(self) -> dict[int, int]:
        return AIR_RATES_BY_EDITION["2018" if self.e22_edition == "2018" else "2024"]


class LoraProfile(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A profile's [lora] table."""

    codec: Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,47}$")]  # name in drivers/codecs/registry.py
    keyed: bool = True  # AES-CMAC MIC with the device key from the credentials file; false: CRC-16 only
    encrypted: bool = False  # payload encrypted (needs keyed)
    downlink: list[Literal["silence", "acknowledge", "self_test"]] = []  # commands the sensor accepts

    def __post_init__(self) -> None:
        if self.encrypted and not self.keyed:
            raise ValueError("encrypted = true needs keyed = true (the payload key is the device key)")


def check_address(address: Any) -> str | None:
    """A LoRa device's address is its 32-bit id in our frame (printed on its label, hex or decimal)."""
    if isinstance(address, bool) or not isinstance(address, int):
        return f"{address!r} is not a LoRa device id: give the 32-bit id from the sensor label as an integer (e.g. 0x1A2B3C4D)"
    if not 1 <= address <= 0xFFFFFFFE:
        return f"{address!r} is not a LoRa device id (1..0xFFFFFFFE; 0 and 0xFFFFFFFF are reserved)"
    return None
