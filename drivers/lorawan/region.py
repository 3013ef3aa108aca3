"""Regional parameters the embedded network server needs for class A: data rates, RX1 frequency and
data rate from the uplink, RX2 defaults, downlink power and the JoinAccept CFList.

Source: LoRaWAN Regional Parameters v1.0.2rB (matching LoRaWAN 1.0.2 devices): §2.2 EU863-870,
§2.6 CN470-510. Only the LoRa 125 kHz rates the courtyard sensors use are listed; other rates are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import FrameError

# LoRaWAN 1.0.2 §7 class A timing: RECEIVE_DELAY1 1 s (RX2 one second later), JOIN_ACCEPT_DELAY1 5 s / 2 6 s.
RECEIVE_DELAY1_US = 1_000_000
JOIN_ACCEPT_DELAY1_US = 5_000_000
RX2_EXTRA_US = 1_000_000


@dataclass(frozen=True)
class Region:
    name: str
    data_rates: tuple[str, ...]  # DR index -> GWMP datr
    rx2_freq_mhz: float
    rx2_dr: int
    downlink_power_dbm: int
    max_rx1_dr_offset: int

    def dr_of(self, datr: str) -> int:
        try:
            return self.data_rates.index(datr)
        except ValueError:
            raise FrameError(f"datr_not_in_{self.name}", datr.encode()[:32]) from None

    def rx1_dr(self, uplink_dr: int, offset: int) -> int:
        # EU868 §2.2.7 and CN470 §2.6.7 tables: RX1 DR = max(0, uplink DR - RX1DROffset).
        return max(0, uplink_dr - offset)

    def rx1_freq_mhz(self, uplink_freq_mhz: float, uplink_chan: int) -> float:
        raise NotImplementedError

    def cflist(self) -> bytes:
        return b""


@dataclass(frozen=True)
class EU868(Region):
    # §2.2.3: three default channels; the gateway's usual extra five go in the CFList (§2.2.4).
    extra_channels_mhz: tuple[float, ...] = (867.1, 867.3, 867.5, 867.7, 867.9)

    def rx1_freq_mhz(self, uplink_freq_mhz: float, uplink_chan: int) -> float:
        return uplink_freq_mhz  # §2.2.7: RX1 uses the uplink channel's frequency

    def cflist(self) -> bytes:
        # §2.2.4: five frequencies, 24 bits each in units of 100 Hz, little endian, then CFListType 0.
        out = b"".join(round(f * 10_000).to_bytes(3, "little") for f in self.extra_channels_mhz)
        return out + b"\x00"


@dataclass(frozen=True)
class CN470(Region):
    def rx1_freq_mhz(self, uplink_freq_mhz: float, uplink_chan: int) -> float:
        # §2.6.2: 96 uplink channels 470.3 + 0.2 n MHz, 48 downlink channels 500.3 + 0.2 m MHz,
        # §2.6.7: RX1 downlink channel = uplink channel modulo 48. The uplink channel number comes from
        # the frequency, not the forwarder's `chan` (that is the concentrator's IF chain).
        n = round((uplink_freq_mhz - 470.3) / 0.2)
        if not 0 <= n < 96:
            raise FrameError("freq_not_in_CN470", f"{uplink_freq_mhz}".encode())
        return round(500.3 + 0.2 * (n % 48), 1)

    # §2.6.4 (v1.0.2rB): "The CN470-510 LoRaWAN does not support the use of the optional CFlist appended
    # to the JoinAccept message": cflist() stays empty.


_LORA_125 = ("SF12BW125", "SF11BW125", "SF10BW125", "SF9BW125", "SF8BW125", "SF7BW125")
REGIONS: dict[str, Region] = {
    # EU868 §2.2.7: RX2 869.525 MHz DR0; downlink 14 dBm (default max EIRP 16 dBm, 27 dBm only in g3 at 10 %).
    "EU868": EU868("EU868", _LORA_125 + ("SF7BW250",), 869.525, 0, 14, 5),
    # CN470 §2.6.7: RX2 505.3 MHz DR0; max EIRP 19.15 dBm: 17 dBm conducted leaves antenna gain margin.
    "CN470": CN470("CN470", _LORA_125, 505.3, 0, 17, 5),
}
