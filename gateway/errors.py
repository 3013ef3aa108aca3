"""The gateway's error classes: one tree, each carrying its fields, transient and permanent apart.

Never `return None` to mean "failed": raise one of these so the reason survives to the log.
"""

from __future__ import annotations

from typing import Protocol


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid. Carries every problem found, not only the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class FrameError(GatewayError):
    """Bytes from a serial line, a radio or the network do not form a valid frame."""

    def __init__(self, reason: str, data: bytes = b"", detail: str = "") -> None:
        self.reason = reason  # a word from a fixed vocabulary: it names a counter, whatever the bytes said
        self.data = bytes(data[:64])
        self.detail = detail[:80]  # what varies with the input (a version byte, a parser's message): logs only
        super().__init__(reason)

    def __str__(self) -> str:
        text = f"{self.reason}: {self.detail}" if self.detail else self.reason
        if self.data:
            return f"{text} (first bytes {self.data.hex(' ')})"
        return text


class CodecError(GatewayError):
    """A well-framed payload that the sensor's codec cannot decode."""

    def __init__(self, codec: str, reason: str) -> None:
        self.codec = codec
        self.reason = reason
        super().__init__(f"{codec}: {reason}")


class DeviceTimeout(GatewayError, TimeoutError):
    """A device did not answer within its timeout (transient)."""

    def __init__(self, device: str, timeout_s: float) -> None:
        self.device = device
        self.timeout_s = timeout_s
        super().__init__(f"{device}: no answer within {timeout_s:g} s")


class TransientError(GatewayError):
    """Worth retrying later: busy, back-off timer running, link flapping."""


class ModemError(GatewayError):
    """A modem answered ERROR, +CME ERROR: n or +CMS ERROR: n."""

    # 3GPP TS 27.007 §9.2 / 27.005 §3.2.5 and Quectel BC95 manual: the codes we meet in practice.
    MEANINGS: dict[tuple[str, int], str] = {
        ("CME", 3): "operation not allowed",
        ("CME", 4): "operation not supported",
        ("CME", 10): "SIM not inserted",
        ("CME", 13): "SIM failure",
        ("CME", 30): "no network service",
        ("CME", 31): "network timeout",
        ("CME", 100): "unknown",
        ("CME", 159): "uplink busy / flow control (retry later)",
        ("CME", 536): "UART buffer error (retry later)",
        ("CME", 537): "back-off timer running (retry later)",
        ("CMS", 330): "SMSC address unknown",
        ("CMS", 331): "no network service",
        ("CMS", 332): "network timeout",
        ("CMS", 500): "unknown error",
    }
    BUSY_CODES = frozenset({159, 536, 537})

    def __init__(self, command: str, kind: str = "", code: int | None = None) -> None:
        self.command = command
        self.kind = kind  # "" for plain ERROR, "CME" or "CMS"
        self.code = code
        super().__init__(str(self))

    @property
    def busy(self) -> bool:
        """True when the modem says "retry later" rather than "no"."""
        return self.kind == "CME" and self.code in self.BUSY_CODES

    def __str__(self) -> str:
        if self.code is None:
            return f"{self.command}: ERROR"
        meaning = self.MEANINGS.get((self.kind, self.code), "unlisted code")
        return f"{self.command}: +{self.kind} ERROR: {self.code} ({meaning})"


class ModemUnavailable(GatewayError):
    """The modem is absent, rebooting or not registered: the action cannot run now."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"modem unavailable: {reason}")


class ModbusDeviceError(GatewayError):
    """A Modbus slave answered with an exception response (it is alive but refuses)."""

    # Modbus Application Protocol v1.1b3 §7.
    MEANINGS = {
        1: "illegal function",
        2: "illegal data address",
        3: "illegal data value",
        4: "server device failure",
        5: "acknowledge",
        6: "server device busy",
        8: "memory parity error",
        10: "gateway path unavailable",
        11: "gateway target device failed to respond",
    }

    def __init__(self, unit: int, exception_code: int, function_code: int | None = None) -> None:
        self.unit = unit
        self.exception_code = exception_code
        self.function_code = function_code
        super().__init__(str(self))

    def __str__(self) -> str:
        meaning = self.MEANINGS.get(self.exception_code, "unknown exception")
        fc = f" to function {self.function_code}" if self.function_code is not None else ""
        return f"unit {self.unit} answered exception {self.exception_code} ({meaning}){fc}"


class UplinkError(GatewayError):
    """The uplink could not deliver (broker refused, not authorised, disconnected)."""

    def __init__(self, reason: str, rc: int | None = None) -> None:
        self.reason = reason
        self.rc = rc
        super().__init__(f"{reason} (rc={rc})" if rc is not None else reason)


class StoreError(GatewayError):
    """The outbox could not commit (disk full, I/O error)."""


class StoreFull(StoreError):
    """Disk or configured cap reached; telemetry is being dropped."""


class StoreUnavailable(StoreError):
    """The outbox database cannot be written now (read-only, corrupt, missing, full beyond the ballast,
    I/O errors): the store is DOWN and retried; records wait in its in-memory journal (issue 15 item 2).
    `reason` is one word: read-only, corrupt, io_error, full, missing, newer_schema."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"outbox unavailable ({reason}): {detail}" if detail else f"outbox unavailable ({reason})")


class CommandRejected(GatewayError):
    """A downlink or control-socket command was refused; `reason` is a short machine word."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class EventLog(Protocol):
    """The part of a structlog bound logger that failure reports use."""

    def warning(self, event: str, **kw: object) -> object: ...
    def debug(self, event: str, **kw: object) -> object: ...
    def info(self, event: str, **kw: object) -> object: ...


class FailureLog:
    """How a repeating failure is reported: first failure WARNING, repeats DEBUG, recovery one INFO
    (STYLE "Errors and logging"; aioesphomeapi `_first_try_log_level`). One per failing thing (a port, a
    modem, a broker connection); counts and rates belong in health() counters, not in more log lines."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.failures = 0  # consecutive failures since the last success

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def failed(self, event: str, **kw: object) -> int:
        """Log one failure at WARNING if it is the first of a run, else DEBUG; return the run's length."""
        self.failures += 1
        (self.log.warning if self.failures == 1 else self.log.debug)(event, **kw)
        return self.failures

    def recovered(self, event: str | None = None, **kw: object) -> bool:
        """End a run of failures: one INFO `event` (if given) with `after_failures`; False if none was running."""
        if not self.failures:
            return False
        if event is not None:
            self.log.info(event, after_failures=self.failures, **kw)
        self.failures = 0
        return True
