"""
Rules for the values administrators and users type in.

One implementation behind the command line and the dashboard, so both give
the same errors with the same text.
"""

from __future__ import annotations

import re
from typing import Any

from idserver.errors import ValidationError

__all__ = [
    "BOOLEAN_SETTINGS",
    "RESERVED_USERNAMES",
    "SETTINGS_DEFAULTS",
    "normalize_email",
    "normalize_group_name",
    "normalize_username",
    "parse_setting",
    "validate_display_name",
    "validate_password",
]

RESERVED_USERNAMES = frozenset(
    {"admin", "root", "postmaster", "no-reply", "mailer-daemon", "users", "admins"}
)

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

# A pragmatic address check: one @, a non-empty local part without spaces
# or control characters, and a domain with at least one dot. RFC 5322
# allows more, but an address that apps and mail servers accept always
# passes.
_EMAIL = re.compile(
    r"[^@\s\x00-\x1f\x7f]+@[^@\s.\x00-\x1f\x7f]+(\.[^@\s.\x00-\x1f\x7f]+)+"
)

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MAX_DISPLAY_NAME_LENGTH = 256

SETTINGS_DEFAULTS: dict[str, Any] = {
    "name": "idserver",
    "lock_profile": False,
    "mandatory_2fa": False,
    "ldap_require_2fa": False,
}

BOOLEAN_SETTINGS = frozenset({"lock_profile", "mandatory_2fa", "ldap_require_2fa"})


def _check_name(value: str, field: str, what: str) -> str:
    name = value.strip().lower()
    if not name:
        raise ValidationError(f"The {what} must not be empty.", field)
    if len(name) > 64:
        raise ValidationError(
            f"The {what} {value!r} is too long: at most 64 characters.", field
        )
    if not _NAME.fullmatch(name):
        raise ValidationError(
            f"The {what} {value!r} is invalid: use a-z, 0-9, '.', '-' and '_',"
            " starting with a letter or digit.",
            field,
        )
    return name


def normalize_username(value: str) -> str:
    """
    Validate a username and return it in lower case.

    @raise ValidationError: the name breaks the character rules or is
        reserved.
    """
    name = _check_name(value, "username", "username")
    if name in RESERVED_USERNAMES:
        raise ValidationError(f"The username {name!r} is reserved.", "username")
    return name


def normalize_group_name(value: str) -> str:
    """
    Validate a group name and return it in lower case.

    @raise ValidationError: the name breaks the character rules.
    """
    return _check_name(value, "name", "group name")


def normalize_email(value: str, field: str = "email") -> str:
    """
    Validate an email address and return it in lower case.

    @param field: the input name reported with the error.
    @raise ValidationError: the address is empty or malformed.
    """
    address = value.strip().lower()
    if not address:
        raise ValidationError("The email address must not be empty.", field)
    if len(address) > 254 or not _EMAIL.fullmatch(address):
        raise ValidationError(f"The email address {value!r} is invalid.", field)
    return address


def validate_display_name(value: str) -> str:
    """
    Validate a display name and return it with surrounding space removed.

    @raise ValidationError: the name is too long or has control characters.
    """
    name = " ".join(value.split())
    if len(name) > MAX_DISPLAY_NAME_LENGTH:
        raise ValidationError(
            f"The display name is too long: at most {MAX_DISPLAY_NAME_LENGTH}"
            " characters.",
            "display_name",
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValidationError(
            "The display name must not contain control characters.", "display_name"
        )
    return name


def validate_password(password: str, username: str | None = None) -> None:
    """
    Check a new password against the length rules.

    @param username: the owner's username; the password must differ from it.
    @raise ValidationError: the password is too short, too long, or equals
        the username.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"The password is too short: at least {MIN_PASSWORD_LENGTH} characters.",
            "password",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(
            f"The password is too long: at most {MAX_PASSWORD_LENGTH} characters.",
            "password",
        )
    if username is not None and password.lower() == username.lower():
        raise ValidationError("The password must not equal the username.", "password")


def parse_setting(key: str, value: str | bool) -> str | bool:
    """
    Validate a setting given on the command line or in a form.

    @param value: C{true}/C{false} (or a C{bool}) for boolean settings, any
        non-empty text for C{name}.
    @return: the typed value to store.
    @raise ValidationError: the key is unknown or the value has the wrong
        type.
    """
    if key not in SETTINGS_DEFAULTS:
        known = ", ".join(sorted(SETTINGS_DEFAULTS))
        raise ValidationError(f"Unknown setting {key!r}; known settings: {known}.", key)
    if key in BOOLEAN_SETTINGS:
        if isinstance(value, bool):
            return value
        lowered = value.strip().lower()
        if lowered not in ("true", "false"):
            raise ValidationError(
                f"The setting {key!r} takes true or false, not {value!r}.", key
            )
        return lowered == "true"
    text = " ".join(str(value).split())
    if not text:
        raise ValidationError(f"The setting {key!r} must not be empty.", key)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValidationError(
            f"The setting {key!r} must not contain control characters.", key
        )
    if len(text) > 128:
        raise ValidationError(
            f"The setting {key!r} is too long: at most 128 characters.", key
        )
    return text
