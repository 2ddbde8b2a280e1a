"""
CSRF protection for the forms of the login pages and the dashboard.

Every browser that receives a form has a session (an anonymous one before
login, see L{idserver.web.session}), and each session has a random token.
Forms carry it in a hidden C{csrf_token} field; a POST is accepted only when
the field equals the token of the session named by the cookie (the
synchronizer token pattern). A login replaces the session and so the token,
and the session cookie is C{SameSite=Lax}, which already keeps it off
cross-site POST requests in current browsers.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence

from idserver.sessions.model import BrowserSession
from idserver.web.templates import Markup, escape

__all__ = ["CSRF_FIELD", "check_csrf", "csrf_input"]

CSRF_FIELD = "csrf_token"


def csrf_input(session: BrowserSession) -> Markup:
    """
    Return the hidden input that carries the session's token.
    """
    token = escape(session.csrf_token)
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{token}">')


def check_csrf(
    session: BrowserSession | None, form: Mapping[str, Sequence[str]]
) -> bool:
    """
    Return whether C{form} carries the token of C{session}, compared in
    constant time. Without a session nothing passes.
    """
    if session is None:
        return False
    values = form.get(CSRF_FIELD, [])
    if len(values) != 1:
        return False
    return hmac.compare_digest(values[0].encode(), session.csrf_token.encode())
