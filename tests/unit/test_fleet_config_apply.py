"""config_apply's pieces without a daemon (issue 20): bundle checks, the start-time decision, and
SIGKILL at random instants of the swap leaving the old or the new config, never a mix."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from gateway.errors import CommandRejected
from gateway.fleet.atomic import sha256_file, write_atomic
from gateway.fleet.bundle import candidate, make_bundle_args, parse_bundle
from gateway.fleet.commit import MAX_STARTS, ConfigCommit, unhealthy
from gateway.fleet.files import ConfigFiles, Pending

OLD = '[identity]\ngateway_id = "gw-1"\n\n[[contacts]]\nid = "guard"\nphone = "+8613800000001"\n'
NEW = OLD.replace("0001", "0099")


def _commit(tmp_path: Path, text: str = NEW) -> tuple[ConfigFiles, ConfigCommit]:
    files = ConfigFiles(tmp_path / "gateway.toml")
    files.config.write_text(text)
    return files, ConfigCommit(files, structlog.get_logger(), on_restart=lambda: None)


def test_bundle_is_refused_when_tampered_ambiguous_or_rehoming() -> None:
    args = make_bundle_args("v2", patch={"contacts": [{"id": "guard", "phone": "+1"}]})
    assert parse_bundle(args).version == "v2"
    cases: list[tuple[dict[str, Any], str]] = [
        ({**args, "patch": {"contacts": []}}, "hash_mismatch"),
        ({**args, "config": OLD}, "bad_bundle"),
        (make_bundle_args("v3", patch={"identity": {"gateway_id": "gw-2"}}), "bad_bundle"),
        ({**args, "commit_deadline_s": 1}, "bad_bundle"),
        ({**args, "extra": 1}, "bad_bundle"),
    ]
    for bad, reason in cases:
        with pytest.raises(CommandRejected) as exc:
            parse_bundle(bad)
        assert exc.value.reason == reason, bad


def test_an_identical_patch_or_whole_config_is_unchanged_whatever_the_formatting() -> None:
    same = parse_bundle(make_bundle_args("v1", patch={"contacts": [{"id": "guard", "phone": "+8613800000001"}]}))
    assert candidate(OLD, same) == (OLD, frozenset())
    assert candidate(OLD, parse_bundle(make_bundle_args("v1", config=OLD.replace("\n\n", "\n"))))[1] == frozenset()
    text, changed = candidate(OLD, parse_bundle(make_bundle_args("v2", patch={"contacts": [{"id": "guard", "phone": "+1"}]})))
    assert changed == {"contacts"} and '"+1"' in text
    with pytest.raises(CommandRejected):  # a whole config for another gateway
        candidate(OLD, parse_bundle(make_bundle_args("v2", config=OLD.replace("gw-1", "gw-2"))))


def test_health_names_what_blocks_the_commit() -> None:
    ok = {"active_alarms": 0, "tasks": {"rules": {"running": True}}, "uplink": {"up": True},
          "drivers": {"rs485": {"state": "ok"}, "lora": {"state": "starting", "detail": {"port_open": True}}}}
    assert unhealthy(ok, uplink_required=True) == []
    bad = {**ok, "uplink": {"up": False, "reason": "refused"}, "drivers": {"rs485": {"state": "down", "detail": {}}}}
    why = unhealthy(bad, uplink_required=True)
    assert any("rs485" in w for w in why) and any("uplink not acknowledged (refused)" in w for w in why)
    assert unhealthy(bad, uplink_required=False, excused=frozenset({"rs485"})) == []


def test_start_decides_interrupted_pending_and_crash_loop(tmp_path: Path) -> None:
    files, commit = _commit(tmp_path, OLD)
    assert commit.at_start() is None  # nothing pending
    # Killed between marker and rename: the old config is running, the marker is dropped.
    files.write_pending(Pending("v2", "0" * 64, sha256_file(files.config), 30, True, 0.0))
    assert commit.at_start() is None and files.pending() is None
    assert "interrupted" in files.state().last_apply_error
    # Swapped: watched, each start counted; past MAX_STARTS the last good config comes back.
    files.last_good.write_text(OLD)
    files.config.write_text(NEW)
    files.write_pending(Pending("v2", sha256_file(files.config), sha256_file(files.last_good), 30, True, 0.0))
    for n in range(1, MAX_STARTS + 1):
        p = commit.at_start()
        assert p is not None and p.starts == n
    assert commit.at_start() is None
    assert files.config.read_text() == OLD and files.pending() is None
    assert files.state().last_apply_error.startswith("crash loop") and files.state().last_apply_version == "v2"
    # A healthy start commits: version recorded, marker gone.
    files.config.write_text(NEW)
    files.write_pending(Pending("v3", sha256_file(files.config), "x", 30, True, 0.0))
    p = commit.at_start()
    assert p is not None
    commit.commit(p)
    assert files.state().config_version == "v3" and files.state().last_apply_error == "" and files.pending() is None


_CHILD = """
import sys, time
from pathlib import Path
from gateway.fleet.api import FleetApi
from gateway.fleet.atomic import sha256_file, write_atomic
from gateway.fleet.files import ConfigFiles, Pending
files = ConfigFiles(sys.argv[1])
texts = [Path(sys.argv[2]).read_text(), Path(sys.argv[3]).read_text()]
print("go", flush=True)
i = 0
while True:
    current = files.config.read_text()
    new = texts[1] if current == texts[0] else texts[0]
    write_atomic(files.staging, new.encode())
    p = Pending(str(i), __import__("hashlib").sha256(new.encode()).hexdigest(), sha256_file(files.config), 30, False, 0.0)
    FleetApi._swap(files, p, current)
    files.clear_pending()
    i += 1
