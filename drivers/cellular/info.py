"""Parsers for the modem's status answers (CSQ, CEREG, CGATT, NUESTATS, CCLK, NSORF/NSONMI lines).

Pure functions: a line in, typed values out, FrameError when the modem sent something we cannot trust.
Formats from protocols.md §1.2 (BC95 AT manual V2.0; BC26 adds a space after the colon; both accepted).
"""

from __future__ import annotations

import calendar
import re
from typing import NamedTuple

from drivers.cellular.at import fields
from gateway.errors import FrameError

# 27.007 §10.1.22 +CEREG <stat>
CEREG_STAT = {0: "not_searching", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming"}
REGISTERED = frozenset({1, 5})
MAX_SOCKET = 6  # BC95: sockets 0-6 (protocols.md §1.2)
MAX_DATAGRAM = 1358  # BC95-G/BC28 PACKET_SIZE_MAX


def _ints(values: list[str], line: str) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise FrameError(f"non-numeric field in {line!r}", line.encode()[:64]) from None


def csq_dbm(line: str) -> tuple[int | None, int]:
    """+CSQ:<rssi>,<ber> -> (dBm or None when 99 = unknown, ber). rssi 0-31 -> -113 + 2*rssi dBm."""
    rssi, ber = _ints(fields(line, "+CSQ"), line)[:2]
    if rssi == 99:
        return None, ber
    if not 0 <= rssi <= 31:
        raise FrameError(f"CSQ rssi {rssi} out of 0..31", line.encode())
    return -113 + 2 * rssi, ber


def cereg_stat(line: str, urc: bool = False) -> int:
    """+CEREG:<n>,<stat>[,...] (answer to AT+CEREG?) or, as a URC, +CEREG:<stat>[,<tac>,<ci>,<AcT>]."""
    values = fields(line, "+CEREG")
    index = 0 if urc else 1
    if len(values) <= index:
        raise FrameError(f"no stat in {line!r}", line.encode())
    stat = _ints(values[index : index + 1], line)[0]
    if stat not in CEREG_STAT:
        raise FrameError(f"CEREG stat {stat} unknown", line.encode())
    return stat


def nuestats(lines: tuple[str, ...]) -> dict[str, int | str]:
    """`Signal power:-1063` lines (or `NUESTATS:RADIO,Signal power,-1063`) -> {"signal_power": -1063}."""
    out: dict[str, int | str] = {}
    for line in lines:
        if line.startswith("NUESTATS:"):
            parts = line.split(",")
            if len(parts) < 3:
                continue
            key, value = parts[1], parts[2]
        elif ":" in line:
            key, value = line.split(":", 1)
        else:
            continue
        key = re.sub(r"[^a-z0-9]+", "_", key.strip().lower()).strip("_")
        value = value.strip()
        out[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return out


_CCLK = re.compile(r"^(\d\d)/(\d\d)/(\d\d),(\d\d):(\d\d):(\d\d)([+-]\d+)?$")


def cclk_utc(line: str) -> float:
    """+CCLK:yy/MM/dd,hh:mm:ss+zz -> UTC seconds. BC95 reports UTC with the zone in quarter hours
    beside it (protocols.md §1.2); a module that reports local time is a per-model difference."""
    value = line.split(":", 1)[1].strip().strip('"') if ":" in line else ""
    m = _CCLK.match(value)
    if not m:
        raise FrameError(f"bad CCLK time {value!r}", line.encode())
    yy, mo, dd, hh, mi, ss = (int(g) for g in m.groups()[:6])
    if not (1 <= mo <= 12 and 1 <= dd <= 31 and hh < 24 and mi < 60 and ss < 61):
        raise FrameError(f"bad CCLK time {value!r}", line.encode())
    # Two-digit years pivot as POSIX %y does (69-99 -> 19yy): before NITZ a BC95 counts from the epoch
    # and answers 70/01/01, which is 1970 (refused by the caller), not 2070 (issue 16 golden cases).
    year = 1900 + yy if yy >= 69 else 2000 + yy
    return float(calendar.timegm((year, mo, dd, hh, mi, ss, 0, 0, 0)))


class Datagram(NamedTuple):
    socket: int
    ip: str
    port: int
    data: bytes
    remaining: int


def nsorf(line: str) -> Datagram:
    """`<s>,<ip>,<port>,<len>,<hex>,<remaining>` -> Datagram; FrameError on any inconsistency."""
    parts = line.split(",")
    if len(parts) != 6:
        raise FrameError(f"NSORF line has {len(parts)} fields, not 6", line.encode())
    s, ip, port_s, len_s, hexdata, rem_s = parts
    sock, port, length, remaining = _ints([s, port_s, len_s, rem_s], line)
    if not 0 <= sock <= MAX_SOCKET:
        raise FrameError(f"socket {sock} out of 0..{MAX_SOCKET}", line.encode())
    if not 0 < length <= MAX_DATAGRAM or len(hexdata) != 2 * length:
        raise FrameError(f"length {length} disagrees with {len(hexdata)} hex chars", line.encode())
    if not 1 <= port <= 65535 or remaining < 0:
        raise FrameError(f"bad port {port} or remaining {remaining}", line.encode())
    try:
        data = bytes.fromhex(hexdata)
    except ValueError:
        raise FrameError("payload is not hex", line.encode()[:64]) from None
    return Datagram(sock, ip, port, data, remaining)


def nsonmi(line: str) -> tuple[int, int]:
    """+NSONMI:<s>,<len> (mode 1) or +NSONMI:<s>,<ip>,<port>,<len>,<hex> (mode 2) -> (socket, len)."""
    values = fields(line, "+NSONMI")
    if len(values) == 2:
        sock, length = _ints(values, line)
    elif len(values) == 5:
        sock, length = _ints([values[0], values[3]], line)
    elif len(values) == 3:  # mode 3: <s>,<len>,<hex>
        sock, length = _ints(values[:2], line)
    else:
        raise FrameError(f"NSONMI with {len(values)} fields", line.encode())
    if not 0 <= sock <= MAX_SOCKET:
        raise FrameError(f"socket {sock} out of 0..{MAX_SOCKET}", line.encode())
    return sock, length
