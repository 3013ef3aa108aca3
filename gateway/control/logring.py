"""The daemon's last log lines in memory, for `gateway logs` when journald has none (a daemon run in the
foreground, a container, a box without systemd): a structlog processor placed after redaction, so the
ring holds exactly what was printed, secrets already scrubbed. Bounded; costs no SD-card writes."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import MutableMapping
from typing import Any

import structlog

RING_LINES = 1000


class LogRing:
    def __init__(self, maxlen: int = RING_LINES) -> None:
        self.lines: deque[tuple[int, dict[str, Any]]] = deque(maxlen=maxlen)
        self._seq = itertools.count(1)

    def __call__(self, logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        self.lines.append((next(self._seq), dict(event_dict)))
        return event_dict

    def since(self, after_seq: int = 0, limit: int = 200) -> list[dict[str, Any]]:
        """Lines after `after_seq` (each with its `_seq`), the newest `limit` of them."""
        found = [{"_seq": seq, **line} for seq, line in self.lines if seq > after_seq]
        return found[-limit:] if limit else found


RING = LogRing()


def install() -> None:
    """Put RING just before the renderer (after the Redactor) in the running structlog config; idempotent."""
    processors = list(structlog.get_config()["processors"])
    if any(p is RING for p in processors) or not processors:
        return
    processors.insert(len(processors) - 1, RING)
    structlog.configure(processors=processors)
