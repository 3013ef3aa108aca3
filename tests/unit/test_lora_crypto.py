"""AES-CMAC MIC and the FRMPayload cipher against public vectors (RFC 4493, a real LoRaWAN uplink)."""

from __future__ import annotations

import pytest

from drivers.lora import crypto
from gateway.errors import ConfigError


def test_aes_cmac_matches_rfc4493_example_2():
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    msg = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert crypto.aes_cmac(key, msg).hex() == "070a16b46b4d4144f79bdd9dd04a287c"


# protocols.md §2.2: a public LoRaWAN 1.0 uplink (lora-packet tests), checked there with `cryptography`.
NWK = bytes.fromhex("44024241ed4ce9a68c6a8bc055233fd3")
APP = bytes.fromhex("ec925802ae430ca77fd3dd73cb2cc588")


def test_lorawan_vector_mic_and_payload_decrypt_to_test():
    phy = bytes.fromhex("40F17DBE4900020001954378762B11FF0D")
    msg, mic = phy[:-4], phy[-4:]
    dev_addr = int.from_bytes(phy[1:5], "little")
    fcnt = int.from_bytes(phy[6:8], "little")
    assert (dev_addr, fcnt) == (0x49BE7DF1, 2)
    assert crypto.lorawan_mic(NWK, dev_addr, fcnt, crypto.UPLINK, msg) == mic
    assert crypto.payload_cipher(APP, dev_addr, fcnt, crypto.UPLINK, phy[9:-4]) == b"test"


def test_lorawan_vector_with_empty_payload_has_valid_mic():
    phy = bytes.fromhex("40F17DBE49000300012A3518AF")
    assert crypto.lorawan_mic(NWK, 0x49BE7DF1, 3, crypto.UPLINK, phy[:-4]) == phy[-4:]


def test_cipher_is_its_own_inverse_and_depends_on_direction_and_counter():
    data = bytes(range(40))
    enc = crypto.payload_cipher(APP, 7, 9, crypto.UPLINK, data)
    assert enc != data and crypto.payload_cipher(APP, 7, 9, crypto.UPLINK, enc) == data
    assert crypto.payload_cipher(APP, 7, 9, crypto.DOWNLINK, data) != enc
    assert crypto.payload_cipher(APP, 7, 10, crypto.UPLINK, data) != enc


@pytest.mark.parametrize("text, words", [("zz" * 16, "not hexadecimal"), ("00" * 15, "15 bytes, need 16")])
def test_parse_key_rejects_bad_keys_without_echoing_them(text, words):
    with pytest.raises(ConfigError) as exc:
        crypto.parse_key("smoke-1", text)
    assert words in str(exc.value) and text not in str(exc.value)
