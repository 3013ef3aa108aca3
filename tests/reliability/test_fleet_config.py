"""config_apply against mosquitto, the simulated courtyard and the real daemon (issue 20): a contacts
patch reaches the next SMS; an identical bundle restarts nothing; tampered, forged and replayed
commands are refused; a wrong broker URL rolls back by itself; SIGKILL during an apply leaves the old
or the new config, never a mix. The harness restarts the daemon on RESTART_EXIT like systemd."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.fleet.bundle import make_bundle_args
from tests.reliability.fleet_rig import FleetRig
from tests.support.wait import async_wait_for

pytestmark = pytest.mark.slow
NEW_GUARD = "+8613900000099"


@pytest.fixture
async def frig(request: pytest.FixtureRequest, tmp_path: Path, broker: Any) -> AsyncIterator[FleetRig]:
    r = FleetRig(tmp_path, broker)
    await r.start_all()
    yield r
    print(f"FLEET {request.node.name}: {r.figures}")
    codes = await r.stop()
    assert all(c == 0 for c in codes), f"daemon exit codes {codes}: {r.log.read_text()[-3000:]}"


def _doc(r: FleetRig) -> dict[str, Any]:
    return tomllib.loads(r.config.read_text())


def _contacts_patch(r: FleetRig, phone: str) -> dict[str, Any]:
    contacts = _doc(r)["contacts"]
    for c in contacts:
        if c["id"] == "guard":
            c["phone"] = phone
    return {"contacts": contacts}


async def test_contacts_patch_reaches_the_next_sms_identical_restarts_nothing_forgeries_refused(frig: FleetRig) -> None:
    r = frig
    before = r.config.read_bytes()
    pid0 = r.daemons[-1].pid

    # Refused, nothing touched: a tampered bundle, a wrong signature.
    args = make_bundle_args("v2", patch=_contacts_patch(r, NEW_GUARD), commit_deadline_s=30)
    tampered = {**args, "patch": _contacts_patch(r, "+8613900000666")}
    assert (await r.send(r.signed("config_apply", tampered)))["reason"] == "hash_mismatch"
    forged = json.loads(r.signed("config_apply", args))
    forged["sig"] = "0" * 64
    assert (await r.send(json.dumps(forged).encode()))["reason"] == "bad_signature"
    # A bundle that `gateway config check` would refuse: refused with its problems, nothing written.
    bad_contacts = [*_doc(r)["contacts"], {"id": "x", "name": "x", "role": "no_such_role", "phone": "+1"}]
    bad = await r.send(r.signed("config_apply", make_bundle_args("v-bad", patch={"contacts": bad_contacts})))
    assert bad["reason"] == "invalid_config" and "role" in bad["result"]["detail"], bad
    assert not Path(str(r.config) + ".staging").exists()
    # An identical bundle: accepted, "unchanged", the same daemon keeps running.
    same = await r.send(r.signed("config_apply", make_bundle_args("v1", patch={"contacts": _doc(r)["contacts"]})))
    assert same["status"] == "accepted" and same["result"]["result"] == "unchanged", same
    assert r.config.read_bytes() == before and r.daemons[-1].pid == pid0 and not r.restarted

    # The real patch: [contacts] only, taken in place by the running daemon (no stage stops), committed.
    payload = r.signed("config_apply", args)
    reply = await r.send(payload)
    assert reply["status"] == "accepted" and reply["result"]["result"] == "applied", reply
    assert reply["result"]["reloaded"] == ["contacts"]
    r.figures["contacts_reload_ms"] = reply["result"]["reload_ms"]  # the alarm path never stopped
    st = await _config_status(r, lambda s: s["config_version"] == "v2")
    assert st["last_apply_error"] == "" and st["config_hash"] == hashlib.sha256(r.config.read_bytes()).hexdigest()
    assert not Path(str(r.config) + ".pending").exists() and Path(str(r.config) + ".last-good").read_bytes() == before
    assert r.daemons[-1].pid == pid0 and not r.restarted

    # The next alarm texts the new number.
    n_old = sum(1 for num, _ in r.cy.sims["sms"].texts() if num == "+8613800000001")
    dev = r.smoke_device()
    await r.smoke(expect_sms=False, dev=dev)
    await async_wait_for(lambda: any(num == NEW_GUARD for num, _ in r.cy.sims["sms"].texts()), 20, what="SMS to the new guard number")
    assert sum(1 for num, _ in r.cy.sims["sms"].texts() if num == "+8613800000001") == n_old

    # A section the stages cannot take in place ([log]): the daemon restarts on it and commits.
    log_section = {**_doc(r).get("log", {}), "damp_s": 7.0}
    payload = r.signed("config_apply", make_bundle_args("v3", patch={"log": log_section}, commit_deadline_s=30))
    t_reply0 = time.monotonic()
    reply = await r.send(payload)
    assert reply["status"] == "accepted" and reply["result"]["result"] == "restarting", reply
    await async_wait_for(lambda: r.restarted, 20, what="restart exit")
    t_ready = await r.wait_alarm_path()
    r.figures["alarm_path_stopped_max_s"] = round(t_ready - t_reply0 - 1.0, 2)  # minus the 1 s reply grace (path still up)
    r.figures["restart_exit_to_ready_s"] = round(t_ready - r.restart_times[0], 2)
    st = await _config_status(r, lambda s: s["config_version"] == "v3")
    assert st["last_apply_error"] == "" and _doc(r)["log"]["damp_s"] == 7.0

    # A replay of an applied command is refused, even after the restart (persisted nonces).
    assert (await r.send(payload))["reason"] == "replayed"


async def _config_status(r: FleetRig, cond: Any, timeout_s: float = 40) -> dict[str, Any]:
    """config_status over the uplink until cond holds (the daemon may be restarting meanwhile)."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            rep = await r.send(r.signed("config_status", {}), timeout_s=5)
        except TimeoutError:
            continue
        last = rep.get("result", {})
        if rep["status"] == "accepted" and cond(last):
            return last
        await asyncio.sleep(0.2)
    raise TimeoutError(f"config_status never matched; last {last}")


