"""SMS-SUBMIT PDUs in UCS2 (3GPP TS 23.040 §9.2.2.2), concatenated with the 6-octet UDH, and their decoding
(for the simulator's record). Sans-IO, checked against the vectors of protocols.md §1.5.

Why not python-gsmmodem-new: last release 2021-11, LGPL-3.0+, and its PDU module is tied to a threaded
modem class; the part we need is ~100 lines and has exact public vectors (tests/unit/test_cellular_pdu.py).
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.errors import CommandRejected

SINGLE_UNITS = 70  # 140 octets / 2 (23.040 §9.2.3.24: 140-octet user data)
PART_UNITS = 67  # (140 - 6-octet UDH) / 2
MAX_PARTS = 255
DCS_UCS2 = 0x08  # 23.038 §4: general data coding, UCS2, no message class


class Pdu(NamedTuple):
    hex: str  # the whole PDU as sent after the prompt, starting with the SCA octet 00
    tpdu_octets: int  # the number given to AT+CMGS=<n> (27.005 §3.5.1: SCA excluded)


class Decoded(NamedTuple):
    number: str
    text: str
    validity: int | None
    concat: tuple[int, int, int] | None  # (reference, total, sequence)


def vp_relative(hours: float) -> int:
    """TP-VP relative format (23.040 §9.2.3.12.1): 96 h -> 0xAA (4 days)."""
    minutes = hours * 60
    if minutes <= 720:
        return max(0, round(minutes / 5) - 1)
    if minutes <= 1440:
        return 143 + round((minutes - 720) / 30)
    days = hours / 24
    if days <= 30:
        return 166 + round(days)
    return min(255, 192 + round(days / 7))


def _address(number: str) -> bytes:
    digits = number[1:] if number.startswith("+") else number
    if not digits.isdigit() or not 1 <= len(digits) <= 20:
        raise CommandRejected("bad_number", f"{number!r} is not a phone number (+ and 1..20 digits)")
    toa = 0x91 if number.startswith("+") else 0x81  # 23.040 §9.1.2.5: international / unknown, ISDN plan
    padded = digits + ("F" if len(digits) % 2 else "")
    swapped = "".join(padded[i + 1] + padded[i] for i in range(0, len(padded), 2))
    return bytes([len(digits), toa]) + bytes.fromhex(swapped)


def _units(text: str) -> list[bytes]:
    """UTF-16 code units; a character outside the BMP is a surrogate pair (two units)."""
    data = text.encode("utf-16-be")
    return [data[i : i + 2] for i in range(0, len(data), 2)]


def _split(units: list[bytes]) -> list[bytes]:
    if len(units) <= SINGLE_UNITS:
        return [b"".join(units)]
    parts, i = [], 0
    while i < len(units):
        end = min(i + PART_UNITS, len(units))
        if end < len(units) and 0xD8 <= units[end - 1][0] <= 0xDB:
            end -= 1  # never split a surrogate pair across two parts
        parts.append(b"".join(units[i:end]))
        i = end
    return parts


def encode_submit(number: str, text: str, validity: int | None = 0xAA, reference: int = 0) -> list[Pdu]:
    """One PDU for up to 70 UCS2 units, else parts of 67 with UDH 05 00 03 <ref> <total> <seq>."""
    if not text:
        raise CommandRejected("empty_text", "an SMS needs text")
    bodies = _split(_units(text))
    if len(bodies) > MAX_PARTS:
        raise CommandRejected("text_too_long", f"{len(text)} characters need more than {MAX_PARTS} parts")
    da = _address(number)
    out = []
    for seq, body in enumerate(bodies, 1):
        concat = len(bodies) > 1
        # TP-MTI=01 SMS-SUBMIT; TP-VPF=10 relative (0x10); TP-UDHI (0x40) when a header leads the data.
        first = 0x01 | (0x10 if validity is not None else 0) | (0x40 if concat else 0)
        udh = bytes([5, 0x00, 3, reference & 0xFF, len(bodies), seq]) if concat else b""
        ud = udh + body
        tpdu = bytes([first, 0x00]) + da + bytes([0x00, DCS_UCS2])
        tpdu += bytes([validity]) if validity is not None else b""
        tpdu += bytes([len(ud)]) + ud
        out.append(Pdu(("00" + tpdu.hex()).upper(), len(tpdu)))
    return out


def decode_submit(pdu_hex: str) -> Decoded:
    """The simulator's view of what the gateway asked the module to send. Raises ValueError."""
    data = bytes.fromhex(pdu_hex)
    i = 1 + data[0]  # skip the SCA
    first = data[i]
    if first & 0x03 != 0x01:
        raise ValueError(f"first octet {first:02x} is not an SMS-SUBMIT")
    n_digits, toa = data[i + 2], data[i + 3]
    n_octets = (n_digits + 1) // 2
    swapped = data[i + 4 : i + 4 + n_octets].hex().upper()
    digits = "".join(swapped[k + 1] + swapped[k] for k in range(0, len(swapped), 2))[:n_digits]
    i += 4 + n_octets
    if data[i + 1] != DCS_UCS2:
        raise ValueError(f"DCS {data[i + 1]:02x} is not UCS2")
    i += 2
    validity = None
    if first & 0x18 == 0x10:
        validity, i = data[i], i + 1
    udl, ud = data[i], data[i + 1 :]
    if len(ud) != udl:
        raise ValueError(f"UDL {udl} but {len(ud)} octets of user data")
    concat = None
    if first & 0x40:
        hl = ud[0]
        if hl >= 5 and ud[1] == 0x00 and ud[2] == 3:
            concat = (ud[3], ud[4], ud[5])
        ud = ud[1 + hl :]
    number = ("+" if toa == 0x91 else "") + digits
    return Decoded(number, ud.decode("utf-16-be"), validity, concat)
