"""SD wear at a glance (issue 17): `gateway status` shows bytes written per day, projected from the last
hour of the daemon's write_bytes, and says when the projection is still young."""

from __future__ import annotations

from gateway.cli.status import _store_line
from gateway.store.outbox import WearMeter


class Disk:
    """The meter's two inputs: a clock and a write_bytes counter, moved by the test."""

    def __init__(self) -> None:
        self.t, self.written = 1000.0, 0

    def advance(self, seconds: float, bytes_per_s: float) -> None:
        self.t += seconds
        self.written += int(seconds * bytes_per_s)


def meter(disk: Disk) -> WearMeter:
    return WearMeter(now=lambda: disk.t, read=lambda: disk.written)


def test_nothing_is_projected_before_two_samples_a_minute_apart() -> None:
    disk = Disk()
    m = meter(disk)
    m.sample()
    disk.advance(30, 1000)
    m.sample()  # under SAMPLE_S after the first: not taken
    assert (m.per_day(), m.span_s()) == (0, 0)


def test_a_steady_rate_is_projected_to_a_day_and_the_window_stops_at_an_hour() -> None:
    disk = Disk()
    m = meter(disk)
    for _ in range(90):  # 90 minutes at 500 B/s
        m.sample()
        disk.advance(60, 500)
    assert m.per_day() == 500 * 86400
    assert 3600 <= m.span_s() < 3600 + 2 * 60


def test_a_burst_weighs_less_once_the_hour_has_moved_past_it() -> None:
    disk = Disk()
    m = meter(disk)
    m.sample()
    disk.advance(60, 20_000)  # the first minute after a start: a new database, an alarm burst
    for _ in range(70):
        m.sample()
        disk.advance(60, 200)
    assert m.per_day() == 200 * 86400  # the burst has left the window


def test_status_line_says_how_young_the_projection_is() -> None:
    young = _store_line({"db_bytes": 1 << 20, "bytes_written": 5 << 20, "bytes_written_per_day": 100_000_000,
                         "bytes_written_span_s": 600})
    assert "/day over the last 10 min)" in young
    settled = _store_line({"db_bytes": 1 << 20, "bytes_written": 5 << 20, "bytes_written_per_day": 20_000_000,
                           "bytes_written_span_s": 3600})
    assert "/day)" in settled and "over the last" not in settled
