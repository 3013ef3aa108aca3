"""Wave roll-out (issue 20): 20 simulated gateways, 2 of them roll back; the run stops before the
next wave once the failure rate exceeds the limit, and each outcome is reported."""

from __future__ import annotations

import threading
from typing import Any

from gateway.fleet.bundle import make_bundle_args
from gateway.fleet.waves import COMMITTED, NO_ANSWER, ROLLED_BACK, SKIPPED, UNCHANGED, WavePlan, apply_one, roll_out

ARGS = make_bundle_args("v7", patch={"contacts": []})


class SimGateways:
    """Each gateway answers like the daemon: restarting, then config_status settled on commit or rollback."""

    def __init__(self, n: int, failing: set[str], silent: set[str] = frozenset(), same: set[str] = frozenset()) -> None:
        self.ids = [f"gw-{i:03d}" for i in range(n)]
        self.failing, self.silent, self.same = failing, silent, same
        self.applied: list[str] = []
        self.lock = threading.Lock()

    def command(self, gw: str, command: str, args: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        if gw in self.silent:
            return None
        if command == "config_apply":
            with self.lock:
                self.applied.append(gw)
            result = "unchanged" if gw in self.same else "restarting"
            return {"id": "x", "status": "accepted", "result": {"result": result, "config_hash": "ab" * 32}}
        bad = gw in self.failing
        return {"status": "accepted", "result": {"pending_version": "", "last_apply_version": "v7", "config_version": "v6" if bad else "v7",
                                                 "last_apply_error": "not healthy within 60 s: uplink not acknowledged" if bad else "",
                                                 "config_hash": "cd" * 32}}


def test_a_wave_with_failures_above_the_limit_stops_the_rollout() -> None:
    sims = SimGateways(20, failing={"gw-006", "gw-007"})
    seen: list[str] = []
    results = roll_out(sims, sims.ids, ARGS, WavePlan(wave_size=5, max_failure_pct=5.0, poll_s=0), on_result=lambda r: seen.append(r.gateway_id))
    by = {r.gateway_id: r.outcome for r in results}
    assert [by[g] for g in sims.ids[:5]] == [COMMITTED] * 5
    assert by["gw-006"] == by["gw-007"] == ROLLED_BACK
    assert all(by[g] == SKIPPED for g in sims.ids[10:]) and sorted(sims.applied) == sims.ids[:10]
    assert {r.detail for r in results if r.outcome == SKIPPED} == {"stopped: 2/10 failed > 5 %"}
    assert "uplink not acknowledged" in next(r.detail for r in results if r.gateway_id == "gw-006")
    assert sorted(seen) == sims.ids  # every gateway reported, skipped ones included


def test_under_the_limit_the_rollout_goes_on_and_says_what_each_gateway_did() -> None:
    sims = SimGateways(20, failing={"gw-006"}, silent={"gw-012"}, same={"gw-001"})
    results = roll_out(sims, sims.ids, ARGS, WavePlan(wave_size=5, max_failure_pct=15.0, poll_s=0))
    by = {r.gateway_id: r.outcome for r in results}
    assert by["gw-001"] == UNCHANGED and by["gw-006"] == ROLLED_BACK and by["gw-012"] == NO_ANSWER
    assert SKIPPED not in by.values() and len(sims.applied) == 19


def test_a_gateway_that_never_settles_is_no_answer() -> None:
    class Stuck(SimGateways):
        def command(self, gw: str, command: str, args: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
            if command == "config_status":
                return {"status": "accepted", "result": {"pending_version": "v7", "last_apply_version": "v6"}}
            return super().command(gw, command, args, timeout_s)

    t = iter(range(0, 1000, 10))
    r = apply_one(Stuck(1, set()), "gw-000", ARGS, WavePlan(settle_timeout_s=30, poll_s=0), clock=lambda: float(next(t)))
    assert r.outcome == NO_ANSWER and "pending v7" in r.detail
