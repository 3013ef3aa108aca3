"""Anti-replay for every protocol with a per-device counter (LoRa frame counter, NB-IoT sequence number,
reports relayed by the platform): a high-water mark per device, persisted through drivers.counters, and
a rule that no input can use to deafen a detector (issue 15 item 5, CLARIFICATIONS "Turn 2").

The rule, in order:
1. A counter ABOVE the high-water mark is accepted, however far ahead. Only the device (or, for a MIC'd
   frame, someone with its key) can produce it, so a replayed frame can never push the mark past a
   later genuine frame.
2. The same counter with the same content as a frame already accepted is a DUPLICATE (radio echo,
   sensor retry): nothing new, nothing emitted, not a security event.
3. Inside `reorder_window` below the mark (UDP can reorder; LoRa uses 0) an unseen counter is accepted.
4. Anything else at or below the mark is a REPLAY SUSPECT: a security event. Its alarm events are still
   emitted, flagged `replay_suspect: true` (a flagged false alarm is acceptable, a missed authentic one
   is not); everything else in it is dropped and counted.
5. Re-sync after a device reset (battery change, reboot, 16-bit wrap): `resync_frames` consecutive,
   strictly increasing suspects spanning at least `resync_min_s` become the new epoch. It can only LOWER
   the mark, which makes the gateway accept more, never less: it cannot be abused to deafen.
No modular (wrap-around) arithmetic anywhere: with it, an old frame replayed half a counter space away
looks "ahead", moves the mark and makes every later genuine frame look old (the bug issue 15 reports).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeGuard

import msgspec

from drivers.counters import CounterStore
from gateway.model import Event, EventKind, Item, Stamp

STAT_NAMES = ("replay_suspects", "replay_alarms_flagged", "replay_dropped", "duplicates", "late_accepted", "resyncs", "learned")


class Verdict(enum.Enum):
    LEARN = "learn"  # no state for this device yet (first frame ever, or the state file was lost): accepted
    ACCEPT = "accept"  # above the mark, or a late frame inside the reorder window
    DUPLICATE = "duplicate"  # same counter, same content as an accepted frame: nothing new
    SUSPECT = "replay_suspect"  # at or below the mark: a security event; only its alarms pass, flagged
    RESYNC = "resync"  # the frame that completes a re-sync: accepted as the start of a new epoch

    @property
    def accepted(self) -> bool:
        return self in (Verdict.LEARN, Verdict.ACCEPT, Verdict.RESYNC)


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    last: int | None  # the high-water mark before this frame (None: nothing known)


@dataclass
class _Track:
    hw: int
    recent: dict[int, str]  # counter -> content digest of accepted frames at or near the mark
    epoch: int = 0
    cand_last: int = -1  # re-sync candidate: last counter of the increasing run below the mark
    cand_count: int = 0
    cand_first_mono: float = 0.0
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAT_NAMES, 0))


class SequenceGuard:
    """check(key, counter, digest, now_mono) -> Check. `digest` identifies the content (a MIC, a CRC of
    the datagram): equal counter + equal digest is a duplicate, equal counter + other digest is not."""

    def __init__(self, store: CounterStore, prefix: str, reorder_window: int = 0, resync_frames: int = 3,
                 resync_min_s: float = 60.0) -> None:
        if resync_frames < 2:
            raise ValueError("resync_frames must be at least 2 (one replayed frame must never re-sync)")
        self.store, self.prefix = store, prefix
        self.window, self.resync_frames, self.resync_min_s = reorder_window, resync_frames, resync_min_s
        self._tracks: dict[str, _Track] = {}

    def last(self, key: str) -> int | None:
        t = self._track(key)
        return t.hw if t else None

    def stats(self, key: str) -> dict[str, int]:
        t = self._track(key)
        return dict(t.stats) if t else dict.fromkeys(STAT_NAMES, 0)

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(STAT_NAMES, 0)
        for t in self._tracks.values():
            for k, v in t.stats.items():
                out[k] += v
        return out

    def check(self, key: str, counter: int, digest: str, now_mono: float, urgent: bool = False) -> Check:
        t = self._track(key)
        if t is None:
            t = self._tracks[key] = _Track(counter, {counter: digest})
            t.stats["learned"] += 1
            self._save(key, t, urgent)
            return Check(Verdict.LEARN, None)
        last = t.hw
        if counter > t.hw:
            t.hw = counter
            self._remember(t, counter, digest)
            t.cand_count = 0  # the device is alive in its current epoch: any re-sync run was not it
            self._save(key, t, urgent)
            return Check(Verdict.ACCEPT, last)
        seen = t.recent.get(counter)
        if seen == digest:
            t.stats["duplicates"] += 1
            return Check(Verdict.DUPLICATE, last)
        if seen is None and t.hw - counter <= self.window:
            t.stats["late_accepted"] += 1
            self._remember(t, counter, digest)
            self._save(key, t, urgent)
            return Check(Verdict.ACCEPT, last)
        t.stats["replay_suspects"] += 1
        if self._resync_step(t, counter, now_mono):
            t.hw, t.recent, t.epoch, t.cand_count = counter, {counter: digest}, t.epoch + 1, 0
            t.stats["resyncs"] += 1
            self._save(key, t, urgent=True)
            return Check(Verdict.RESYNC, last)
        return Check(Verdict.SUSPECT, last)

    def note_screened(self, key: str, flagged: int, dropped: int) -> None:
        """Count what screen() did with a suspect's items (per device, for health)."""
        t = self._track(key)
        if t is not None:
            t.stats["replay_alarms_flagged"] += flagged
            t.stats["replay_dropped"] += dropped

    # -- internals --------------------------------------------------------------------------------

    def _resync_step(self, t: _Track, counter: int, now_mono: float) -> bool:
        if t.cand_count and counter == t.cand_last:
            return False  # a repeat of the run's last frame neither extends nor breaks it
        if t.cand_count and counter > t.cand_last:
            t.cand_count += 1
        else:
            t.cand_count, t.cand_first_mono = 1, now_mono
        t.cand_last = counter
        return t.cand_count >= self.resync_frames and now_mono - t.cand_first_mono >= self.resync_min_s

    def _remember(self, t: _Track, counter: int, digest: str) -> None:
        t.recent[counter] = digest
        floor = t.hw - self.window
        for old in [c for c in t.recent if c < floor]:
            del t.recent[old]

    def _track(self, key: str) -> _Track | None:
        t = self._tracks.get(key)
        if t is not None:
            return t
        rec = self.store.get(f"{self.prefix}:{key}")
        if rec is None:
            return None
        try:
            hw, epoch = rec["hw"], rec.get("epoch", 0)
            recent = {int(c): str(d) for c, d in rec.get("recent", {}).items()}
            if not isinstance(hw, int) or isinstance(hw, bool) or not isinstance(epoch, int):
                return None
        except (KeyError, TypeError, ValueError, AttributeError):
            return None  # a damaged record is ignored: the device is learnt again (never deafened)
        t = self._tracks[key] = _Track(hw, recent, epoch)
        return t

    def _save(self, key: str, t: _Track, urgent: bool) -> None:
        self.store.put(f"{self.prefix}:{key}", {"hw": t.hw, "epoch": t.epoch,
                                                "recent": {str(c): d for c, d in t.recent.items()}}, urgent)


def is_alarm(item: Item) -> TypeGuard[Event]:
    """Alarm-class: what the rules raise an alarm from (fire, gas, flow, cover ...)."""
    return isinstance(item, Event) and item.kind == EventKind.ALARM


def screen(items: Iterable[Item], verdict: Verdict) -> tuple[list[Item], int]:
    """What a frame may emit: everything when accepted; for a replay suspect only its alarm events,
    flagged `replay_suspect: true`; nothing for a duplicate. Returns (items, how many were dropped)."""
    items = list(items)
    if verdict.accepted:
        return items, 0
    if verdict is Verdict.DUPLICATE:
        return [], len(items)
    kept: list[Item] = [msgspec.structs.replace(i, detail={**i.detail, "replay_suspect": True}) for i in items if is_alarm(i)]
    return kept, len(items) - len(kept)


def security_event(device_id: str, stamp: Stamp, via: str, counter: int, check: Check, alarm: bool) -> Event:
    """The record of a replay suspect: committed, uplinked, shown by `gateway devices`/`gateway events`."""
    return Event(device_id, EventKind.SECURITY, stamp, code="replay_suspect", via=via,
                 detail={"counter": counter, "last_counter": -1 if check.last is None else check.last, "alarm": alarm})
