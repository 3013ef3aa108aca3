"""What we know about a modem (SIM, registration, signal, identities, network time) and the queries that
refresh it. Shared by the NB-IoT driver, the SMS driver and `gateway modem info`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from drivers.cellular import info
from drivers.cellular.at import fields
from drivers.cellular.channel import AtChannel
from gateway.clock import Clock
from gateway.errors import FrameError, ModemError, ModemUnavailable


@dataclass
class ModemStatus:
    sim: str = "unknown"  # "ready", "absent", "locked", "failure", "unknown"
    cereg: int | None = None  # 27.007 stat; info.CEREG_STAT names it
    attached: bool = False
    csq_dbm: int | None = None
    ber: int | None = None
    radio: dict[str, Any] = field(default_factory=dict)  # NUESTATS: signal_power (0.1 dBm), snr, ecl, ...
    imei: str = ""
    iccid: str = ""
    imsi: str = ""
    ip: str = ""
    network_time_utc: float | None = None

    @property
    def registered(self) -> bool:
        return self.cereg in info.REGISTERED

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["registration"] = info.CEREG_STAT.get(self.cereg, "unknown") if self.cereg is not None else "unknown"
        return out


async def read_sim(ch: AtChannel, st: ModemStatus) -> None:
    """AT+CPIN? -> st.sim; raises ModemUnavailable when the SIM is missing or unusable."""
    try:
        lines = await ch.command("AT+CPIN?")
    except ModemError as exc:
        st.sim = {10: "absent", 13: "failure"}.get(exc.code or -1, "failure")
        raise ModemUnavailable(f"SIM {st.sim}: {exc}") from None
    value = fields(lines[0], "+CPIN")[0] if lines else ""
    st.sim = "ready" if value == "READY" else "locked"
    if st.sim != "ready":
        raise ModemUnavailable(f"SIM not ready ({value or 'no answer'}); a PIN-locked IoT SIM needs reprovisioning")


async def read_identity(ch: AtChannel, st: ModemStatus, imei_cmd: str = "AT+CGSN=1", iccid_cmd: str = "AT+NCCID") -> None:
    """IMEI, ICCID, IMSI. A module that lacks one of these commands leaves the field empty."""
    for cmd, attr in ((imei_cmd, "imei"), (iccid_cmd, "iccid"), ("AT+CIMI", "imsi")):
        try:
            lines = await ch.command(cmd)
        except ModemError:
            continue
        if lines:
            line = lines[0]
            value = fields(line, line.split(":", 1)[0])[0] if line.startswith("+") and ":" in line else line.strip()
            setattr(st, attr, value)


async def read_registration(ch: AtChannel, st: ModemStatus, command: str = "AT+CEREG?", prefix: str = "+CEREG") -> int:
    """The <stat> of the answer. A +CEREG URC that lands between the echo and the answer has the same
    prefix and is taken as the answer (only the command decides, never the shape); if it does not
    parse as an answer, ask once more rather than fail the session."""
    for attempt in range(2):
        lines = await ch.command(command)
        try:
            if not lines:
                raise FrameError(f"{command} answered without {prefix}")
            st.cereg = info.cereg_stat(lines[-1].replace(prefix, "+CEREG", 1))
            return st.cereg
        except FrameError:
            if attempt:
                raise
    raise AssertionError("unreachable")


async def read_attach(ch: AtChannel, st: ModemStatus) -> bool:
    lines = await ch.command("AT+CGATT?")
    st.attached = bool(lines) and fields(lines[0], "+CGATT")[0] == "1"
    return st.attached


async def read_address(ch: AtChannel, st: ModemStatus) -> str:
    lines = await ch.command("AT+CGPADDR")
    for line in lines:
        values = fields(line, "+CGPADDR")
        if len(values) >= 2 and values[1]:
            st.ip = values[1]
    return st.ip


async def read_radio(ch: AtChannel, st: ModemStatus, nuestats: bool = True) -> None:
    """CSQ always; NUESTATS on NB-IoT modules (RSRP, SNR, ECL). Bad lines are FrameErrors."""
    lines = await ch.command("AT+CSQ")
    if lines:
        st.csq_dbm, st.ber = info.csq_dbm(lines[0])
    if nuestats:
        try:
            st.radio = info.nuestats(await ch.command("AT+NUESTATS"))
        except ModemError:
            pass  # older firmware: CSQ is enough


async def read_network_time(ch: AtChannel, st: ModemStatus, clock: Clock) -> float | None:
    """AT+CCLK? (NITZ): offered to the clock as a secondary source. None until the network sent it."""
    try:
        lines = await ch.command("AT+CCLK?")
        utc = info.cclk_utc(lines[0]) if lines else None
    except (ModemError, FrameError):
        return None
    # BC95 answers 70/01/01 (or an error) until NITZ arrives: not a time.
    if utc is None or utc < 1_600_000_000:
        return None
    st.network_time_utc = utc
    clock.offer_time("modem", utc)
    return utc