async def test_wrong_broker_url_rolls_back_by_itself_and_says_why(frig: FleetRig) -> None:
    r = frig
    before = r.config.read_bytes()
    uplink = {**_doc(r)["uplink"], "broker_url": "mqtt://127.0.0.1:9"}  # nothing listens on discard
    t0 = time.monotonic()
    reply = await r.send(r.signed("config_apply", make_bundle_args("bad-url", patch={"uplink": uplink}, commit_deadline_s=8)))
    assert reply["result"]["result"] == "restarting", reply
    st = await _config_status(r, lambda s: s["last_apply_version"] == "bad-url" and s["last_apply_error"], timeout_s=60)
    r.figures["rollback_reported_s"] = round(time.monotonic() - t0, 1)
    assert "uplink not acknowledged" in st["last_apply_error"], st
    assert st["config_version"] != "bad-url"
    assert r.config.read_bytes() == before and len(r.restarted) == 2  # to the bad config, back to the good one
    await r.wait_alarm_path()


async def test_sigkill_at_random_instants_during_apply_leaves_old_or_new(frig: FleetRig) -> None:
    r = frig
    rnd = random.Random(20)
    old = r.config.read_bytes()
    outcomes = []
    for i in range(5):
        phone = f"+86139000001{i:02d}"
        args = make_bundle_args(f"k{i}", patch=_contacts_patch(r, phone), commit_deadline_s=30)
        proc = r.daemons[-1]
        await asyncio.to_thread(r.platform.publish, "cg/v1/gw-xinhong-03/cmd", r.signed("config_apply", args))  # type: ignore[union-attr]
        await asyncio.sleep(rnd.uniform(0.0, 0.25))  # a random instant: before, during or after the swap
        proc.kill()
        proc.wait(10)
        text = r.config.read_bytes()
        new_contacts = _contacts_patch(r, phone)["contacts"] if text != old else None
        assert text == old or _doc(r)["contacts"] == new_contacts, "config is neither old nor new"
        outcomes.append("new" if text != old else "old")
        r.daemons.remove(proc)
        r.restarted.append(proc)  # killed on purpose: kept out of the exit-0 check
        await r.run_daemon()
        st = await _config_status(r, lambda s: not s["pending_version"])
        assert st["config_hash"] == hashlib.sha256(r.config.read_bytes()).hexdigest()
        old = r.config.read_bytes()
    r.figures["kill_outcomes"] = ",".join(outcomes)  # type: ignore[assignment]
    await r.wait_alarm_path()


