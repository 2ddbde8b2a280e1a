"""
Changing the LDAP server's settings: turning it on and off, replacing the
allowlist and setting the admin bind secret.

C{idserver-admin ldap-server} and the dashboard both store the settings
with these functions, so they apply the same rules and report the same
errors. The LDAP server reads the settings back with
L{idserver.ldap.access.AccessPolicy}.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from idserver.errors import ValidationError
from idserver.interfaces import IDirectory
from idserver.ldap.access import (
    ALLOWLIST_KEY,
    ENABLED_KEY,
    SECRET_HASH_KEY,
    InvalidAllowlist,
    generate_secret,
    hash_generated_secret,
    is_generated_hash,
    parse_allowlist,
)
from idserver.validation import MAX_PASSWORD_LENGTH

__all__ = [
    "MAX_SECRET_LENGTH",
    "MIN_SECRET_LENGTH",
    "LDAPState",
    "check_allowlist",
    "check_secret",
    "disable",
    "enable",
    "ldap_state",
    "set_allowlist",
    "set_secret",
]

# An admin-chosen secret is hashed with argon2id like a password, and held
# to the same length rules.
MIN_SECRET_LENGTH = 8
MAX_SECRET_LENGTH = MAX_PASSWORD_LENGTH


@dataclass(frozen=True)
class LDAPState:
    """
    The stored LDAP server settings, without the secret itself.

    @ivar enabled: whether the server serves connections.
    @ivar allowlist: the allowlist lines as stored, comments included.
    @ivar secret: C{"generated"}, C{"chosen"}, or C{None} when no secret is
        set (the admin bind DN cannot bind then).
    """

    enabled: bool
    allowlist: tuple[str, ...]
    secret: Literal["generated", "chosen"] | None


def ldap_state(settings: Mapping[str, Any]) -> LDAPState:
    """
    Read the LDAP server settings from the directory's settings.
    """
    stored = settings.get(SECRET_HASH_KEY)
    secret: Literal["generated", "chosen"] | None = None
    if isinstance(stored, str) and stored:
        secret = "generated" if is_generated_hash(stored) else "chosen"
    return LDAPState(
        enabled=settings.get(ENABLED_KEY) is True,
        allowlist=tuple(str(line) for line in settings.get(ALLOWLIST_KEY) or ()),
        secret=secret,
    )


def check_allowlist(entries: Iterable[str]) -> list[str]:
    """
    Validate allowlist entries (an IPv4 or IPv6 address or CIDR range
    each, optionally followed by a C{#} comment) and return them as they
    are stored: stripped, without blank ones.

    @raise ValidationError: an entry is neither, with the field
        C{allowlist}.
    """
    lines = [entry.strip() for entry in entries if entry.strip()]
    try:
        parse_allowlist(lines)
    except InvalidAllowlist as error:
        raise ValidationError(str(error), "allowlist") from None
    return lines


def check_secret(secret: str) -> None:
    """
    Check an admin-chosen secret against the length rules.

    @raise ValidationError: the secret is too short, too long, or cannot be
        encoded as UTF-8 (binds send it so), with the field C{secret}.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValidationError(
            f"The secret is too short: at least {MIN_SECRET_LENGTH} characters.",
            "secret",
        )
    if len(secret) > MAX_SECRET_LENGTH:
        raise ValidationError(
            f"The secret is too long: at most {MAX_SECRET_LENGTH} characters.",
            "secret",
        )
    try:
        secret.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(
            "The secret cannot be encoded as UTF-8.", "secret"
        ) from None


async def set_allowlist(directory: IDirectory, entries: Iterable[str]) -> list[str]:
    """
    Replace the allowlist, after validating it with L{check_allowlist}.

    @return: the lines as stored.
    @raise ValidationError: an entry is invalid; nothing is stored.
    """
    lines = check_allowlist(entries)
    await directory.set_setting(ALLOWLIST_KEY, lines)
    return lines


async def set_secret(directory: IDirectory, chosen: str | None = None) -> str | None:
    """
    Set the admin bind secret: C{chosen}, hashed with argon2id in the
    hasher's threads, or with C{None} a generated one, stored as its
    SHA-256 (its entropy makes that enough).

    @return: the generated secret, or C{None} when C{chosen} was stored.
    @raise ValidationError: C{chosen} breaks L{check_secret}.
    @raise idserver.errors.HasherBusyError: the hashing queue is full.
    """
    if chosen is None:
        secret = generate_secret()
        await directory.set_setting(SECRET_HASH_KEY, hash_generated_secret(secret))
        return secret
    check_secret(chosen)
    await directory.set_setting(SECRET_HASH_KEY, await directory.hasher.hash(chosen))
    return None


async def enable(
    directory: IDirectory,
    *,
    allowlist: Iterable[str] | None = None,
    secret: str | None = None,
    new_secret: bool = False,
) -> str | None:
    """
    Turn the LDAP server on.

    Everything is validated before anything is stored, and the secret is
    stored before the switch, so the admin bind DN can bind as soon as the
    server accepts connections.

    @param allowlist: entries that replace the allowlist, or C{None} to
        keep it.
    @param secret: a secret chosen by the administrator, to store.
    @param new_secret: generate a new secret even when one is stored.
        Without C{secret}, a secret is also generated when none is stored.
    @return: the generated secret, or C{None} when none was generated.
    @raise ValidationError: an allowlist entry or the chosen secret is
        invalid; nothing is stored.
    @raise ValueError: both C{secret} and C{new_secret} were given.
    """
    if secret is not None and new_secret:
        raise ValueError("a chosen secret and a new generated one exclude each other")
    lines = check_allowlist(allowlist) if allowlist is not None else None
    if secret is not None:
        check_secret(secret)

    if lines is not None:
        await directory.set_setting(ALLOWLIST_KEY, lines)
    generated = None
    if secret is not None:
        await set_secret(directory, secret)
    elif new_secret or ldap_state(await directory.get_settings()).secret is None:
        generated = await set_secret(directory)
    await directory.set_setting(ENABLED_KEY, True)
    return generated


async def disable(directory: IDirectory) -> None:
    """
    Turn the LDAP server off, keeping the allowlist and the secret.
    """
    await directory.set_setting(ENABLED_KEY, False)
