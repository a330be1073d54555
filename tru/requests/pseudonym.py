"""Pseudonyms for deletion targets: keyed HMAC-SHA256, so reports can count and link
requests without ever showing a raw id.

The key comes from the environment variable TRU_PSEUDONYM_KEY, else from a git-ignored
file `.tru-secret` (project root by default). A value of 32+ hex digits is decoded as hex,
anything else is used as raw UTF-8 bytes; at least 16 bytes either way (user ids are
low-entropy: a short key could be brute-forced from a pseudonym).

Without the key nobody can recompute a pseudonym from a raw id (and the raw ids live only
in the ledger). Rotating the key changes every pseudonym: keep it for the life of the
ledger.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from tru.errors import ConfigError

KEY_ENV = "TRU_PSEUDONYM_KEY"
KEY_FILE = ".tru-secret"
MIN_KEY_BYTES = 16
SEP = "\x1f"
DIGEST_HEX = 32  # 128 bits of HMAC-SHA256: collision-free in practice, half the ledger bytes

_HOW = (
    f"set {KEY_ENV} or create {KEY_FILE} in the project root, e.g. "
    f'`python -c "import secrets; print(secrets.token_hex(32))" > {KEY_FILE}` '
    "(it is git-ignored; keep it: a new key changes every pseudonym)"
)


def _parse_key(text: str, where: str) -> bytes:
    text = text.strip()
    if not text:
        raise ConfigError(f"pseudonymisation key in {where} is empty: {_HOW}")
    if len(text) >= 2 * MIN_KEY_BYTES and len(text) % 2 == 0 and re.fullmatch(r"[0-9a-fA-F]+", text):
        key = bytes.fromhex(text)
    else:
        key = text.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"pseudonymisation key in {where} is {len(key)} bytes, at least {MIN_KEY_BYTES} are needed: {_HOW}"
        )
    return key


def load_key(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> bytes:
    """The pseudonymisation key: $TRU_PSEUDONYM_KEY, else the file `path` (default `.tru-secret`).

    Raises ConfigError with instructions when neither is set.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    value = environ.get(KEY_ENV)
    if value:
        return _parse_key(value, f"${KEY_ENV}")
    path = Path(path) if path is not None else Path(KEY_FILE)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: cannot read the pseudonymisation key ({err.__class__.__name__})") from None
        return _parse_key(text, str(path))
    raise ConfigError(f"no pseudonymisation key: ${KEY_ENV} is not set and {path} does not exist; {_HOW}")


def key_fingerprint(key: bytes) -> str:
    """A public name of the key (sha256 of a fixed label and the key; the key has at least 128
    bits, so the name reveals nothing usable): the ledger records it per batch, and a run whose
    key differs stops instead of giving the same person another pseudonym."""
    return hashlib.sha256(b"tru pseudonymisation key" + SEP.encode() + key).hexdigest()


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


@functools.lru_cache(maxsize=8)
def _pads(key: bytes) -> tuple:
    """HMAC-SHA256 (RFC 2104) with the key's inner and outer states hashed once: a million
    pseudonyms then cost ~2 s instead of ~5 s (hmac.digest re-keys on every call)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD))


def pseudonym(key: bytes, text: str) -> str:
    """Keyed pseudonym of any string: HMAC-SHA256(key, UTF-8 text), first 32 hex digits."""
    inner, outer = _pads(key)
    h = inner.copy()
    h.update(text.encode("utf-8"))
    o = outer.copy()
    o.update(h.digest())
    return o.hexdigest()[:DIGEST_HEX]


def canonical_target(kind: str, user_id: str | None, item_id: str | None) -> str:
    """Unambiguous text for a target: `kind US user_id US item_id` (US = \\x1f). Valid ids
    hold no control characters, so no id can forge another target's string."""
    user_id, item_id = user_id or "", item_id or ""
    if SEP in user_id or SEP in item_id:
        raise ValueError("ids must not contain control characters")
    return f"{kind}{SEP}{user_id}{SEP}{item_id}"


def subject(key: bytes, kind: str, user_id: str | None, item_id: str | None) -> str:
    """The pseudonymised subject of a request: the same target always gives the same value
    under one key (a user request and an interaction request of that user differ)."""
    return pseudonym(key, canonical_target(kind, user_id, item_id))
