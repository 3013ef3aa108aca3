"""The platform's dedupe and loss accounting: one seq ledger per (gateway_id, store_id).

docs/uplink.md: dedupe on (gateway_id, store_id, seq); a hole in a store's seqs is a loss or an
eviction (telemetry only, counted by the gateway as `evicted` in its status). Memory stays bounded:
a store keeps a contiguous run [low, floor] as two integers plus the seqs seen above it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (gateway_id, store_id)


@dataclass
class StoreLedger:
    low: int  # lowest seq seen (a consumer that started mid-stream does not count earlier seqs as holes)
    floor: int  # every seq in [low, floor] has been seen
    above: set[int] = field(default_factory=set)  # seen seqs > floor + 1
    received: int = 0
    duplicates: int = 0
    evicted: int = 0  # from the gateway's retained status for this store: holes that are evictions

    def add(self, seq: int) -> bool:
        """True if new; False for a duplicate."""
        if self.low <= seq <= self.floor or seq in self.above:
            self.duplicates += 1
            return False
        self.received += 1
        if seq < self.low:  # an older record redelivered late: extend downwards, keeping what lies between
            self.above.update(range(self.low, self.floor + 1))
            self.low = self.floor = seq
        else:
            self.above.add(seq)
        while self.floor + 1 in self.above:
            self.floor += 1
            self.above.discard(self.floor)
        return True

    @property
    def max_seq(self) -> int:
        return max(self.above, default=self.floor)

    def holes(self) -> list[int]:
        """Seqs missing between the lowest and highest seen (may still arrive: redelivery is unordered)."""
        return [s for s in range(self.floor + 1, self.max_seq) if s not in self.above]

    def seqs(self) -> set[int]:
        return set(range(self.low, self.floor + 1)) | self.above

    def report(self) -> dict[str, Any]:
        holes = self.holes()
        return {"low": self.low, "max": self.max_seq, "received": self.received, "duplicates": self.duplicates,
                "holes": len(holes), "first_holes": holes[:10], "evicted": self.evicted,
                "unexplained_holes": max(0, len(holes) - self.evicted)}


class SeqLedger:
    """All stores seen. Not thread-safe: the consumer calls it under its lock."""

    def __init__(self) -> None:
        self.stores: dict[Key, StoreLedger] = {}

    def add(self, gateway_id: str, store_id: str, seq: int) -> bool:
        st = self.stores.get((gateway_id, store_id))
        if st is None:
            self.stores[(gateway_id, store_id)] = StoreLedger(low=seq, floor=seq, received=1)
            return True
        return st.add(seq)

    def note_evicted(self, gateway_id: str, store_id: str, evicted: int) -> None:
        st = self.stores.get((gateway_id, store_id))
        if st is not None:
            st.evicted = max(st.evicted, evicted)

    @property
    def duplicates(self) -> int:
        return sum(st.duplicates for st in self.stores.values())

    @property
    def seen(self) -> dict[Key, set[int]]:
        """Every seq per store, materialised (for tests and small fleets)."""
        return {k: st.seqs() for k, st in self.stores.items()}

    def holes(self) -> dict[Key, list[int]]:
        return {k: h for k, st in self.stores.items() if (h := st.holes())}

    def report(self) -> dict[str, dict[str, Any]]:
        return {f"{g}/{s}": st.report() for (g, s), st in self.stores.items()}
