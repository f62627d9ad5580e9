"""Crypto used by the sandbox, written on `cryptography` primitives only.

Deliberately independent of wechatpy / wechatpayv3: if the adapters and the sandbox shared
code, a mistake in that code would sign and verify itself and the tests would pass anyway.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

WECOM_BLOCK_SIZE = 32  # WeCom pads PKCS#7 to 32 bytes, not to the AES block size of 16


def generate_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_key_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("expected an RSA private key")
    return key


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("expected an RSA public key")
    return key


def rsa_sha256_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    signature = key.sign(message.encode("utf-8"), asym_padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode()


def rsa_sha256_verify(key: rsa.RSAPublicKey, message: str, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, message.encode("utf-8"), asym_padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def aes_gcm_encrypt(apiv3_key: str, nonce: str, plaintext: str, associated_data: str) -> str:
    """WeChat Pay notification resource: AEAD_AES_256_GCM, tag appended, base64."""
    sealed = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext.encode(), associated_data.encode())
    return base64.b64encode(sealed).decode()


def aes_gcm_decrypt(apiv3_key: str, nonce: str, ciphertext_b64: str, associated_data: str) -> str:
    opened = AESGCM(apiv3_key.encode()).decrypt(
        nonce.encode(), base64.b64decode(ciphertext_b64), associated_data.encode()
    )
    return opened.decode()


def wecom_aes_key(encoding_aes_key: str) -> bytes:
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:
        raise ValueError("EncodingAESKey must decode to 32 bytes")
    return key


def wecom_encrypt(encoding_aes_key: str, message: str, receive_id: str, random_prefix: bytes | None = None) -> str:
    """random(16) + len(msg) big-endian u32 + msg + receive_id, PKCS#7 to 32, AES-256-CBC(iv=key[:16])."""
    key = wecom_aes_key(encoding_aes_key)
    body = message.encode("utf-8")
    plain = (random_prefix or os.urandom(16)) + struct.pack(">I", len(body)) + body + receive_id.encode()
    padder = padding.PKCS7(WECOM_BLOCK_SIZE * 8).padder()
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def wecom_decrypt(encoding_aes_key: str, encrypted_b64: str) -> tuple[str, str]:
    """Inverse of `wecom_encrypt`; returns (message, receive_id)."""
    key = wecom_aes_key(encoding_aes_key)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(base64.b64decode(encrypted_b64)) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= WECOM_BLOCK_SIZE:
        raise ValueError("bad padding")
    plain = padded[:-pad]
    (length,) = struct.unpack(">I", plain[16:20])
    message = plain[20 : 20 + length].decode("utf-8")
    receive_id = plain[20 + length :].decode()
    return message, receive_id


def wecom_signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce, encrypted])).encode()).hexdigest()  # noqa: S324
