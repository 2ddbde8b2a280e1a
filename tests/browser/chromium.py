"""
Headless Chromium for the browser tests: Debian's C{/usr/bin/chromium}
driven by Playwright's synchronous API.

Playwright's synchronous objects belong to the thread that made them, and
must not run on the reactor thread, which serves the pages. L{BrowserThread}
keeps one worker thread that launches the browser at its first use and runs
every browser step; the test awaits each step as a L{Deferred} while the
reactor goes on serving.
"""

from __future__ import annotations

import atexit
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

__all__ = ["CHROMIUM", "BrowserTestCase", "BrowserThread", "screenshot"]

CHROMIUM = "/usr/bin/chromium"

# Switches that keep a test browser from contacting anything but the pages
# it is sent to, and that let it run as root in a container.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

_T = TypeVar("_T")


class BrowserThread:
    """
    One Chromium, launched on first use in a thread of its own.
    """

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._playwright: Any = None
        self._browser: Any = None

    def _launch(self) -> Any:
        from playwright.sync_api import sync_playwright

        if self._browser is None:
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS
            )
        return self._browser

    def run(self, step: Callable[..., _T], *args: Any) -> Deferred[_T]:
        """
        Run C{step(browser, *args)} in the browser's thread.

        @raise SkipTest: Chromium is not installed (C{make test} installs
            Debian's C{chromium}).
        """
        from twisted.internet import reactor

        if not os.path.exists(CHROMIUM) and shutil.which("chromium") is None:
            raise SkipTest(f"{CHROMIUM} is missing: install Debian's chromium")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="chromium")
            atexit.register(self.close)

        result: Deferred[_T] = Deferred()

        def call() -> _T:
            return step(self._launch(), *args)

        def done(future: Future[_T]) -> None:
            error = future.exception()
            if error is not None:
                reactor.callFromThread(result.errback, error)
            else:
                reactor.callFromThread(result.callback, future.result())

        self._executor.submit(call).add_done_callback(done)
        return result

    def close(self) -> None:
        """
        Close the browser and stop its thread.
        """
        executor, self._executor = self._executor, None
        if executor is None:
            return

        def stop() -> None:
            if self._browser is not None:
                self._browser.close()
                self._playwright.stop()
            self._browser = self._playwright = None

        try:
            executor.submit(stop).result(timeout=60)
        except RuntimeError:
            # At interpreter exit the worker has already stopped; the
            # Playwright driver and its browser end with the process.
            return
        executor.shutdown()


class BrowserTestCase(TestCase):
    """
    A test case whose tests share one browser, closed after the last test
    of the class (or at exit, when only some of them run).
    """

    browser: ClassVar[BrowserThread]
    _finished: ClassVar[int]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.browser = BrowserThread()
        cls._finished = 0

    def tearDown(self) -> Deferred[None] | None:
        cls = type(self)
        cls._finished += 1
        tests = [name for name in dir(cls) if name.startswith("test_")]
        if cls._finished == len(tests):
            return deferToThread(cls.browser.close)
        return None


def screenshot(page: Any, name: str) -> None:
    """
    Save a screenshot of C{page} as C{NAME.png} in the folder named by the
    environment variable C{IDSERVER_SCREENSHOTS}, when it is set; the
    documentation's screenshots are made this way.
    """
    folder = os.environ.get("IDSERVER_SCREENSHOTS")
    if folder:
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)
