"""
Dispatching requests by path prefix to separate resource trees, so the
OpenID Connect provider, the login pages and the dashboard can each be
their own Klein app behind one listener.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

__all__ = ["PrefixRouter", "Routes"]

#: Path prefixes (as leading segments) and the resource that serves each.
Routes = Sequence[tuple[tuple[bytes, ...], IResource]]


@implementer(IResource)
class PrefixRouter:
    """
    Sends a request to the first resource whose prefix matches the leading
    segments of its path, or to C{default}.

    The chosen resource renders with the request's path untouched, so a
    Klein app receives the whole path and routes on it.

    @ivar routes: returns the current routes; a callable, because some
        resources exist only while the daemon runs.
    """

    isLeaf = True

    def __init__(self, routes: Callable[[], Routes], default: IResource) -> None:
        self.routes = routes
        self.default = default

    def _choose(self, request: IRequest) -> IResource:
        segments = tuple(request.postpath or ())
        for prefix, resource in self.routes():
            if segments[: len(prefix)] == prefix:
                return resource
        return self.default

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        # Never called: the site does not traverse into a leaf.
        return self._choose(request)

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("routes are given to the constructor")

    def render(self, request: IRequest) -> bytes | int:
        result: bytes | int = self._choose(request).render(request)
        return result
