"""
Rules that decide whether a user's session or grant may still be used,
shared by the login pages, the OpenID Connect provider and the dashboard.
"""

from __future__ import annotations

from typing import Any

from idserver.model import Source, User

__all__ = ["needs_totp_enrolment", "session_end_reason"]


def _exempt_from_mandatory_2fa(user: User, settings: dict[str, Any]) -> bool:
    # An upstream idserver (or Cloudron) checks the code of its users itself.
    # NOTE: the provider is read from the external directory's setting
    # "external.provider"; a different key there would leave no user exempt.
    return (
        user.source is Source.ldap and settings.get("external.provider") == "idserver"
    )


def needs_totp_enrolment(user: User, settings: dict[str, Any]) -> bool:
    """
    Return whether C{user} must enrol TOTP before anything else: 2FA is
    mandatory, the user has none, and is not exempt.
    """
    return (
        bool(settings.get("mandatory_2fa"))
        and not user.totp_enabled
        and not _exempt_from_mandatory_2fa(user, settings)
    )


def session_end_reason(
    user: User, auth_time: float, settings: dict[str, Any]
) -> str | None:
    """
    Return why a session or grant of C{user} that authenticated at
    C{auth_time} must end, or C{None} when it may go on.
    """
    if not user.active:
        return "the user is disabled"
    changed = user.password_changed_at
    if changed is not None and changed.timestamp() > auth_time:
        return "the password changed after the login"
    if needs_totp_enrolment(user, settings):
        return "2FA is mandatory and the user has not enrolled"
    return None
