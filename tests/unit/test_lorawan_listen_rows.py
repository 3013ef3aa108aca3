"""`gateway lorawan listen --json` lines: the tap's frame, with the keys installers' scripts already read
(kind join/data/duplicate/rejected, reason) keeping their meaning (CLARIFICATIONS: additive changes only)."""

from drivers.base import Heard
from gateway.cli.lorawan import listen_row


def _heard(verdict: str, frame: str = "unconfirmed_up", device: str = "smoke-2-401") -> Heard:
    return Heard("lorawan", "260b1234", device, verdict, 23, frame, 7, -95.0, 8.5, 486.3, "SF9BW125")


def test_the_original_keys_keep_their_meaning_beside_the_taps_fields():
    row = listen_row(_heard("accepted"))
    assert row == {"port": "lorawan", "source": "260b1234", "device_id": "smoke-2-401", "verdict": "accepted", "length": 23,
                   "fcnt": 7, "rssi_dbm": -95.0, "snr_db": 8.5, "freq_mhz": 486.3, "datr": "SF9BW125",
                   "kind": "data", "reason": None, "frame": "unconfirmed_up"}
    assert [(r["kind"], r["reason"]) for r in map(listen_row, (
        _heard("accepted", "join"), _heard("replay_suspect"), _heard("retransmission"), _heard("codec_error"),
        _heard("duplicate"), _heard("mic"), _heard("unknown_devaddr", device=""), _heard("rxpk_crc", frame=""),
    ))] == [("join", None), ("data", "replay_suspect"), ("data", "retransmission"), ("data", "codec_error"),
            ("duplicate", None), ("rejected", "mic"), ("rejected", "unknown_devaddr"), ("rejected", "rxpk_crc")]
    assert listen_row(_heard("unknown_devaddr", device=""))["device_id"] is None
