"""
Housekeeping of the session store: deleting expired records, and ending
the sessions of users who fall under mandatory 2FA without having it.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from idserver.errors import NotFoundError
from idserver.interfaces import IDirectory, ISessionStore
from idserver.sessions.policy import needs_totp_enrolment

__all__ = ["SessionMaintenance", "end_sessions_without_2fa"]

log = Logger()


async def end_sessions_without_2fa(
    directory: IDirectory, store: ISessionStore
) -> list[str]:
    """
    End every browser session and grant of the users who must enrol TOTP
    under the current settings. Does nothing while 2FA is not mandatory.

    @return: the usernames whose sessions ended.
    """
    settings = await directory.get_settings()
    if not settings.get("mandatory_2fa"):
        return []
    ended = []
    for user_id in sorted(await store.user_ids()):
        try:
            user = await directory.get_user(user_id)
        except NotFoundError:
            await store.end_user_sessions(user_id)
            continue
        if needs_totp_enrolment(user, settings):
            await store.end_user_sessions(user_id)
            ended.append(user.username)
    if ended:
        log.info(
            "Ended the sessions of {count} users without 2FA, which is mandatory:"
            " {usernames}",
            count=len(ended),
            usernames=", ".join(ended),
        )
    return ended


class SessionMaintenance:
    """
    One run of the periodic housekeeping; call L{run} from a timer.

    Expired records are purged every C{purge_interval} seconds. The 2FA
    sweep runs whenever the directory's revision changed, which covers a
    change of C{mandatory_2fa} by the dashboard or the command line; the
    session checks at each request enforce the rule in between.
    """

    def __init__(
        self,
        directory: IDirectory,
        store: ISessionStore,
        clock: IReactorTime,
        purge_interval: float = 3600.0,
    ) -> None:
        self.directory = directory
        self.store = store
        self.clock = clock
        self.purge_interval = purge_interval
        self._last_purge: float | None = None
        self._last_revision: int | None = None

    async def run(self) -> None:
        """
        Do what is due.
        """
        revision = self.directory.revision()
        if revision != self._last_revision:
            await end_sessions_without_2fa(self.directory, self.store)
            self._last_revision = revision

        now = self.clock.seconds()
        if self._last_purge is None or now >= self._last_purge + self.purge_interval:
            count = await self.store.purge_expired(now)
            self._last_purge = now
            if count:
                log.info("Deleted {count} expired session records", count=count)