async def test_remote_diagnostics_are_allow_listed_and_bounded(frig: FleetRig) -> None:
    import base64
    import zlib

    r = frig
    sb = await r.send(r.signed("support_bundle", {}))
    assert sb["status"] == "accepted", sb
    res = sb["result"]
    assert res["status"]["gateway_id"] == "gw-xinhong-03" and "rs485" in res["status"]["drivers"]
    assert res["config"]["config_hash"] == hashlib.sha256(r.config.read_bytes()).hexdigest()
    assert res["versions"]["gateway"] and res["disk"]["free"] > 0 and "store" in res["status"]

    st = await r.send(r.signed("selftest", {}))
    names = {c["name"] for c in st["result"]["checks"]}
    assert {"daemon", "clock", "disk"} <= names, st

    lines: list[dict[str, Any]] = []
    after, chunks = 0, 0
    while chunks < 50:
        rep = (await r.send(r.signed("logs_fetch", {"after_seq": after, "max_bytes": 1024})))["result"]
        assert len(rep["data"]) <= 1024
        if rep["data"]:
            lines += [json.loads(x) for x in zlib.decompress(base64.b64decode(rep["data"])).decode().split("\n")]
        after, chunks = rep["next_seq"], chunks + 1
        if not rep["more"]:
            break
    assert chunks > 1 and any(ln.get("event") == "store_opened" for ln in lines), [ln.get("event") for ln in lines][:30]
    assert [ln["_seq"] for ln in lines] == sorted({ln["_seq"] for ln in lines})  # no gap, no repeat

    mb = await r.send(r.signed("modbus_read", {"device_id": "guard-relay"}))
    assert mb["status"] == "accepted" and mb["result"]["device_id"] == "guard-relay", mb
    lora_dev = r.cy.spec.lora.devices[0].id
    assert (await r.send(r.signed("modbus_read", {"device_id": lora_dev})))["reason"] == "not_modbus"
    assert (await r.send(r.signed("shell", {"cmd": "id"})))["reason"] == "unknown_command"


async def test_gateway_fleet_apply_and_status_over_the_broker(frig: FleetRig, tmp_path: Path) -> None:
    import sys

    from tests.reliability.matrix_rig import ROOT

    r = frig
    key_id, key = r.key
    (tmp_path / "key.hex").write_text(key)
    from tomli_w import dumps

    (tmp_path / "patch.toml").write_text(dumps(_contacts_patch(r, "+8613900000055")))
    common = ["--broker", r.broker.url, "--key-id", key_id, "--key-file", str(tmp_path / "key.hex"), "--gateway", "gw-xinhong-03"]

    async def cli(*argv: str) -> tuple[int, str]:
        p = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "fleet", *argv, *common, cwd=ROOT,
                                                 stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(p.communicate(), 120)
        return p.returncode or 0, out.decode()

    code, out = await cli("apply", "--version", "cli-1", "--patch", str(tmp_path / "patch.toml"), "--deadline-s", "30")
    assert code == 0 and "gw-xinhong-03\tcommitted" in out, out
    assert next(c for c in _doc(r)["contacts"] if c["id"] == "guard")["phone"] == "+8613900000055"
    code, out = await cli("status")
    assert code == 0 and out.startswith("gw-xinhong-03\tcli-1\t"), out