"""


@pytest.mark.slow
def test_sigkill_at_random_instants_of_the_swap_leaves_old_or_new_never_a_mix(tmp_path: Path) -> None:
    rnd = random.Random(20)
    big_old = OLD + "# " + "x" * 200_000 + "\n"  # large enough that a torn write would show
    big_new = NEW + "# " + "y" * 200_000 + "\n"
    files, commit = _commit(tmp_path, big_old)
    (tmp_path / "old.txt").write_text(big_old)
    (tmp_path / "new.txt").write_text(big_new)
    seen = set()
    for _ in range(25):
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(files.config), str(tmp_path / "old.txt"), str(tmp_path / "new.txt")], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        time.sleep(rnd.uniform(0, 0.05))  # the instant of the power cut (no condition to wait for: it is random)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        text = files.config.read_text()
        assert text in (big_old, big_new), "torn config"
        pending = commit.at_start()  # what the next start would do
        if pending is not None:
            assert files.config.read_text() in (big_old, big_new) and pending.config_hash == sha256_file(files.config)
            seen.add("pending")
            files.clear_pending()
        seen.add("old" if text == big_old else "new")
    assert {"old", "new"} <= seen
    write_atomic(files.config, b"")  # keep tmp small


async def test_the_retained_status_carries_the_config_state_and_stays_valid(tmp_path: Path) -> None:
    from gateway.clock import Clock
    from gateway.config.schema import Credentials, Identity
    from gateway.config.schema import Uplink as UplinkCfg
    from gateway.uplink.client import Uplink
    from tests.integration.uplink_support import open_outbox
    from tests.unit.uplink_schema import check_message

    files, _ = _commit(tmp_path)
    files.update_state(config_version="v3", last_apply_version="v4", last_apply_error="not healthy within 8 s: uplink not acknowledged")
    clock = Clock("assume_synced")
    outbox = await open_outbox(tmp_path, clock)
    try:
        up = Uplink(UplinkCfg(broker_url="mqtt://127.0.0.1:9"), Credentials(), Identity(gateway_id="gw-001"), outbox, clock,
                    structlog.get_logger(), handlers={}, relay_handler=None,
                    status_provider=lambda: {"drivers": {}, "active_alarms": 0, "config": files.status_fields()})
        fields = up.status_fields()
        assert fields["config"]["config_version"] == "v3" and fields["config"]["config_hash"] == sha256_file(files.config)
        msg = up.env.status(clock.boot_id, clock.now(), True, fields)
        assert check_message(msg.topic, msg.payload) == []
    finally:
        await outbox.close()
