"""The seq counter, handed out at ingest from blocks reserved durably ahead of use (issue 17).

A reading gets its seq the moment it arrives (so one lost in a crash is a hole at the platform, never
invisible); `meta.seq_reserved` is committed before any seq of its block is handed out, so after a
crash the store starts above it and no seq is ever reused. A clean close gives the unused rest of
the block back (no hole); a crash skips it, and the next open records that skip (`store.seq_gap`).
Alarm/event/status records take theirs inside their commit and may run past the block: that commit
then carries the new reservation itself.
"""

from __future__ import annotations

import threading

BLOCK_MIN = 4096  # at 200 readings/s one reservation (one small FULL commit) every ~20 s
BLOCK_MAX = 1 << 20


class SeqAlloc:
    """Shared by the loop (readings) and the writer thread (records); every method takes the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.next = 1
        self.limit = 0  # highest seq durably reserved
        self.block = BLOCK_MIN
        self.skipped = 0  # seqs given up for good (none in the current design; kept for health())
        self.free: list[int] = []  # seqs of rolled-back commits, handed to the next records (never published)
        self.store_id = ""  # the store these counters belong to (a new database starts again)

    def reset(self, reserved: int, store_id: str) -> None:
        """A store opened by this process for the first time: nothing above `reserved` was handed out."""
        with self._lock:
            self.next, self.limit, self.store_id, self.free = reserved + 1, reserved, store_id, []

    def continues(self, store_id: str) -> bool:
        """The same store reopened by this process (after being DOWN): carry on where it stopped."""
        with self._lock:
            return bool(self.store_id) and self.store_id == store_id

    def take_free(self) -> int | None:
        """Writer thread: a seq a rolled-back commit gave up, so a failing disk leaves no hole."""
        with self._lock:
            return self.free.pop(0) if self.free else None

    def take(self) -> int | None:
        """A seq inside the reservation, or None when the block is used up (wait for the next one)."""
        with self._lock:
            if self.next > self.limit:
                return None
            self.next += 1
            return self.next - 1

    def take_over(self) -> int:
        """Writer thread, inside a commit that will reserve past what it takes (see need_reserve)."""
        with self._lock:
            self.next += 1
            return self.next - 1

    def give_back(self, seqs: list[int]) -> None:
        """A commit that took these rolled back (nothing of it was published): the seqs go back."""
        with self._lock:
            if seqs == list(range(seqs[0], self.next)):
                self.next = seqs[0]  # nobody took one since: as if never taken
            else:  # readings took seqs meanwhile: the next records take these, so no hole is left
                self.free = sorted(set(self.free) | set(seqs))

    def remaining(self) -> int:
        with self._lock:
            return self.limit - self.next + 1

    def want(self) -> int:
        """The reservation a commit should write now: the next block beyond what is handed out."""
        with self._lock:
            return max(self.limit, self.next - 1) + self.block

    def reserved(self, upto: int, interval_s: float | None = None) -> None:
        """The reservation up to `upto` is committed. Blocks grow when used up fast, shrink when slow."""
        with self._lock:
            self.limit = max(self.limit, upto)
            if interval_s is not None:
                if interval_s < 10:
                    self.block = min(BLOCK_MAX, self.block * 2)
                elif interval_s > 120:
                    self.block = max(BLOCK_MIN, self.block // 2)

    def shrink(self, upto: int) -> None:
        """A clean close gave back what is above `upto`: hand out nothing more without a new reservation."""
        with self._lock:
            self.limit = upto

    def last_used(self) -> int:
        with self._lock:
            return self.next - 1
