"""LoRaWAN 1.0.x MAC and crypto against public test vectors, the 32-bit frame-counter rules and the
regional parameters (drivers/lorawan/{mac,crypto,session,region}.py)."""

from __future__ import annotations

import pytest

from drivers.lorawan import crypto, mac
from drivers.lorawan.region import REGIONS
from drivers.lorawan.session import Session, fcnt_candidates
from gateway.errors import ConfigError, FrameError

# Public vector (anthonykirby/lora-packet README and tests; protocols.md §2.2, re-checked here).
NWK = bytes.fromhex("44024241ed4ce9a68c6a8bc055233fd3")
APP = bytes.fromhex("ec925802ae430ca77fd3dd73cb2cc588")


def test_data_frame_vector_mic_and_payload():
    f = mac.parse_data(bytes.fromhex("40F17DBE4900020001954378762B11FF0D"))
    assert (f.mtype, f.dev_addr, f.fcnt16, f.fport) == (mac.MType.UNCONFIRMED_UP, 0x49BE7DF1, 2, 1)
    assert mac.verify_data_mic(f, NWK, 2) and not mac.verify_data_mic(f, NWK, 2 + 0x10000)
    assert crypto.payload_cipher(APP, f.dev_addr, 2, crypto.UPLINK, f.frm_payload) == b"test"
    assert mac.build_data(mac.MType.UNCONFIRMED_UP, 0x49BE7DF1, 2, NWK, APP, fport=1, payload=b"test").hex().upper() == \
        "40F17DBE4900020001954378762B11FF0D"


def test_data_frame_vector_empty_payload():
    f = mac.parse_data(bytes.fromhex("40F17DBE49000300012A3518AF"))
    assert f.fcnt16 == 3 and f.fport == 1 and f.frm_payload == b"" and mac.verify_data_mic(f, NWK, 3)


def test_join_accept_vector_encrypts_and_mic_verifies():
    # Public vector (whad-client tests/lorawan): AppKey 0, JoinNonce 0x123456, NetID 0x42, DevAddr 0xAABBCC.
    ja = mac.JoinAccept((0x123456).to_bytes(3, "little"), (0x42).to_bytes(3, "little"), 0xAABBCC, 0, 0, 0)
    phy = mac.build_join_accept(bytes(16), ja)
    assert phy.hex() == "20fed423bb9faca7e68a967a02fde49c41"
    assert mac.open_join_accept(bytes(16), phy) == ja
    with pytest.raises(FrameError, match="join_accept_mic"):
        mac.open_join_accept(bytes(range(16)), phy)


def test_join_accept_with_eu868_cflist_round_trips():
    ja = mac.JoinAccept(b"\x01\x02\x03", b"\x00\x00\x00", 0x00A13100, 2, 0, 1, REGIONS["EU868"].cflist())
    assert len(ja.cflist) == 16 and ja.cflist[:3] == (8671000).to_bytes(3, "little")
    assert mac.open_join_accept(APP, mac.build_join_accept(APP, ja)) == ja


def test_join_request_mic_and_session_keys_match_device_side():
    phy = mac.build_join_request(APP, bytes(8), bytes.fromhex("0583146a1224e124"), 0xCC85)
    req = mac.parse_join_request(phy)
    assert req.dev_eui_hex == "24e124126a148305" and req.dev_nonce == 0xCC85
    assert crypto.join_mic(APP, req.signed) == req.mic
    nwk, app = crypto.session_keys(APP, b"\x01\x02\x03", b"\x00\x00\x00", (0xCC85).to_bytes(2, "little"))
    assert nwk != app and len(nwk) == len(app) == 16


@pytest.mark.parametrize("last, on_air, ahead0, behind", [
    (-1, 5, 5, []),  # no state: the counter is learnt (first epoch first)
    (10, 11, 11, []),  # next frame
    (65535, 0, 65536, [0]),  # rollover: only the MIC with 65,536 verifies; 0 itself is a replay candidate
    (70000, 70000 & 0xFFFF, 70000 + 0x10000, [70000, 70000 - 0x10000]),  # the same frame again
    (2000, 5, 65541, [5]),
])
def test_fcnt_candidates(last, on_air, ahead0, behind):
    ahead, back = fcnt_candidates(last, on_air, 4)
    assert ahead[0] == ahead0 and back == behind and all(c > last for c in ahead) and all(c <= last for c in back)


def test_downlink_counter_reserved_ahead_of_use():
    s = Session("d", 1, NWK, APP, otaa=True)
    assert s.next_fcnt_down() == (0, True)
    assert [s.next_fcnt_down()[1] for _ in range(31)] == [False] * 31
    assert s.next_fcnt_down() == (32, True)
    restored = Session.from_json(s.to_json())
    assert restored.fcnt_down == s.fcnt_down_reserved  # after a restart no counter is ever reused


def test_mac_commands_parse_and_answers():
    cmds = mac.parse_uplink_commands(bytes([0x02, 0x06, 0xFE, 0x3F, 0x99, 0x00]))
    assert cmds == [(mac.Cid.LINK_CHECK, b""), (mac.Cid.DEV_STATUS, b"\xfe\x3f")]  # 0x99 unknown: stops there
    assert mac.parse_dev_status_ans(b"\xfe\x3f") == (254, -1) and mac.parse_dev_status_ans(b"\xff\x05") == (None, 5)
    assert mac.link_check_ans(20, 1) == b"\x02\x14\x01"


def test_region_rx1_rules():
    cn = REGIONS["CN470"]
    assert cn.rx1_freq_mhz(486.3, 0) == 506.7 and cn.rx1_freq_mhz(470.3, 3) == 500.3  # channel 80 -> 32, 0 -> 0
    assert cn.rx1_dr(cn.dr_of("SF9BW125"), 2) == 1 and cn.cflist() == b"" and cn.rx2_freq_mhz == 505.3
    eu = REGIONS["EU868"]
    assert eu.rx1_freq_mhz(868.3, 1) == 868.3 and eu.rx2_freq_mhz == 869.525
    with pytest.raises(FrameError):
        cn.dr_of("SF7BW250")
    with pytest.raises(FrameError):
        cn.rx1_freq_mhz(868.1, 0)


@pytest.mark.parametrize("bad", ["", "00", "44024241ed4ce9a68c6a8bc055233fd3:zz", "a:b:c", "00" * 15])
def test_key_parsing_refuses_without_echoing(bad):
    with pytest.raises(ConfigError) as e:
        crypto.parse_keys("dev", bad)
    assert bad not in str(e.value) or not bad


@pytest.mark.parametrize("phy, reason", [
    (b"", "empty_phy"), (b"\x41" + bytes(20), "major_not_lorawan_r1"), (b"\x40\x01\x02", "short_data_frame"),
    (bytes([0x40, 1, 2, 3, 4, 0x0F, 0, 0]) + bytes(4), "fopts_beyond_frame"),
    (bytes([0x40, 1, 2, 3, 4, 0x01, 0, 0, 0x02, 0x00]) + bytes(4), "fopts_with_fport_0"),
])
def test_bad_frames_named(phy, reason):
    with pytest.raises(FrameError, match=reason):
        mac.parse_data(phy)
