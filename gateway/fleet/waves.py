"""Rolling a config bundle or a software release out to many gateways in waves (issue 20): N at a time, stop before the
next wave once the failure rate so far exceeds X %. Transport-agnostic: tool.py sends over MQTT,
tests drive it with simulated gateways."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

# Outcome words printed per gateway (docs/fleet.md "gateway fleet").
COMMITTED, UNCHANGED, ROLLED_BACK, REJECTED, NO_ANSWER, SKIPPED = "committed", "unchanged", "rolled_back", "rejected", "no_answer", "skipped"
FAILED = "failed"  # an update that could not be downloaded or installed: nothing was switched
SUCCESS = (COMMITTED, UNCHANGED)


class Transport(Protocol):
    def command(self, gateway_id: str, command: str, args: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """Sign, publish, and return the reply (None: no reply within timeout_s)."""
        ...


@dataclass
class Result:
    gateway_id: str
    outcome: str
    detail: str = ""
    config_hash: str = ""


@dataclass
class WavePlan:
    wave_size: int = 10
    max_failure_pct: float = 10.0
    reply_timeout_s: float = 15.0
    settle_timeout_s: float = 180.0  # restart + commit deadline + margin
    poll_s: float = 3.0
    results: list[Result] = field(default_factory=list)


def _sent(t: Transport, gw: str, command: str, args: dict[str, Any], plan: WavePlan) -> Result | dict[str, Any]:
    """The accepted reply's result, or the Result that ends this gateway's turn (no answer, rejected,
    unchanged)."""
    reply = t.command(gw, command, args, plan.reply_timeout_s)
    if reply is None:
        return Result(gw, NO_ANSWER, f"no reply to {command}")
    if reply.get("status") != "accepted":
        return Result(gw, REJECTED, f"{reply.get('reason')}: {reply.get('result', {}).get('detail', '')}"[:200])
    res: dict[str, Any] = reply.get("result", {})
    if res.get("result") == "unchanged":
        return Result(gw, UNCHANGED, "", res.get("config_hash", "") or res.get("release", ""))
    return res


def _settle(t: Transport, gw: str, status_command: str, plan: WavePlan, verdict: Callable[[dict[str, Any]], Result | str],
            clock: Callable[[], float]) -> Result:
    """Ask `status_command` every poll_s until `verdict` gives a Result (it returns what it waits for
    otherwise), or settle_timeout_s passes."""
    deadline = clock() + plan.settle_timeout_s
    last = "no status yet"
    while clock() < deadline:
        st = t.command(gw, status_command, {}, plan.reply_timeout_s)
        if st is not None and st.get("status") == "accepted":
            v = verdict(st.get("result", {}))
            if isinstance(v, Result):
                return v
            last = v
        time.sleep(plan.poll_s)
    return Result(gw, NO_ANSWER, f"not settled within {plan.settle_timeout_s:g} s ({last})")


def apply_one(t: Transport, gw: str, args: dict[str, Any], plan: WavePlan, clock: Callable[[], float] = time.monotonic) -> Result:
    """config_apply to one gateway, then config_status until the apply is committed or rolled back."""
    sent = _sent(t, gw, "config_apply", args, plan)
    if isinstance(sent, Result):
        return sent

    def verdict(s: dict[str, Any]) -> Result | str:
        if not s.get("pending_version") and s.get("last_apply_version") == args["version"]:
            if s.get("config_version") == args["version"] and not s.get("last_apply_error"):
                return Result(gw, COMMITTED, "", s.get("config_hash", ""))
            return Result(gw, ROLLED_BACK, s.get("last_apply_error", ""), s.get("config_hash", ""))
        return f"pending {s.get('pending_version')}"

    return _settle(t, gw, "config_status", plan, verdict, clock)


UPDATE_BUSY = ("downloading", "installing", "switching", "restarting")


def update_one(t: Transport, gw: str, args: dict[str, Any], plan: WavePlan, clock: Callable[[], float] = time.monotonic) -> Result:
    """`update` (args = the signed release manifest) to one gateway, then update_status until the
    release is committed, rolled back or failed before its switch (docs/fleet.md)."""
    sent = _sent(t, gw, "update", args, plan)
    if isinstance(sent, Result):
        return sent

    def verdict(s: dict[str, Any]) -> Result | str:
        if s.get("phase") == FAILED and s.get("version") == args["version"]:
            return Result(gw, FAILED, s.get("last_update_error", ""), s.get("release", ""))
        if s.get("phase") not in UPDATE_BUSY and not s.get("pending_version") and s.get("last_update_version") == args["version"]:
            if s.get("committed_version") == args["version"] and not s.get("last_update_error"):
                return Result(gw, COMMITTED, "", s.get("release", ""))
            return Result(gw, ROLLED_BACK, s.get("last_update_error", ""), s.get("release", ""))
        return f"{s.get('phase')} {s.get('bytes', 0)}/{s.get('of', 0)}"

    return _settle(t, gw, "update_status", plan, verdict, clock)


def roll_out(t: Transport, gateways: list[str], args: dict[str, Any], plan: WavePlan,
             on_result: Callable[[Result], None] = lambda r: None,
             one: Callable[[Transport, str, dict[str, Any], WavePlan], Result] = apply_one) -> list[Result]:
    """Waves of plan.wave_size in parallel; after each, stop if failures / done > max_failure_pct."""
    done: list[Result] = []
    for start in range(0, len(gateways), plan.wave_size):
        wave = gateways[start:start + plan.wave_size]
        with ThreadPoolExecutor(max_workers=len(wave)) as pool:
            for r in pool.map(lambda gw: one(t, gw, args, plan), wave):
                done.append(r)
                on_result(r)
        failed = sum(1 for r in done if r.outcome not in SUCCESS)
        if 100.0 * failed / len(done) > plan.max_failure_pct:
            why = f"stopped: {failed}/{len(done)} failed > {plan.max_failure_pct:g} %"  # the same words on every skipped line
            for gw in gateways[start + plan.wave_size:]:
                r = Result(gw, SKIPPED, why)
                done.append(r)
                on_result(r)
            break
    plan.results = done
    return done
