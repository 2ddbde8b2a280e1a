"""
Tests for L{idserver.passwords}.
"""

from __future__ import annotations

import threading
from typing import Any, Literal, cast

import argon2
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.threadable import isInIOThread
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from idserver.errors import HasherBusyError
from idserver.interfaces import IPasswordHasher
from idserver.passwords import Argon2Hasher

# Cheap parameters keep the tests fast; production uses argon2-cffi's
# defaults.
CHEAP: dict[str, Any] = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


def get_reactor() -> IReactorFromThreads:
    """
    Return the global reactor, which trial runs.
    """
    from twisted.internet import reactor

    return cast(IReactorFromThreads, reactor)


class RecordingPasswordHasher(argon2.PasswordHasher):
    """
    An argon2-cffi hasher that records the thread of each call.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[str, threading.Thread, bool]] = []

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.calls.append(("hash", threading.current_thread(), isInIOThread()))
        return super().hash(password, salt=salt)

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.calls.append(("verify", threading.current_thread(), isInIOThread()))
        return super().verify(hash, password)


class Argon2HasherTests(TestCase):
    """
    Tests for L{Argon2Hasher}.
    """

    def make_hasher(self, **kwargs: int) -> Argon2Hasher:
        parameters = dict(CHEAP)
        parameters.update(kwargs)
        hasher = Argon2Hasher(get_reactor(), **parameters)
        hasher.start()
        self.addCleanup(hasher.stop)
        return hasher

    def test_interface(self) -> None:
        """
        L{Argon2Hasher} provides L{IPasswordHasher}.
        """
        self.assertTrue(verifyObject(IPasswordHasher, self.make_hasher()))

    async def test_round_trip(self) -> None:
        """
        A hash verifies with its secret and not with another one.
        """
        hasher = self.make_hasher()
        encoded = await hasher.hash("correct horse")
        self.assertTrue(encoded.startswith("$argon2id$"))
        self.assertEqual(await hasher.verify(encoded, "correct horse"), (True, None))
        self.assertEqual(await hasher.verify(encoded, "wrong horse"), (False, None))

    async def test_off_reactor(self) -> None:
        """
        Hashing and verification run in a pool thread, not the reactor
        thread.
        """
        self.assertTrue(isInIOThread())
        hasher = self.make_hasher()
        recorder = RecordingPasswordHasher(**CHEAP)
        hasher.parameters = recorder
        encoded = await hasher.hash("correct horse")
        await hasher.verify(encoded, "correct horse")
        self.assertEqual([name for name, _, _ in recorder.calls], ["hash", "verify"])
        for _, thread, in_reactor in recorder.calls:
            self.assertIsNot(thread, threading.current_thread())
            self.assertFalse(in_reactor)
            self.assertIn("argon2", thread.name)

    async def test_queue_full(self) -> None:
        """
        A request beyond the running threads plus the queue fails at once
        with L{HasherBusyError}; once the queue drains, requests work again.
        """
        hasher = self.make_hasher(max_threads=1, max_queue=1)
        # Results reach the reactor thread only after this function yields,
        # so the first two requests are still counted when the third comes.
        first = hasher.hash("secret one")
        second = hasher.verify("$argon2id$invalid", "secret two")
        self.assertEqual(hasher.in_flight, 2)
        third = hasher.hash("secret three")
        self.failureResultOf(third, HasherBusyError)
        fourth = hasher.verify("$argon2id$invalid", "secret four")
        self.failureResultOf(fourth, HasherBusyError)

        await first
        await second
        self.assertEqual(hasher.in_flight, 0)
        self.assertTrue((await hasher.hash("secret five")).startswith("$argon2id$"))

    async def test_failures_release_slots(self) -> None:
        """
        A request that fails in the thread frees its place in the queue.
        """
        hasher = self.make_hasher(max_threads=1, max_queue=0)
        await self.assertFailure(hasher.hash(None), AttributeError)  # type: ignore[arg-type]
        self.assertEqual(hasher.in_flight, 0)
        self.assertTrue((await hasher.hash("secret")).startswith("$argon2id$"))

    async def test_rehash(self) -> None:
        """
        A matching hash made with other parameters comes back with a new
        hash using the current ones; a wrong secret gets no new hash.
        """
        old = self.make_hasher(time_cost=1)
        new = self.make_hasher(time_cost=2)
        encoded = await old.hash("correct horse")

        matches, new_hash = await new.verify(encoded, "correct horse")
        self.assertTrue(matches)
        assert new_hash is not None
        self.assertIn("t=2", new_hash)
        self.assertEqual(await new.verify(new_hash, "correct horse"), (True, None))

        self.assertEqual(await new.verify(encoded, "wrong horse"), (False, None))

    async def test_argon2i_rehash(self) -> None:
        """
        An argon2i hash is replaced by an argon2id hash.
        """
        hasher = self.make_hasher()
        legacy = argon2.PasswordHasher(type=argon2.Type.I, **CHEAP)
        encoded = legacy.hash("correct horse")
        matches, new_hash = await hasher.verify(encoded, "correct horse")
        self.assertTrue(matches)
        assert new_hash is not None
        self.assertTrue(new_hash.startswith("$argon2id$"))

    async def test_invalid_hash(self) -> None:
        """
        A stored value that is not an argon2 hash never matches.
        """
        hasher = self.make_hasher()
        for encoded in ["", "not a hash", "$2b$12$abcdefghijklmnopqrstuv"]:
            self.assertEqual(await hasher.verify(encoded, "secret"), (False, None))

    def test_not_started(self) -> None:
        """
        A hasher whose pool is not running fails at once.
        """
        hasher = Argon2Hasher(get_reactor(), **CHEAP)
        self.failureResultOf(hasher.hash("secret"), RuntimeError)
        hasher.start()
        hasher.stop()
        self.failureResultOf(hasher.verify("x", "secret"), RuntimeError)

    def test_bad_sizes(self) -> None:
        """
        A pool without threads or with a negative queue is rejected.
        """
        reactor = get_reactor()
        self.assertRaises(ValueError, Argon2Hasher, reactor, max_threads=0)
        self.assertRaises(ValueError, Argon2Hasher, reactor, max_queue=-1)
