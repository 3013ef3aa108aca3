"""Output for people over SSH (aligned tables, ages in words) and for scripts (--json), plus the
duration parser for --since / --older-than."""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import click

Column = tuple[str, Callable[[dict[str, Any]], Any]]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400, None: 1}


class Duration(click.ParamType):
    """'90', '90s', '15m', '24h', '7d', '2w' -> seconds (float)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        m = _DURATION.match(str(value))
        if not m:
            self.fail(f"{value!r} is not a duration (e.g. 90s, 15m, 24h, 7d)", param, ctx)
        return float(m.group(1)) * _UNIT_S[m.group(2)]


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True, default=str))


def _width(text: str) -> int:
    # Chinese locations (2栋1单元401) take two terminal cells per character.
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def clip(text: str, width: int) -> str:
    """`text` cut to `width` terminal cells, ending in '…' when cut."""
    if _width(text) <= width:
        return text
    out, used = [], 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def pad(text: str, width: int) -> str:
    """`text` left-aligned in `width` terminal cells (CJK characters take two)."""
    text = clip(text, width)
    return text + " " * (width - _width(text))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], max_width: int | None = None) -> str:
    """Left-aligned columns separated by two spaces; None prints as '-'. With max_width (80 for the
    default views) each line is clipped, so a maintainer's SSH window never wraps."""
    cells = [[h for h, _ in columns]]
    for row in rows:
        cells.append(["-" if (v := fn(row)) is None or v == "" else str(v) for _, fn in columns])
    widths = [max(_width(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for r in cells:
        parts = [c + " " * (w - _width(c)) for c, w in zip(r, widths)]
        line = "  ".join(parts).rstrip()
        lines.append(clip(line, max_width) if max_width else line)
    return "\n".join(lines)


def age(seconds: float | None) -> str:
    """'4 s', '12 min', '3 h 05 min', '2 d 04 h' - readable at a glance."""
    if seconds is None:
        return "never"
    s = max(0.0, float(seconds))
    if s < 120:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600):02d} h"


def wall(ts: float | None) -> str:
    """Local time of a wall-clock stamp, with the date when it is not today."""
    if not ts:
        return "-"
    lt = time.localtime(ts)
    if time.strftime("%Y-%m-%d", lt) == time.strftime("%Y-%m-%d"):
        return time.strftime("%H:%M:%S", lt)
    return time.strftime("%Y-%m-%d %H:%M", lt)


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def values(d: dict[str, Any] | None, limit: int = 4) -> str:
    """'pressure_mpa=0.32 flow=1' (first `limit` keys, '+2' when more)."""
    if not d:
        return ""
    items = [f"{k}={_num(v)}" for k, v in list(d.items())[:limit]]
    more = f" +{len(d) - limit}" if len(d) > limit else ""
    return " ".join(items) + more


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
