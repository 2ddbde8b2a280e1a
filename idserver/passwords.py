"""
Password hashing with argon2id in a bounded thread pool.

argon2id is deliberately slow (with argon2-cffi's defaults, 64 MiB and three
passes, in the order of a tenth of a second of CPU per hash), so it never
runs on the reactor thread. The pool has a fixed number of threads and a
bounded queue: when the queue is full, a request fails at once with
L{HasherBusyError}, and the login that asked for it fails fast (LDAP busy,
HTTP 503) instead of adding to a backlog that an attacker could grow without
limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from idserver.errors import HasherBusyError
from idserver.interfaces import IPasswordHasher

__all__ = ["Argon2Hasher"]

_T = TypeVar("_T")


@implementer(IPasswordHasher)
class Argon2Hasher:
    """
    An L{IPasswordHasher} that runs argon2id (argon2-cffi) in its own thread
    pool.

    At most C{max_threads} hashes run at once and at most C{max_queue} more
    wait for a thread; a request beyond that fails with L{HasherBusyError}.
    The pool must be started with L{start} before use and stopped with
    L{stop}.

    @ivar parameters: the argon2-cffi hasher holding the current cost
        parameters; a stored hash made with other parameters is replaced on
        the next successful verification.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorFromThreads,
        *,
        max_threads: int = 2,
        max_queue: int = 32,
        time_cost: int = argon2.DEFAULT_TIME_COST,
        memory_cost: int = argon2.DEFAULT_MEMORY_COST,
        parallelism: int = argon2.DEFAULT_PARALLELISM,
    ) -> None:
        """
        @param reactor: the reactor that receives the results.
        @param max_threads: the number of hashes computed at the same time.
        @param max_queue: the number of requests that may wait for a thread.
        @param time_cost: argon2 iterations.
        @param memory_cost: argon2 memory in KiB.
        @param parallelism: argon2 lanes.
        @raise ValueError: a pool size is out of range.
        """
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, not {max_threads}")
        if max_queue < 0:
            raise ValueError(f"max_queue must not be negative, not {max_queue}")
        self._reactor = reactor
        self.parameters = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._max_in_flight = max_threads + max_queue
        self._in_flight = 0
        self._pool = ThreadPool(minthreads=0, maxthreads=max_threads, name="argon2")

    @property
    def in_flight(self) -> int:
        """
        The number of requests running or waiting for a thread.
        """
        return self._in_flight

    def start(self) -> None:
        """
        Start the thread pool.
        """
        self._pool.start()

    def stop(self) -> None:
        """
        Stop the thread pool, waiting for the hashes being computed. Requests
        made after this fail with L{RuntimeError}.
        """
        self._pool.stop()

    def hash(self, secret: str) -> Deferred[str]:
        """
        Hash C{secret} with the current parameters in a pool thread.

        @return: a L{Deferred} firing with the encoded argon2id hash, or
            failing with L{HasherBusyError} at once when the queue is full.
        """
        return self._submit(self.parameters.hash, secret)

    def verify(self, encoded: str, secret: str) -> Deferred[tuple[bool, str | None]]:
        """
        Check C{secret} against C{encoded} in a pool thread.

        @return: a L{Deferred} firing with C{(matches, new_hash)}, where
            C{new_hash} is a hash of C{secret} with the current parameters
            when C{secret} matches and C{encoded} used other parameters (or
            another argon2 variant), else C{None}. A malformed C{encoded}
            never matches. Fails with L{HasherBusyError} at once when the
            queue is full.
        """
        d = self._submit(self._verify_in_thread, encoded, secret)
        return d.addCallback(self._report_invalid)

    def _verify_in_thread(
        self, encoded: str, secret: str
    ) -> tuple[bool, str | None, bool]:
        """
        Verify in a pool thread. The third item flags a hash that argon2
        cannot parse, so the reactor thread can log it.
        """
        try:
            self.parameters.verify(encoded, secret)
        except InvalidHashError:
            return (False, None, True)
        except UnicodeEncodeError:
            # A secret with lone surrogates has no UTF-8 encoding, so it
            # cannot be the one that was hashed.
            return (False, None, False)
        except VerificationError:
            # VerifyMismatchError (a wrong secret) is a VerificationError.
            return (False, None, False)
        if self.parameters.check_needs_rehash(encoded):
            return (True, self.parameters.hash(secret), False)
        return (True, None, False)

    def _report_invalid(
        self, result: tuple[bool, str | None, bool]
    ) -> tuple[bool, str | None]:
        matches, new_hash, invalid = result
        if invalid:
            self.log.warn("A stored password hash is not a valid argon2 hash")
        return (matches, new_hash)

    def _submit(self, function: Callable[..., _T], *args: object) -> Deferred[_T]:
        """
        Run C{function} in the pool unless the pool is full or stopped.
        """
        if not self._pool.started:
            return fail(
                RuntimeError("The password hasher is not running; call start() first.")
            )
        if self._in_flight >= self._max_in_flight:
            return fail(
                HasherBusyError("The password hashing queue is full; try again later.")
            )

        self._in_flight += 1

        def done(result: _T) -> _T:
            self._in_flight -= 1
            return result

        d = deferToThreadPool(self._reactor, self._pool, function, *args)
        # The count drops on the reactor thread, when the result arrives;
        # deferToThreadPool delivers both outcomes through callFromThread.
        d.addBoth(done)
        return d
