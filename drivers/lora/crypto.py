"""AES-128 primitives of our LoRa frame, written the LoRaWAN 1.0.x way so one module serves both
paths: AES-CMAC message integrity (RFC 4493) and the FRMPayload counter-mode cipher (LoRaWAN 1.0.2 §4.3.3)."""

from __future__ import annotations

from cryptography.hazmat.primitives.cmac import CMAC
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.errors import ConfigError

UPLINK = 0  # LoRaWAN "Dir" byte: 0 uplink (device -> gateway), 1 downlink
DOWNLINK = 1
KEY_BYTES = 16


def parse_key(device_id: str, text: str) -> bytes:
    """A device key from the credentials file (32 hex chars) -> 16 bytes; never echo the key itself."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError([f"lora_keys.{device_id}: not hexadecimal (need 32 hex characters)"]) from None
    if len(key) != KEY_BYTES:
        raise ConfigError([f"lora_keys.{device_id}: {len(key)} bytes, need 16 (32 hex characters)"])
    return key


def aes_cmac(key: bytes, data: bytes) -> bytes:
    """The full 16-byte AES-CMAC of `data` (RFC 4493)."""
    mac = CMAC(algorithms.AES(key))
    mac.update(data)
    return mac.finalize()


def mic(key: bytes, data: bytes) -> bytes:
    """Our frame's MIC: the first 4 bytes of AES-CMAC(key, header + payload), as LoRaWAN truncates it."""
    return aes_cmac(key, data)[:4]


def _block(prefix: int, direction: int, dev_addr: int, fcnt: int, last: int) -> bytes:
    # LoRaWAN 1.0.2 §4.3.3 / §4.4: 0x01 or 0x49 | 4 x 0x00 | Dir | DevAddr (LE) | FCnt32 (LE) | 0x00 | i or len
    return bytes([prefix, 0, 0, 0, 0, direction]) + dev_addr.to_bytes(4, "little") + fcnt.to_bytes(4, "little") + bytes([0, last])


def payload_cipher(key: bytes, dev_addr: int, fcnt: int, direction: int, data: bytes) -> bytes:
    """Encrypt or decrypt (the same operation) a payload: data XOR AES-ECB(key, A_1 .. A_k).

    A_i = 01 | 00000000 | Dir | DevAddr | FCnt32 | 00 | i. The counter makes each frame's keystream
    unique, so the frame counter must never repeat under one key (see drivers/lora/README.md "Replay protection" for the 16-bit limit).
    """
    if not data:
        return b""
    blocks = b"".join(_block(0x01, direction, dev_addr, fcnt, i) for i in range(1, (len(data) + 15) // 16 + 1))
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    stream = enc.update(blocks) + enc.finalize()
    return bytes(a ^ b for a, b in zip(data, stream))


def lorawan_mic(nwk_skey: bytes, dev_addr: int, fcnt: int, direction: int, msg: bytes) -> bytes:
    """LoRaWAN 1.0.x data-frame MIC: AES-CMAC(NwkSKey, B0 | MHDR..FRMPayload)[0:4] (for the GWMP path)."""
    b0 = _block(0x49, direction, dev_addr, fcnt, len(msg))
    return aes_cmac(nwk_skey, b0 + msg)[:4]
