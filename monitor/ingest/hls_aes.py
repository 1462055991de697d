"""HLS METHOD=AES-128 segment decryption (RFC 8216 §4.3.2.4, §5.2), with ``cryptography``."""

from __future__ import annotations

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

AES_BLOCK_BYTES = 16  # AES-128: 128-bit key, 128-bit blocks and IV (RFC 8216 §4.3.2.4)


def aes128_iv(iv_attribute: str | None, msn: int) -> bytes:
    """The CBC IV of a segment: the key tag's IV, else its media sequence number as a 128-bit
    big-endian integer (RFC 8216 §5.2)."""
    if iv_attribute:
        digits = iv_attribute[2:] if iv_attribute[:2].lower() == "0x" else iv_attribute
        iv = bytes.fromhex(digits.rjust(2 * AES_BLOCK_BYTES, "0"))
        if len(iv) != AES_BLOCK_BYTES:
            raise ValueError(f"IV {iv_attribute} is not 128 bits")
        return iv
    return msn.to_bytes(AES_BLOCK_BYTES, "big")


def aes128_decrypt(body: bytes, key: bytes, iv: bytes) -> bytes:
    """AES-128-CBC with PKCS7 padding, restarted on each segment (RFC 8216 §4.3.2.4).

    Raises ValueError when ``body`` is not whole blocks or its padding is wrong (a wrong key
    or IV).
    """
    if len(body) % AES_BLOCK_BYTES:
        raise ValueError(f"{len(body)} bytes is not a whole number of AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    plain = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(8 * AES_BLOCK_BYTES).unpadder()
    return unpadder.update(plain) + unpadder.finalize()
