"""F1 for the LoRaWAN path: random datagrams, random GWMP JSON and random PHYPayloads into the driver's
receive path never raise, never hit the driver's internal-error guard, and never emit a Reading/Event for
a frame without a valid MIC; a random mutation of a genuine frame is never accepted with other content."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.lorawan import mac
from drivers.lorawan.simdevices import SimDevice
from tests.fuzz.support import FUZZ, mutated
from tests.integration.lorawan_rig import APP_SKEY, NWK_SKEY, SMOKE_ADDR, build_driver

EUI = bytes.fromhex("0016c001ff10a235")
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                           max_leaves=20)
RXPK_KEYS = ("tmst", "freq", "datr", "data", "stat", "modu", "size", "rssi", "lsnr", "chan", "rfch", "codr")


_DRIVER = []


def driver():
    """One driver for all examples (building one per example costs more than the example); state carries
    over between examples, which only widens what is explored."""
    if not _DRIVER:
        _DRIVER.append(build_driver(1700, None))
    d = _DRIVER[0]
    d.emitted = []
    d._emit = d.emitted.append
    return d


def healthy(d) -> bool:
    return d.counters.get("internal_errors", 0) == 0 and d.health().state is not None


@FUZZ
@given(st.binary(max_size=600))
def test_random_datagrams_never_crash(data):
    d = driver()
    d.on_datagram(data, ("127.0.0.1", 1680))
    assert healthy(d) and d.emitted == []


@FUZZ
@given(st.dictionaries(st.sampled_from(["rxpk", "stat", "txpk_ack", "x"]), json_values, max_size=3),
       st.sampled_from([0, 2, 5]))
def test_random_gwmp_json_never_crashes(body, ident):
    d = driver()
    d.on_datagram(bytes([2, 0, 1, ident]) + EUI + json.dumps(body).encode(), ("127.0.0.1", 1680))
    assert healthy(d) and d.emitted == []


@pytest.mark.slow  # ~13 s: hypothesis draws nested JSON for twelve optional fields
@FUZZ
@given(st.lists(st.fixed_dictionaries({}, optional={k: json_values for k in RXPK_KEYS}), max_size=3),
       st.binary(min_size=1, max_size=80))
def test_random_rxpk_fields_and_phy_never_crash(entries, phy):
    d = driver()
    rx = [{**e, "data": base64.b64encode(phy).decode()} if i == 0 else e for i, e in enumerate(entries)]
    d.on_datagram(bytes([2, 0, 1, 0]) + EUI + json.dumps({"rxpk": rx}).encode(), ("127.0.0.1", 1680))
    assert healthy(d) and d.emitted == []  # random bytes never carry a valid MIC


@FUZZ
@given(st.data())
def test_mutated_genuine_frame_never_accepted_with_other_content(data):
    dev = SimDevice.abp("smoke", int(SMOKE_ADDR, 16), bytes.fromhex(NWK_SKEY), bytes.fromhex(APP_SKEY))
    genuine = dev.report("alarm")
    bad = data.draw(mutated(genuine))
    d = driver()
    rx = {"tmst": 1, "freq": 486.3, "datr": "SF7BW125", "data": base64.b64encode(bad).decode()}
    d.on_datagram(bytes([2, 0, 1, 0]) + EUI + json.dumps({"rxpk": [rx]}).encode(), ("127.0.0.1", 1680))
    assert healthy(d)
    if d.emitted:  # accepted only if the mutation kept the signed content (e.g. it changed nothing)
        assert mac.parse_data(bad).signed == mac.parse_data(genuine).signed
