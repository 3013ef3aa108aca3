"""Logging setup: structlog JSON lines for journald, key=value on a TTY; gateway id on every line, library
records included; secrets never printed (known secret keys and the credentials file's values are redacted);
repeated identical warnings damped to one line per window with a count."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "<redacted>"
SECRET_KEYS = frozenset({"password", "mqtt_password", "key", "secret", "token", "hmac_key", "command_keys", "lora_keys", "signature"})


class Redactor:
    """structlog processor: replaces values of secret-named keys and any occurrence of a known secret."""

    def __init__(self) -> None:
        self.values: tuple[str, ...] = ()

    def set_secrets(self, values: Iterable[str]) -> None:
        # Longest first so a secret containing another is replaced whole.
        self.values = tuple(sorted({v for v in values if v}, key=len, reverse=True))

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.values:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, bytes):
            return self._scrub(value.decode("utf-8", "backslashreplace"))
        if isinstance(value, dict):
            return {k: (REDACTED if k in SECRET_KEYS else self._scrub(v)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._scrub(v) for v in value]
        return value

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        return {k: (REDACTED if k in SECRET_KEYS else self._scrub(v)) for k, v in event_dict.items()}


class Damper:
    """structlog processor: repeated identical warnings and errors make one line per `window_s` with a count.

    "Identical" is the same level, event and values (the timestamp aside). The first occurrence passes at
    once; repeats inside the window are dropped and counted; the next one after the window passes with
    `repeated=<dropped count>`. Debug and info lines are never damped (issue 16: a flapping port, a broker
    refusing every connect must not flood journald on a Pi's SD card). window_s=0 turns it off.
    """

    KEYS_MAX = 512  # distinct repeating lines remembered; the oldest is forgotten first
    LEVELS = frozenset({"warning", "error", "critical", "exception"})

    def __init__(self, window_s: float = 0.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self._now = monotonic
        self._seen: dict[str, list[float]] = {}  # key -> [window start, dropped count]

    def _key(self, method: str, event_dict: EventDict) -> str:
        items = sorted((k, repr(v)) for k, v in event_dict.items() if k not in ("timestamp", "_record", "_from_structlog"))
        return f"{method}\0{items!r}"

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        if self.window_s <= 0 or event_dict.get("level", method) not in self.LEVELS:
            return event_dict
        key, now = self._key(method, event_dict), self._now()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.window_s:
            seen[1] += 1
            raise structlog.DropEvent
        if seen is not None and seen[1]:
            event_dict["repeated"] = int(seen[1])
        self._seen.pop(key, None)
        self._seen[key] = [now, 0]
        while len(self._seen) > self.KEYS_MAX:
            del self._seen[next(iter(self._seen))]
        return event_dict

    def suppressed(self) -> int:
        """Lines dropped and not yet reported (each is reported with the next line of its kind)."""
        return int(sum(seen[1] for seen in self._seen.values()))


REDACTOR = Redactor()
DAMPER = Damper()


class _GatewayId:
    """Adds gateway_id to library records too: they may come from executor threads, outside our contextvars."""

    value = ""

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        if self.value:
            event_dict.setdefault("gateway_id", self.value)
        return event_dict


_GATEWAY_ID = _GatewayId()


class _LineWriter:
    """structlog's logger: one rendered line per write, on the stdlib handler's stream under its lock, so our
    lines and the libraries' never interleave."""

    def __init__(self, handler: logging.StreamHandler[TextIO]) -> None:
        self.handler = handler

    def msg(self, message: str) -> None:
        self.handler.acquire()
        try:
            self.handler.stream.write(message + "\n")
            self.handler.stream.flush()
        finally:
            self.handler.release()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def setup(level: str = "info", fmt: str = "auto", gateway_id: str = "", stream: TextIO | None = None, damp_s: float = 0.0) -> None:
    """Configure logging once for the process. `fmt`: auto (console on a TTY, JSON otherwise), json, console.

    Our structlog events and the libraries' stdlib records (paho, pymodbus, asyncio: WARNING and above) go
    through one ProcessorFormatter onto one stream: the same JSON, gateway_id, redaction and damping
    (`damp_s`: see Damper). structlog filters our own events by `level` before any work is done.
    """
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    _GATEWAY_ID.value = gateway_id
    DAMPER.window_s = damp_s
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        _GATEWAY_ID,
        structlog.processors.add_log_level,
        DAMPER,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    from gateway.control.logring import RING  # the last lines in memory for `gateway logs` (no SD writes)

    final: list[Processor] = [
        # Tracebacks are rendered before redaction so a secret inside an exception message is scrubbed too.
        structlog.processors.format_exc_info,
        REDACTOR,
        RING,  # after redaction: the ring holds exactly what is printed, and every logger feeds it from the start
        renderer,
    ]
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    ))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # libraries: warnings and above
    # Our own events skip the LogRecord (a third of the cost on a Pi) but share the handler's stream and lock.
    writer = _LineWriter(handler)
    structlog.configure(
        processors=[*shared, *final],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=lambda *args: writer,
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    if gateway_id:
        structlog.contextvars.bind_contextvars(gateway_id=gateway_id)


def set_level(level: str) -> None:
    """Change the level at run time (downlink set_log_level, CLI)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())))


def get(**bind: Any) -> Any:
    return structlog.get_logger().bind(**bind)


def get_lazy(**bind: Any) -> Any:
    """A logger assembled at each call from the configuration of that moment: for the few made before
    setup() runs (gateway.fleet.runner). Costs a bind per call: not for per-frame logging."""
    return structlog.get_logger(**bind)
