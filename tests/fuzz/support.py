"""Shared pieces of the F1 property suite: the CI settings profile, a byte mutator and chunked feeding.

Profile (reliability §5 "Fuzzing", §7 F1): derandomized so CI failures reproduce; FUZZ_EXAMPLES scales a
run up for soak/nightly (scripts/soak.sh sets it). The per-example deadline is generous because the CI
box has 2 cores shared with other jobs: it catches hangs and quadratic blow-ups, not micro-slowness.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "400"))

settings.register_profile(
    "fuzz-ci",
    derandomize=True,
    max_examples=EXAMPLES,
    deadline=dt.timedelta(milliseconds=750),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
FUZZ = settings.get_profile("fuzz-ci")

# Random splits of a stream into reads of 1-32 bytes: what a pty or USB adapter hands the driver.
chunk_sizes = st.lists(st.integers(1, 32), min_size=1, max_size=64)


@st.composite
def mutated(draw, valid: bytes) -> bytes:
    """A valid encoding damaged the way a noisy line damages it: bit flips, byte changes, inserts,
    deletions, truncation and duplication, 1-6 of them."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate", "dup")))
        if not data and op != "insert":
            op = "insert"
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[i : i + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[i:]
        else:
            data[i:i] = data[i : i + draw(st.integers(1, 16))]
    return bytes(data)


def feed_chunked(feed: Callable[[bytes], list], data: bytes, sizes: Sequence[int]) -> list:
    """Feed `data` in reads of the given sizes (cycled), return every item produced."""
    out: list = []
    at, k = 0, 0
    while at < len(data):
        n = sizes[k % len(sizes)]
        out += feed(data[at : at + n])
        at, k = at + n, k + 1
    return out


def only(items: list, kind: type) -> list:
    return [i for i in items if isinstance(i, kind)]
