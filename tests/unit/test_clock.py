"""Stamps carry wall, boot id, monotonic and sync state; unsynced stamps re-base from monotonic time."""

from gateway.clock import Clock, ManualClock, kernel_clock_synced, read_boot_id


def test_system_clock_stamp_fields():
    c = Clock("assume_synced")
    s1, s2 = c.now(), c.now()
    assert s1.boot_id == read_boot_id() and len(s1.boot_id) >= 32
    assert s2.mono_ns >= s1.mono_ns and s1.clock_synced
    assert isinstance(kernel_clock_synced(), bool)


def test_rebase_after_ntp_step_uses_monotonic_time():
    c = ManualClock(wall_s=946_684_800.0, synced=False)  # 2000-01-01: fake-hwclock after a long power cut
    early = c.now()
    c.advance(30)
    assert not early.clock_synced
    c.step_wall(26 * 365.25 * 86400, synced=True)  # NTP sync: wall jumps, monotonic does not
    c.advance(10)
    rebased = c.rebase(early)
    assert rebased.clock_synced
    assert abs(rebased.wall_s - (c.wall() - 40)) < 1e-6
    assert rebased.mono_ns == early.mono_ns


def test_rebase_leaves_synced_and_other_boot_stamps_alone():
    c = ManualClock(synced=True)
    s = c.now()
    assert c.rebase(s) is s
    other = ManualClock(synced=False, boot_id="old-boot").now()
    assert c.rebase(other) is other
