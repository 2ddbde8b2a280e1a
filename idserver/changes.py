"""
Rules for changes to users that the directory leaves to its callers,
shared by C{idserver-admin} and the dashboard so both reject the same
changes with the same text.
"""

from __future__ import annotations

from idserver.errors import ReadOnlyError
from idserver.model import Source, User

__all__ = ["check_external_fields"]


def check_external_fields(
    user: User, *, email: str | None = None, display_name: str | None = None
) -> None:
    """
    Reject a change of the fields that the external directory owns.

    @param email: the new email address, or C{None} when unchanged.
    @param display_name: the new display name, or C{None} when unchanged.
    @raise ReadOnlyError: C{user} comes from the external directory and the
        change touches its email or display name.
    """
    if user.source is not Source.ldap:
        return
    if email is not None or display_name is not None:
        raise ReadOnlyError(
            f"The user {user.username!r} comes from the external directory, so"
            " the email address and display name can only be changed there.",
            "email" if email is not None else "display_name",
        )
