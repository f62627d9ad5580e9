"""Development credentials: one consistent set for the three sandboxed services.

Generated once per process. The WeChat Pay *platform* private key is not a config value (in
production only WeChat Pay holds it), so it is kept here, keyed by its public key id, for
`create_sandbox` to find.
"""

from __future__ import annotations

import base64
import os
import secrets
import string
import threading

from . import crypto

_lock = threading.Lock()
_credentials: dict[str, str] | None = None
_platform_private_keys: dict[str, str] = {}

CREDENTIAL_KEYS = (
    "WECHAT_APP_ID",
    "WECHAT_APP_SECRET",
    "WECOM_CORP_ID",
    "WECOM_AGENT_ID",
    "WECOM_SECRET",
    "WECOM_CALLBACK_TOKEN",
    "WECOM_CALLBACK_AES_KEY",
    "WECHATPAY_MCHID",
    "WECHATPAY_APPID",
    "WECHATPAY_PRIVATE_KEY",
    "WECHATPAY_CERT_SERIAL",
    "WECHATPAY_APIV3_KEY",
    "WECHATPAY_PUBLIC_KEY",
    "WECHATPAY_PUBLIC_KEY_ID",
)

_ALNUM = string.ascii_letters + string.digits


def _alnum(length: int) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


def _digits(length: int) -> str:
    return "".join(secrets.choice(string.digits) for _ in range(length))


def _encoding_aes_key() -> str:
    # Real EncodingAESKeys are 43 alphanumerics; draw until base64 happens to contain no + or /.
    while True:
        candidate = base64.b64encode(os.urandom(32)).decode().rstrip("=")
        if candidate.isalnum():
            return candidate


def _generate() -> dict[str, str]:
    merchant_key = crypto.generate_rsa_key()
    platform_key = crypto.generate_rsa_key()
    # Identifiers are fixed so that data seeded by one `make run` (staff rows carry the corp id)
    # still matches after a restart; only the secrets and keys are fresh per process.
    mchid = "1900000109"
    public_key_id = "PUB_KEY_ID_01" + mchid + _digits(16)
    app_id = "wxde01e0000000d001"
    _platform_private_keys[public_key_id] = crypto.private_key_pem(platform_key)
    return {
        "WECHAT_APP_ID": app_id,
        "WECHAT_APP_SECRET": secrets.token_hex(16),
        "WECOM_CORP_ID": "wwde01e0000000d001",
        "WECOM_AGENT_ID": "1000002",
        "WECOM_SECRET": _alnum(43),
        "WECOM_CALLBACK_TOKEN": _alnum(24),
        "WECOM_CALLBACK_AES_KEY": _encoding_aes_key(),
        "WECHATPAY_MCHID": mchid,
        "WECHATPAY_APPID": app_id,
        "WECHATPAY_PRIVATE_KEY": crypto.private_key_pem(merchant_key),
        "WECHATPAY_CERT_SERIAL": secrets.token_hex(20).upper(),
        "WECHATPAY_APIV3_KEY": _alnum(32),
        "WECHATPAY_PUBLIC_KEY": crypto.public_key_pem(platform_key),
        "WECHATPAY_PUBLIC_KEY_ID": public_key_id,
    }


def dev_credentials() -> dict[str, str]:
    """The development credential set (a fresh copy of the per-process values)."""
    global _credentials
    with _lock:
        if _credentials is None:
            _credentials = _generate()
        return dict(_credentials)


def platform_private_key_for(public_key_id: str) -> str | None:
    with _lock:
        return _platform_private_keys.get(public_key_id)
