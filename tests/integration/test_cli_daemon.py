"""The CLI against a running daemon (`gateway run` subprocess) polling simulated Modbus slaves on a pty:
every read command in human and --json form, poll, queue purge, and refusals."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli.main import cli
from tests.support.daemon import BUS, ROOT, DaemonProc, SimThread, write_config
from tests.support.wait import wait_for


class Gateway:
    def __init__(self, tmp, sim: SimThread, daemon: DaemonProc, config) -> None:
        self.tmp, self.sim, self.daemon, self.config = tmp, sim, daemon, config

    def run(self, *args: str, input: str | None = None):
        return CliRunner().invoke(cli, [*args], env={"COURTYARD_CONFIG": str(self.config)}, input=input)

    def json(self, *args: str):
        res = self.run(*args, "--json")
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    bus = str(tmp / "bus")
    config = write_config(tmp, bus)
    with SimThread(bus) as sim:
        daemon = DaemonProc(config, tmp / "run" / "control.sock").start()
        g = Gateway(tmp, sim, daemon, config)
        try:
            wait_for(lambda: all(d["state"] == "online" for d in g.json("devices")), timeout_s=30, what="all devices online")
            yield g
        finally:
            daemon.stop()


def test_status_json_has_uplink_queue_clock_drivers_alarms_and_disk(gw):
    st = gw.json("status")
    assert st["source"] == "daemon" and st["gateway_id"] == "gw-test-01"
    assert st["clock_synced"] is True
    assert st["drivers"]["rs485"]["state"] == "ok"
    assert set(st["store"]["depth"]) == {"alarm", "event", "status", "telemetry"}
    assert st["store"]["depth"]["telemetry"] > 0  # the polls are being queued
    assert st["disk"]["free_bytes"] > 0 and 0 <= st["disk"]["used_pct"] <= 100


def test_status_human_names_each_section(gw):
    res = gw.run("status")
    assert res.exit_code == 0, res.output
    for word in ("gateway gw-test-01", "uplink", "clock    synchronised", "queue    alarm 0", "disk", "rs485"):
        assert word in res.output


def test_devices_show_every_configured_device_with_last_values(gw):
    rows = gw.json("devices")
    assert sorted(r["id"] for r in rows) == sorted(dev for dev, _ in BUS.values())
    hydrant = next(r for r in rows if r["id"] == "hydrant-1")
    assert hydrant["state"] == "online" and "pressure_mpa" in hydrant["values"] and hydrant["battery"] is not None
    assert hydrant["last_seen_age_s"] < 30
    human = gw.run("devices")
    assert human.exit_code == 0 and "hydrant-2" in human.output and "3 devices, 0 not online" in human.output


def test_devices_filter_by_type(gw):
    rows = gw.json("devices", "--type", "relay_box")
    assert [r["id"] for r in rows] == ["guard-relay"]
    assert gw.run("devices", "--type", "toaster").exit_code == 2


def test_poll_shows_the_decoded_reading_now(gw):
    items = gw.json("poll", "hydrant-1")
    readings = [i for i in items if i["type"] == "reading"]
    assert readings and "pressure_mpa" in readings[0]["values"]
    human = gw.run("poll", "hydrant-2")
    assert human.exit_code == 0 and "reading pressure_mpa=" in human.output


def test_poll_of_an_unknown_device_is_refused_with_exit_1(gw):
    res = gw.run("poll", "no-such-device")
    assert res.exit_code == 1
    assert "unknown_device" in res.stderr


def test_queue_shows_depth_per_class(gw):
    q = gw.json("queue")
    assert q["source"] == "daemon" and q["depth"]["telemetry"] > 0
    res = gw.run("queue")
    assert res.exit_code == 0 and "telemetry" in res.output and "OLDEST" in res.output


def test_queue_purge_asks_first_and_only_purges_telemetry(gw):
    declined = gw.run("queue", "purge", "--telemetry", "--older-than", "0s", input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    before = gw.json("queue")["depth"]
    done = gw.json("queue", "purge", "--telemetry", "--older-than", "0s", "--yes")
    assert done["class"] == "telemetry" and done["purged"] >= before["telemetry"]
    after = gw.json("queue")["depth"]
    assert after["alarm"] == before["alarm"] and after["event"] >= before["event"]
    assert gw.run("queue", "purge", "--older-than", "1d", "--yes").exit_code == 2  # --telemetry is required


def test_alarms_with_none_active_is_an_empty_list_and_acking_an_unknown_id_is_refused(gw):
    assert gw.json("alarms") == []
    res = gw.run("alarms", "ack", "a-1")
    assert res.exit_code == 1 and "unknown_alarm" in res.stderr


def test_modbus_probe_refuses_politely_while_the_daemon_holds_the_port(gw):
    res = gw.run("modbus", "scan", str(gw.tmp / "bus"), "--ids", "1-3")
    assert res.exit_code == 3
    assert "the gateway daemon holds" in res.stderr and "systemctl stop" in res.stderr


def test_selftest_sounder_pulses_the_relay_coil_on_then_off(gw):
    proc = subprocess.Popen(
        [sys.executable, "-c", "from gateway.cli.main import cli; cli()", "selftest", "--sounder", "--json"],
        cwd=ROOT, env={**os.environ, "COURTYARD_CONFIG": str(gw.config)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    wait_for(lambda: gw.sim.sim.output(10, "sounder"), timeout_s=20, what="sounder coil on")
    out, err = proc.communicate(timeout=30)
    assert gw.sim.sim.output(10, "sounder") in (0, False)
    report = json.loads(out)
    sounder = [c for c in report["checks"] if c["name"] == "sounder guard-relay"]
    assert sounder and sounder[0]["ok"], report
    # mqtt:// on a bench broker is not TLS: the checklist must not pass as a whole.
    assert proc.returncode == 1 and not report["ok"]
    assert next(c for c in report["checks"] if c["name"] == "broker")["reason"].endswith("is not TLS")


def test_a_process_without_the_group_is_refused(gw):
    """uid/gid 65534 with no groups: the 0660 socket refuses it and the CLI says why (exit 3).

    The client keeps one capability, CAP_DAC_READ_SEARCH: it may read the checkout wherever it was
    cloned (a `mktemp -d` parent is 0700 and nobody could import the package: issue 16), but it grants
    no write permission, and connecting to a unix socket needs write permission on the socket file."""
    assert os.geteuid() == 0, "this test needs root to drop to another uid (CI runs as root)"
    assert shutil.which("setpriv"), "setpriv (util-linux) is required"
    os.chmod(gw.tmp / "run", 0o755)
    # click checks --config with access(2): real uid, no capabilities, so every directory above the file
    # must let others through. pytest's own tree does not (/tmp/pytest-of-root is 0700, and under xdist it
    # sits one level further up), so the client gets a copy of the config, same socket, in a dir of its own.
    with tempfile.TemporaryDirectory(prefix="cli-nobody-") as d:
        here = Path(d)
        here.chmod(0o755)
        assert all(os.stat(p).st_mode & stat.S_IXOTH for p in here.parents), f"{here.parent} is closed to others"
        config = here / gw.config.name
        shutil.copy(gw.config, config)
        shutil.copytree(gw.tmp / "profiles", here / "profiles")
        config.chmod(0o644)
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             "--inh-caps=-all,+dac_read_search", "--ambient-caps=+dac_read_search", "--bounding-set=-all,+dac_read_search",
             sys.executable, "-c", "from gateway.cli.main import cli; cli()", "status", "--config", str(config)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode == 3, proc.stderr
    assert "permission denied" in proc.stderr and "no access to the daemon's socket" in proc.stderr
    # The daemon runs: advise joining the group, never "start it" (issue 18).
    assert "usermod -aG" in proc.stderr and "systemctl start" not in proc.stderr
