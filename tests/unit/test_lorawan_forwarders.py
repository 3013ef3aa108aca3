"""The forwarder table (drivers/lorawan/forwarders.py): bounded whatever EUIs a flood brings, a known forwarder
never pushed out by new ones, a silent one making room, and gateway_euis refusing the rest."""

from drivers.lorawan.forwarders import MAX_FORWARDERS, Forwarders


def _heard(table: Forwarders, n: int, now: float) -> None:
    fwd, why = table.admit(n.to_bytes(8, "big"), now)
    assert fwd is not None and why == ""
    fwd.last_pull_mono = now


def test_a_flood_of_new_euis_cannot_grow_the_table_or_push_out_the_real_forwarder():
    table = Forwarders(timeout_s=30.0, started_mono=0.0, allowed=[])
    real = bytes.fromhex("0016c001ff10a235")
    fwd, _ = table.admit(real, 1.0)
    fwd.last_pull_mono = 1.0
    for n in range(1, MAX_FORWARDERS):
        _heard(table, n, 2.0)
    refused = [table.admit((1000 + n).to_bytes(8, "big"), 3.0) for n in range(10_000)]
    assert {why for _f, why in refused} == {"forwarder_table_full"} and len(table.by_eui) == MAX_FORWARDERS
    assert table.admit(real, 3.0) == (fwd, "")  # known: always admitted
    # Past the timeout the flood's entries are silent; the real forwarder kept talking: a newcomer replaces a silent one.
    fwd.last_pull_mono = 40.0
    newcomer, why = table.admit(bytes(8), 40.0)
    assert newcomer is not None and why == "" and real.hex() in table.by_eui and len(table.by_eui) == MAX_FORWARDERS
    assert (1).to_bytes(8, "big").hex() not in table.by_eui  # the longest silent went (the first of those heard at 2.0)


def test_gateway_euis_refuse_every_other_forwarder():
    table = Forwarders(timeout_s=30.0, started_mono=0.0, allowed=["0016C001FF10A235"])
    assert table.admit(bytes.fromhex("0016c001ff10a235"), 1.0)[1] == ""
    assert table.admit(bytes(8), 1.0) == (None, "unknown_gateway_eui") and len(table.by_eui) == 1
