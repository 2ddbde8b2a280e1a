"""
Ending, at once, the sessions that a settings change takes away.
"""

from __future__ import annotations

from twisted.logger import Logger

from idserver.errors import NotFoundError
from idserver.interfaces import IDirectory, ISessionStore
from idserver.sessions.policy import needs_totp_enrolment

__all__ = ["end_sessions_without_2fa"]

log = Logger()


async def end_sessions_without_2fa(store: ISessionStore, directory: IDirectory) -> int:
    """
    End every browser session, app session and refresh token of each user
    who must enrol TOTP under the current settings (mandatory 2FA on, no
    2FA, not exempt), and of users that no longer exist.

    Call it after turning C{mandatory_2fa} on. Sessions are also checked at
    each use, so this only makes the end immediate instead of at the next
    request.

    @return: how many users lost their sessions.
    """
    settings = await directory.get_settings()
    ended = 0
    for user_id in sorted(await store.user_ids()):
        try:
            user = await directory.get_user(user_id)
        except NotFoundError:
            await store.end_user_sessions(user_id)
            continue
        if needs_totp_enrolment(user, settings):
            count = await store.end_user_sessions(user_id)
            log.info(
                "Ended {count} sessions of {user}: 2FA is mandatory and the user"
                " has not enrolled",
                count=count,
                user=user.username,
            )
            ended += 1
    return ended
