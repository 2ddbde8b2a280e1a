"""
TOTP (RFC 6238) secrets, provisioning URIs and code checks.

idserver uses the RFC defaults that every authenticator app supports:
HMAC-SHA1, 6 digits and 30-second time steps. A code is accepted in the
time step before, at, or after the current one, so a clock that is off by
up to 30 seconds still works. The caller stores the accepted step, and a
code whose step is not newer than the stored one is rejected, so each code
works once.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from urllib.parse import quote, urlencode

import pyotp

__all__ = [
    "DIGITS",
    "PERIOD",
    "match_step",
    "new_secret",
    "provisioning_uri",
    "time_step",
]

DIGITS = 6
PERIOD = 30

# The number of time steps before and after the current one that are
# accepted.
_TOLERANCE = 1

_SECRET_BYTES = 20

_CODE = re.compile(r"[0-9]{6}")


def new_secret() -> str:
    """
    Generate a random 160-bit secret (the HMAC-SHA1 key length that RFC 4226
    recommends).

    @return: the secret in base32, 32 characters without padding.
    """
    return base64.b32encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """
    Build the C{otpauth://totp/} URI that authenticator apps read from a QR
    code, in the key URI format of Google Authenticator, which Aegis and
    1Password also read.

    The label is C{issuer:username} and the C{issuer} parameter repeats the
    issuer. The format uses the colon as the separator between issuer and
    account, so colons in either are replaced by spaces.

    @param secret: the base32 secret.
    @param username: the account name shown in the app.
    @param issuer: the service name shown in the app, such as the server
        name.
    """
    issuer = _without_colons(issuer) or "idserver"
    account = _without_colons(username)
    label = quote(issuer, safe="") + ":" + quote(account, safe="")
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": str(DIGITS),
            "period": str(PERIOD),
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def time_step(now: float) -> int:
    """
    Return the RFC 6238 time step (the counter C{T}) for a POSIX time.
    """
    return int(now // PERIOD)


def match_step(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """
    Check a TOTP code.

    @param secret: the base32 secret.
    @param code: the code as typed; surrounding white space is ignored, and
        anything but six ASCII digits never matches.
    @param now: the current POSIX time in seconds.
    @param last_step: the step of the last accepted code, or C{None} when no
        code was accepted yet. Codes of this step and earlier ones are
        rejected.
    @return: the time step that C{code} belongs to, which the caller stores
        as the new C{last_step}, or C{None} when C{code} does not match.
    @raise ValueError: C{secret} is not valid base32 or shorter than 112
        bits.
    """
    generator = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    code = code.strip()
    if not _CODE.fullmatch(code):
        return None

    current = time_step(now)
    matched = None
    # Every candidate is computed and compared, so the time taken does not
    # depend on which step matched.
    for step in range(current - _TOLERANCE, current + _TOLERANCE + 1):
        expected = generator.generate_otp(step)
        fresh = last_step is None or step > last_step
        if hmac.compare_digest(expected, code) and fresh and matched is None:
            matched = step
    return matched


def _without_colons(text: str) -> str:
    return " ".join(text.replace(":", " ").split())
