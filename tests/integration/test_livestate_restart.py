"""Issue 18: a device's last-seen survives a daemon restart. Before, every device with a 12 h (LoRa) or
24 h (NB-IoT) heartbeat read as offline for up to a day after a reboot."""

from __future__ import annotations

from tests.support.daemon import BUS, DaemonProc, SimThread, write_config
from tests.support.wait import wait_for


def _devices(socket_path) -> list[dict]:
    from gateway.control.client import call

    reply = call(str(socket_path), "devices", timeout_s=5)
    assert reply.ok, reply
    return reply.result


def test_last_seen_survives_a_restart_while_the_devices_are_silent(tmp_path):
    bus = str(tmp_path / "bus")
    config = write_config(tmp_path, bus)
    sock = tmp_path / "run" / "control.sock"
    with SimThread(bus) as sim:
        daemon = DaemonProc(config, sock).start()
        try:
            wait_for(lambda: all(d.get("last_seen_wall") for d in _devices(sock)), 30, what="every device heard")
            before = {d["id"]: d["last_seen_wall"] for d in _devices(sock)}
        finally:
            daemon.stop()  # SIGTERM: the snapshot is saved at stop
        for unit in BUS:
            sim.sim.set_fault(unit, silent=True)  # nothing is heard after the restart
        daemon = DaemonProc(config, sock).start()
        try:
            rows = _devices(sock)
            assert {d["id"] for d in rows} == set(before)
            for d in rows:
                assert d["restored"] is True, d
                assert d["last_seen_wall"] >= before[d["id"]] - 1e-6, d
        finally:
            daemon.stop()
