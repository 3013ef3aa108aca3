"""LoRaWAN 1.0.x join cryptography on top of the shared AES/CMAC module (drivers/lora/crypto.py, which
already has the data-frame MIC and the FRMPayload cipher): JoinRequest/JoinAccept MIC, JoinAccept
encryption and the session-key derivation (LoRaWAN 1.0.2 §6.2.5, §6.2.4)."""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from drivers.lora.crypto import DOWNLINK, UPLINK, aes_cmac, lorawan_mic, payload_cipher
from gateway.errors import ConfigError

# The data-frame primitives are re-exported: LoRaWAN code takes all its cryptography from this module.
__all__ = ["DOWNLINK", "KEY_BYTES", "UPLINK", "aes_cmac", "decrypt_join_accept", "encrypt_join_accept", "join_mic",
           "lorawan_mic", "parse_keys", "payload_cipher", "session_keys"]

KEY_BYTES = 16


def _ecb(key: bytes, data: bytes, decrypt: bool = False) -> bytes:
    c = Cipher(algorithms.AES(key), modes.ECB())
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def join_mic(app_key: bytes, msg: bytes) -> bytes:
    """§6.2.4/§6.2.5: MIC = aes128_cmac(AppKey, MHDR | ... )[0:4] over the whole message before the MIC."""
    return aes_cmac(app_key, msg)[:4]


def encrypt_join_accept(app_key: bytes, plain: bytes) -> bytes:
    """§6.2.5: the network server *decrypts* (AES-ECB) AppNonce..MIC so the device only needs AES encrypt.
    `plain` is MHDR | body | MIC; the MHDR stays clear."""
    return plain[:1] + _ecb(app_key, plain[1:], decrypt=True)


def decrypt_join_accept(app_key: bytes, phy: bytes) -> bytes:
    """The device side (simulator, tests): MHDR | aes128_encrypt(AppKey, rest)."""
    return phy[:1] + _ecb(app_key, phy[1:])


def session_keys(app_key: bytes, app_nonce: bytes, net_id: bytes, dev_nonce: bytes) -> tuple[bytes, bytes]:
    """§6.2.5: NwkSKey = aes128_encrypt(AppKey, 0x01 | AppNonce | NetID | DevNonce | pad16), AppSKey with 0x02.
    The three fields are as on air (little endian)."""
    tail = app_nonce + net_id + dev_nonce
    pad = bytes(16 - 1 - len(tail))
    return _ecb(app_key, b"\x01" + tail + pad), _ecb(app_key, b"\x02" + tail + pad)


def parse_keys(device_id: str, text: str) -> tuple[bytes, ...]:
    """A LoRaWAN device's secret from the credentials file's lora_keys: "AppKey" (OTAA, 32 hex) or
    "NwkSKey:AppSKey" (ABP, two times 32 hex). The message never echoes the key."""
    parts = text.strip().split(":")
    out = []
    for part in parts:
        try:
            key = bytes.fromhex(part)
        except ValueError:
            raise ConfigError([f"lora_keys.{device_id}: not hexadecimal (OTAA: AppKey, ABP: NwkSKey:AppSKey, 32 hex each)"]) from None
        if len(key) != KEY_BYTES:
            raise ConfigError([f"lora_keys.{device_id}: a key of {len(key)} bytes, need 16 (32 hex characters)"])
        out.append(key)
    if len(out) not in (1, 2):
        raise ConfigError([f"lora_keys.{device_id}: give AppKey (OTAA) or NwkSKey:AppSKey (ABP)"])
    return tuple(out)
