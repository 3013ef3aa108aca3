"""GWMP v2 parsing (drivers/lorawan/gwmp.py): the datagrams lora_pkt_fwd sends, and the bad inputs
protocols.md §2.2 lists — each a named FrameError or a skipped rxpk, never an exception."""

from __future__ import annotations

import base64
import json
import random

import pytest

from drivers.lorawan import gwmp
from gateway.errors import FrameError

EUI = bytes.fromhex("0016c001ff10a235")


def push(body: dict | bytes, version: int = 2) -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return bytes([version, 0x12, 0x34, 0x00]) + EUI + raw


def test_push_data_as_the_forwarder_sends_it():
    # Shape of PROTOCOL.md §4 example, with a real PHYPayload.
    phy = bytes.fromhex("40F17DBE4900020001954378762B11FF0D")
    body = {"rxpk": [{"time": "2013-03-31T16:21:17.528002Z", "tmst": 3512348611, "chan": 2, "rfch": 0, "freq": 866.349812,
                      "stat": 1, "modu": "LORA", "datr": "SF7BW125", "codr": "4/6", "rssi": -35, "lsnr": 5.1, "size": 17,
                      "data": base64.b64encode(phy).decode()}],
            "stat": {"time": "2014-01-12 08:59:28 GMT", "rxnb": 2, "rxok": 2, "rxfw": 2, "ackr": 100.0, "dwnb": 2, "txnb": 2}}
    p = gwmp.parse(push(body))
    assert (p.version, p.token, p.ident, p.eui) == (2, 0x1234, gwmp.Ident.PUSH_DATA, EUI)
    (rx,) = p.rxpk
    assert rx.data == phy and rx.tmst == 3512348611 and rx.rssi_dbm == -35 and rx.lsnr_db == 5.1 and rx.codr == "4/6"
    assert p.stat["rxnb"] == 2 and p.rejected == ()


def test_unpadded_base64_accepted():
    phy = bytes(range(13))
    data = base64.b64encode(phy).decode().rstrip("=")
    (rx,) = gwmp.parse(push({"rxpk": [{"tmst": 1, "freq": 486.3, "datr": "SF7BW125", "data": data}]})).rxpk
    assert rx.data == phy


@pytest.mark.parametrize("entry, reason", [
    ({"tmst": 1, "freq": 486.3, "datr": "SF7BW125", "data": "AAAA", "stat": -1}, "crc_failed"),
    ({"tmst": 1, "freq": 486.3, "datr": 50000, "modu": "FSK", "data": "AAAA"}, "not_lora"),
    ({"tmst": 1, "freq": 486.3, "datr": "SF7BW125", "data": "!!!"}, "data_not_base64"),
    ({"tmst": 1, "freq": 486.3, "datr": "SF7BW125", "data": 7}, "data_not_string"),
    ({"tmst": 1, "freq": 486.3, "datr": "SF7BW125", "data": "AAAA", "size": 9}, "size_mismatch"),
    ({"freq": 486.3, "datr": "SF7BW125", "data": "AAAA"}, "tmst_not_a_number"),
    ({"tmst": 1, "freq": "486.3", "datr": "SF7BW125", "data": "AAAA"}, "freq_not_a_number"),
    ({"tmst": 1, "freq": 486.3, "datr": "SF7BW125", "data": ""}, "bad_size"),
    ("not an object", "not_an_object"),
])
def test_bad_rxpk_skipped_and_named(entry, reason):
    p = gwmp.parse(push({"rxpk": [entry]}))
    assert p.rxpk == () and p.rejected == (reason,) and reason in gwmp.RXPK_REASONS


@pytest.mark.parametrize("datagram, reason", [
    (b"\x02\x00", "short_datagram"), (b"\x03\x00\x00\x00", "bad_version"), (b"\x02\x00\x00\x09", "unknown_ident"),
    (b"\x02\x00\x00\x00\x01\x02", "short_datagram"), (push(b"{\"rxpk\": [1,"), "bad_json"),
    (push(b"/* comment */ {}"), "bad_json"), (push(b"{\"stat\": NaN}"), "bad_json"), (push(b"[1, 2]"), "bad_json"),
    (b"\x02\x00\x00\x03{}", "pull_resp_without_txpk"),
])
def test_bad_datagrams_named(datagram, reason):
    with pytest.raises(FrameError) as caught:
        gwmp.parse(datagram)
    assert caught.value.reason == reason  # a fixed word: it names a counter; what varied is in .detail


def test_a_flood_of_varied_garbage_names_only_a_few_counters():
    """Counter names come from a closed vocabulary whatever the bytes: every version byte, identifier and
    broken JSON once gave its own reason (reject_bad_version_143, reject_bad_json: ... (byte 12)...)."""
    rng = random.Random(3)
    reasons = set()
    for _ in range(3000):
        datagram = bytes([rng.randrange(256)]) + rng.randbytes(rng.randrange(0, 40))
        if rng.random() < 0.5:
            datagram = bytes([2]) + rng.randbytes(2) + bytes([0]) + rng.randbytes(8) + rng.randbytes(rng.randrange(1, 30))
        try:
            reasons.update(f"rxpk_{r}" for r in gwmp.parse(datagram).rejected)
        except FrameError as exc:
            reasons.add(exc.reason)
    assert reasons <= {"short_datagram", "bad_version", "unknown_ident", "bad_json", "pull_resp_without_txpk"} | {
        f"rxpk_{r}" for r in gwmp.RXPK_REASONS | {"bad_rxpk"}}


def test_pull_data_tx_ack_and_v1():
    assert gwmp.parse(gwmp.pull_data(7, EUI, version=1)).ident is gwmp.Ident.PULL_DATA
    assert gwmp.parse(gwmp.tx_ack(9, EUI, "TOO_LATE")).tx_error == "TOO_LATE"
    assert gwmp.parse(gwmp.tx_ack(9, EUI)).tx_error == ""
    assert gwmp.parse(bytes([2, 0, 9, 5]) + EUI).tx_error == ""  # TX_ACK without JSON: sent


def test_txpk_as_pull_resp():
    tx = gwmp.TxPk(b"\x60" + bytes(11), 1_000_000, 506.7, "SF7BW125", 17)
    p = gwmp.parse(gwmp.pull_resp(2, 0xBEEF, tx.json()))
    assert p.ident is gwmp.Ident.PULL_RESP and p.token == 0xBEEF
    assert p.txpk["ipol"] is True and p.txpk["imme"] is False and gwmp.b64decode(p.txpk["data"]) == tx.phy
