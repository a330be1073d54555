"""Who may read the portal: anyone on this machine when it listens on the loopback address,
and only holders of the token when it listens anywhere else.

The portal shows what the ledger holds about a person's request and hands out certificates
that name the request, so beyond the loopback interface it refuses to start without a token,
instead of starting open and relying on a firewall nobody checked. The token is read from
the environment ($TRU_PORTAL_TOKEN), never from a command-line option: arguments are visible
to every user of the machine in the process list and end up in shell histories.

The token is sent the way a browser sends it without JavaScript or cookies: HTTP basic auth
(the browser asks once, with its own dialog, and resends it with every form and download;
any user name, the token as the password). Scripts may send `Authorization: Bearer <token>`
instead. Either is compared in constant time (`hmac.compare_digest`), so the time of a refusal
does not tell how much of a guess was right. Basic auth sends the token in clear text: beyond
the machine, put the portal behind a reverse proxy that speaks TLS (docs/audits.md).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Mapping

from tru.errors import ConfigError

TOKEN_ENV = "TRU_PORTAL_TOKEN"
DEFAULT_HOST = "127.0.0.1"
# a shorter token can be guessed by trying: the portal sets no rate limit of its own
MIN_TOKEN_CHARS = 16
REALM = "tru evidence portal"

_HOW = (
    f"set {TOKEN_ENV} to a long random secret, e.g. "
    '`export TRU_PORTAL_TOKEN="$(python -c "import secrets; print(secrets.token_urlsafe(32))")"`'
)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: `localhost` or a loopback address
    (127.0.0.0/8, ::1). Anything else, `0.0.0.0` and host names included, is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def portal_token(env: Mapping[str, str] | None = None) -> str | None:
    """The access token: $TRU_PORTAL_TOKEN (surrounding blanks dropped), None when unset or
    empty. ConfigError for a token shorter than MIN_TOKEN_CHARS."""
    environ: Mapping[str, str] = os.environ if env is None else env
    token = environ.get(TOKEN_ENV, "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"${TOKEN_ENV} is {len(token)} characters, fewer than {MIN_TOKEN_CHARS}; {_HOW}")
    return token


def check_binding(host: str, token: str | None) -> None:
    """ConfigError when the portal would listen beyond this machine (`host` not loopback)
    without a token."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"the portal would listen on {host}, beyond this machine, without an access token: {_HOW} "
            f"(every page then asks for it), or listen on {DEFAULT_HOST} (the default) behind a reverse proxy"
        )


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def authorized(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header carries `token`: `Basic base64(user:token)` (any user
    name) or `Bearer token`."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer":
        return _same(value, token)
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, colon, password = decoded.partition(":")
        return bool(colon) and _same(password, token)
    return False


def challenge() -> dict[str, str]:
    """The header of a refusal, which makes a browser ask for the user name and password."""
    return {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
