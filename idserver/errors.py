"""
Errors shared by the directory, the command line and the web pages.

Each message is a complete sentence meant for an administrator, so the CLI
prints it as it is and the dashboard shows it next to the field it names.
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "DirectoryError",
    "HasherBusyError",
    "LastAdminError",
    "NotFoundError",
    "ReadOnlyError",
    "ValidationError",
]


class DirectoryError(Exception):
    """
    Base class of the errors that a directory operation raises on bad input.

    @ivar field: the name of the input that caused the error (C{username},
        C{email}, C{password} …), or C{None} when it is not one field.
    @ivar message: the text to show.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class ValidationError(DirectoryError):
    """
    An input value breaks a rule (character set, length, reserved name).
    """


class NotFoundError(DirectoryError):
    """
    A user, group, client or setting does not exist.
    """


class ConflictError(DirectoryError):
    """
    A value that must be unique (username, email, group name) is taken.
    """


class LastAdminError(DirectoryError):
    """
    The change would leave the directory without an active admin.
    """


class ReadOnlyError(DirectoryError):
    """
    The object comes from the external directory and cannot be edited here.
    """


class HasherBusyError(Exception):
    """
    The password hashing queue is full; the caller should fail fast (LDAP
    busy, HTTP 503) instead of waiting.
    """
