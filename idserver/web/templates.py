"""
Server-rendered HTML pages: C{string.Template} files with every value
escaped unless it is L{Markup}.

A page is a body template rendered into C{base.html}, which contains the
document head, the style sheet link and the page title. Templates live in
C{idserver/web/templates/} and use C{$name} placeholders.
"""

from __future__ import annotations

import html
import string
from functools import cache
from importlib.resources import files
from typing import Any

from twisted.web.iweb import IRequest

__all__ = ["Markup", "escape", "render", "render_page", "send_page"]


class Markup(str):
    """
    Text that is already HTML and is inserted as it is.
    """


def escape(value: Any) -> str:
    """
    Return C{value} as HTML text: L{Markup} unchanged, anything else
    escaped (quotes included, so it is safe in attribute values too).
    """
    if isinstance(value, Markup):
        return value
    return html.escape("" if value is None else str(value), quote=True)


@cache
def _template(name: str) -> string.Template:
    text = (files("idserver.web") / "templates" / name).read_text(encoding="utf-8")
    return string.Template(text)


def render(name: str, **values: Any) -> Markup:
    """
    Fill the template C{name} with C{values}, escaped.

    @raise KeyError: the template has a placeholder not in C{values}.
    """
    escaped = {key: escape(value) for key, value in values.items()}
    return Markup(_template(name).substitute(escaped))


def render_page(title: str, body: str, *, heading: str | None = None) -> bytes:
    """
    Render a whole page: C{body} (usually from L{render}) inside
    C{base.html}, titled C{title}.
    """
    page = render(
        "base.html",
        title=title,
        heading=title if heading is None else heading,
        body=Markup(body),
    )
    return page.encode("utf-8")


def send_page(
    request: IRequest, title: str, body: str, *, status: int | None = None
) -> bytes:
    """
    Set the headers (and C{status}, unless C{None} keeps the one already
    set) of an HTML response that must not be cached, and return the
    rendered page.
    """
    if status is not None:
        request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return render_page(title, body)
