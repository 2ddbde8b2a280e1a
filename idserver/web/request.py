"""
What every HTTP request goes through before a page sees it: security
headers, and the client's address and scheme as reported by a trusted
reverse proxy.

L{FrontResource} wraps the site's root resource. It sets the headers and
records a L{ClientInfo} on the request, which L{client_address} and
L{request_is_secure} read, so every page and every log line agrees on who
the client is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, getChildForRequest
from twisted.web.server import Request
from zope.interface import Attribute, Interface, implementer

__all__ = [
    "SECURITY_HEADERS",
    "ClientInfo",
    "access_log_line",
    "FrontResource",
    "IClientInfo",
    "client_address",
    "request_is_secure",
    "resolve_client",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Defaults for every response. A page may replace any of them with its own
# setHeader call. The policy leaves out form-action because the OpenID
# Connect form_post response mode submits a form to the client
# application's origin.
SECURITY_HEADERS: dict[bytes, bytes] = {
    b"Content-Security-Policy": (
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; "
        b"base-uri 'none'; frame-ancestors 'none'"
    ),
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
}

# One year, the max-age that HSTS preload lists ask for.
HSTS_HEADER = b"max-age=31536000"


class IClientInfo(Interface):
    """
    The client of a request, as far as the server can trust it.
    """

    address = Attribute(
        "The client's IP address as a string, or C{None} when the connection "
        "has no IP address (a UNIX socket)."
    )
    secure = Attribute("Whether the client reached the server over HTTPS.")


@implementer(IClientInfo)
@dataclass(frozen=True)
class ClientInfo:
    """
    The client of one request; see L{IClientInfo}.
    """

    address: str | None
    secure: bool


def _parse_address(text: str) -> IPAddress | None:
    """
    Parse one entry of C{X-Forwarded-For}: an address, optionally with a
    port (C{192.0.2.1:80}, C{[2001:db8::1]:80}). An IPv4-mapped IPv6 address
    becomes the IPv4 address.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def resolve_client(request: IRequest, trusted_proxies: Sequence[Network]) -> ClientInfo:
    """
    Work out the client of C{request}.

    The peer address counts unless the peer is a trusted proxy. Then
    C{X-Forwarded-For} is read from the right, skipping trusted proxies, and
    the first other address is the client; C{X-Forwarded-Proto} gives the
    scheme. A malformed entry stops the walk at the last address that was
    checked, so a client cannot choose its own address.
    """
    peer = request.getClientAddress()
    secure = bool(request.isSecure())
    if not isinstance(peer, IPv4Address | IPv6Address):
        return ClientInfo(None, secure)

    client = _parse_address(peer.host)
    if client is None or not _is_trusted(client, trusted_proxies):
        return ClientInfo(str(client) if client else peer.host, secure)

    forwarded = request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])
    hops = [hop for value in forwarded for hop in value.decode("latin-1").split(",")]
    for hop in reversed(hops):
        address = _parse_address(hop)
        if address is None:
            break
        client = address
        if not _is_trusted(address, trusted_proxies):
            break

    protocols = request.requestHeaders.getRawHeaders(b"x-forwarded-proto", [])
    if protocols:
        first = protocols[0].decode("latin-1").split(",")[0].strip().lower()
        secure = first == "https"
    return ClientInfo(str(client), secure)


def _client_info(request: IRequest) -> IClientInfo:
    info: IClientInfo | None = IClientInfo(request, None)
    if info is None:
        # Outside FrontResource no proxy is trusted.
        return resolve_client(request, ())
    return info


def client_address(request: IRequest) -> str | None:
    """
    Return the IP address of the client of C{request}, believing
    C{X-Forwarded-For} only from C{[http] trusted_proxies}; C{None} when the
    connection came over a UNIX socket.
    """
    address: str | None = _client_info(request).address
    return address


def request_is_secure(request: IRequest) -> bool:
    """
    Return whether the client used HTTPS, believing C{X-Forwarded-Proto}
    only from C{[http] trusted_proxies}.
    """
    return bool(_client_info(request).secure)


@implementer(IResource)
class FrontResource:
    """
    The root resource of the site: sets the security headers and the
    L{ClientInfo} of each request, then renders the wrapped resource tree.

    @ivar wrapped: the resource tree of the pages.
    @ivar trusted_proxies: the networks whose forwarding headers count.
    """

    isLeaf = True

    def __init__(self, wrapped: IResource, trusted_proxies: Sequence[Network]) -> None:
        self.wrapped = wrapped
        self.trusted_proxies = tuple(trusted_proxies)

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        # Never called: the site does not traverse into a leaf.
        return self.wrapped.getChildWithDefault(name, request)

    def putChild(self, path: bytes, child: IResource) -> None:
        self.wrapped.putChild(path, child)

    def render(self, request: IRequest) -> bytes | int:
        info = resolve_client(request, self.trusted_proxies)
        if isinstance(request, Request):
            request.setComponent(IClientInfo, info)
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if info.secure:
            request.setHeader(b"Strict-Transport-Security", HSTS_HEADER)

        resource = getChildForRequest(self.wrapped, request)
        result: bytes | int = resource.render(request)
        return result


def _quote(value: bytes | str | None) -> str:
    if value is None:
        return "-"
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    # Control characters would let a client forge log lines.
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in escaped)


def access_log_line(timestamp: str, request: Request) -> str:
    """
    Format the access log line of C{request}: the client address as
    L{client_address} reports it, the method, the path without its query
    string, the status, the size and the user agent.

    The query string and the C{Referer} header are left out because they can
    carry tokens (an C{id_token_hint}, an authorization code), which must
    never be logged.
    """
    path = request.uri.split(b"?", 1)[0]
    return (
        f'"{_quote(client_address(request))}" - - {timestamp} '
        f'"{_quote(request.method)} {_quote(path)} {_quote(request.clientproto)}" '
        f"{request.code} {request.sentLength or '-'} "
        f'"{_quote(request.getHeader(b"user-agent"))}"'
    )
