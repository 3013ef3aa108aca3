"""NB-IoT sequence numbers on both paths (modem datagrams and platform relay) under the shared anti-replay
rule, with the state in a real directory: a restart keeps de-dup, an old sequence is a suspect whose
alarm is still raised (flagged), a sensor reboot or 16-bit wrap re-syncs instead of deafening."""

from __future__ import annotations

import structlog

from drivers.cellular.config import NbiotProfile
from drivers.cellular.ingest import Ingest
from drivers.cellular.relay import RelayIngest
from drivers.cellular.simnbiot import make_imei
from drivers.codecs import nbiot_smoke as c
from drivers.counters import CounterStore
from gateway.clock import ManualClock
from gateway.model import Device, DeviceType, EventKind

IMEI = make_imei(1)
DEVICES = (Device("smoke-1", "p", DeviceType.SMOKE, "nbiot", IMEI),)
LOG = structlog.get_logger("test")


class Path:
    """The relay path with its Ingest built like NbiotDriver builds it, on a state directory."""

    def __init__(self, state_dir, clock: ManualClock) -> None:
        self.store = CounterStore(state_dir, "nbiot", LOG)
        self.ingest = Ingest(DEVICES, {"p": NbiotProfile(codec="nbiot_smoke_v1")}, clock, store=self.store, resync_min_s=0)
        self.items: list = []
        self.relay = RelayIngest(self.ingest, self.items.append, clock, LOG)

    def send(self, msg_type: int, seq: int, **kw) -> dict:
        return self.relay.submit({"imei": IMEI, "payload_hex": c.encode(IMEI, msg_type, seq, **kw).hex()})

    def kinds(self) -> list[str]:
        return [str(i.kind) for i in self.items if hasattr(i, "kind")]


def test_a_restart_keeps_de_dup_and_the_first_datagram_after_it_is_not_trusted(tmp_path):
    clock = ManualClock()
    p = Path(tmp_path, clock)
    p.send(c.HEARTBEAT, 40)
    p.send(c.HEARTBEAT, 41)
    p.store.flush_sync()  # what the driver's flusher does on stop (and every 30 s)
    again = Path(tmp_path, clock)
    assert again.send(c.HEARTBEAT, 41)["duplicate"] is True  # the sensor's retry after our restart
    out = again.send(c.HEARTBEAT, 10)  # a recorded old heartbeat
    assert out["replay_suspect"] is True and again.kinds() == ["security"]
    assert again.ingest.counters["replay_suspects"] == 1
    assert again.send(c.HEARTBEAT, 42)["duplicate"] is False and again.kinds()[-1] == "heartbeat"


def test_an_old_alarm_is_raised_flagged_and_a_clearing_is_dropped(tmp_path):
    p = Path(tmp_path, ManualClock())
    p.send(c.ALARM, 100)
    p.send(c.ALARM_CLEARED, 101)
    p.send(c.HEARTBEAT, 150)
    p.items.clear()
    p.send(c.ALARM, 100, flags=1)  # other content than the accepted 100: not a duplicate
    p.send(c.ALARM_CLEARED, 60)
    alarms = [i for i in p.items if i.kind == EventKind.ALARM]
    assert len(alarms) == 1 and alarms[0].detail["replay_suspect"] is True
    assert EventKind.ALARM_CLEARED not in [i.kind for i in p.items if hasattr(i, "kind")]
    sec = [i for i in p.items if i.kind == EventKind.SECURITY]
    assert [s.detail["alarm"] for s in sec] == [True, False] and sec[0].via == "platform-relay"


def test_late_datagram_inside_the_reorder_window_is_accepted_once(tmp_path):
    p = Path(tmp_path, ManualClock())
    p.send(c.HEARTBEAT, 7)
    p.send(c.HEARTBEAT, 9)
    assert p.send(c.HEARTBEAT, 8)["replay_suspect"] is False and p.kinds().count("heartbeat") == 3
    assert p.send(c.HEARTBEAT, 8)["duplicate"] is True


def test_sensor_reboot_or_wrap_resyncs_and_an_alarm_meanwhile_is_never_lost(tmp_path):
    p = Path(tmp_path, ManualClock())
    p.send(c.HEARTBEAT, 65530)
    p.items.clear()
    p.send(c.HEARTBEAT, 1)  # rebooted (or wrapped): below the mark
    p.send(c.ALARM, 2)  # a real fire during the re-sync: raised, flagged
    p.send(c.HEARTBEAT, 3)  # the third increasing frame: the new epoch
    assert p.kinds() == ["security", "security", "alarm", "counter_reset", "heartbeat"]
    assert p.send(c.HEARTBEAT, 4)["replay_suspect"] is False and p.ingest.counters["resyncs"] == 1
