"""Logging setup: structlog JSON lines for journald, key=value on a TTY; gateway id on every line;
secrets never printed (known secret keys and the credentials file's values are redacted)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

import structlog

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

    def __call__(self, logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        return {k: (REDACTED if k in SECRET_KEYS else self._scrub(v)) for k, v in event_dict.items()}


REDACTOR = Redactor()


def setup(level: str = "info", fmt: str = "auto", gateway_id: str = "", stream: Any = None) -> None:
    """Configure structlog once for the process. `fmt`: auto (console on a TTY, JSON otherwise), json, console."""
    stream = stream or sys.stdout
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Tracebacks are rendered before redaction so a secret inside an exception message is scrubbed too.
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    if gateway_id:
        structlog.contextvars.bind_contextvars(gateway_id=gateway_id)
    # Libraries (pymodbus, paho) log through stdlib logging: route warnings and above to the same stream.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s", force=True)


def set_level(level: str) -> None:
    """Change the level at run time (downlink set_log_level, CLI)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())))


def get(**bind: Any) -> Any:
    return structlog.get_logger().bind(**bind)
