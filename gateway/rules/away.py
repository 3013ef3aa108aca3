"""Away mode per flat (issue 22): the grid worker says a resident living alone is away until a date (the
daughter's for a week), so the `inactivity` rule raises no welfare alarm meanwhile. Set by the CLI or a
signed platform command, kept in away.json beside the database (a restart must not forget it and then
raise a false alarm), applied to every inactivity rule watching the flat, and uplinked as an event.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gateway.errors import CommandRejected
from gateway.model import RecordClass
from gateway.rules.inactivity import InactivityEvaluator

FILE_NAME = "away.json"
MAX_AWAY_S = 366 * 86400.0  # a longer absence is a moved-out resident: take the devices off the rule


def evaluators(engine: Any) -> list[InactivityEvaluator]:
    return [ev for ev in getattr(engine, "evaluators", ()) if isinstance(ev, InactivityEvaluator)]


def load(path: Path) -> dict[str, float]:
    """flat -> until (wall s). A missing or unreadable file is no away mode (logged by the caller)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a JSON object")
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def save(path: Path, away: dict[str, float]) -> None:
    """Atomic: write a temporary file, fsync, rename (a power cut leaves the old or the new file)."""
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(away, f, ensure_ascii=False, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def restore(engine: Any, state_dir: Path, now_wall: float, log: Any = None) -> int:
    """At start: re-apply the stored away periods that have not ended. Returns how many. An unreadable file
    is logged and ignored: away mode is never a precondition of the daemon starting (an early welfare alarm
    is the worst outcome)."""
    try:
        stored = load(state_dir / FILE_NAME)
    except (OSError, ValueError) as exc:
        if log is not None:
            log.warning("away_file_unreadable", path=str(state_dir / FILE_NAME), error=str(exc)[:200])
        return 0
    n = 0
    for flat, until in stored.items():
        if until > now_wall:
            n += sum(ev.set_away(flat, until) for ev in evaluators(engine))
    return n


async def set_away(engine: Any, state_dir: Path | None, flat: str, until_wall: float, by: str) -> dict[str, Any]:
    """Away until `until_wall` (0: back home now). CommandRejected for a flat no inactivity rule watches."""
    now = engine.clock.wall()
    evs = [ev for ev in evaluators(engine) if flat in ev.flats]
    if not evs:
        known = sorted({f for ev in evaluators(engine) for f in ev.flats})
        raise CommandRejected("unknown_flat", f"{flat!r} is not watched by an inactivity rule (known: {', '.join(known) or 'none'})")
    if until_wall and not now < until_wall <= now + MAX_AWAY_S:
        raise CommandRejected("bad_args", "until must be in the future and at most 366 days ahead")
    for ev in evs:
        ev.set_away(flat, until_wall)
    if state_dir is not None:
        stored = {f: u for f, u in load(state_dir / FILE_NAME).items() if u > now and f != flat}
        if until_wall:
            stored[flat] = until_wall
        save(state_dir / FILE_NAME, stored)
    anchor = evs[0].flats[flat].anchor
    body = {"kind": "away" if until_wall else "back", "flat": flat, "until_wall_s": until_wall, "by": by, "source": "gateway"}
    await engine.outbox.put(RecordClass.EVENT, "event.away", anchor, engine.clock.now(), body)
    return {"flat": flat, "away_until_wall_s": until_wall, "by": by}


def view(engine: Any, now_mono: float, now_wall: float) -> list[dict[str, Any]]:
    """One row per watched flat: away until, hours since its last activity, what that was."""
    rows: dict[str, dict[str, Any]] = {}
    for ev in evaluators(engine):
        for key, flat in ev.flats.items():
            until = ev.away.get(key, 0.0)
            row = rows.setdefault(key, {"flat": key, "rule": ev.rule.id, "devices": [d.id for d in flat.devices]})
            row["away_until_wall_s"] = until if until > now_wall else None
            row["quiet_h"] = round((now_mono - flat.last_activity) / 3600, 1)
            row["last_activity"] = flat.last_source
            row["welfare_alarm"] = flat.active
    return sorted(rows.values(), key=lambda r: r["flat"])
