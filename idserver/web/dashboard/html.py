"""
HTML building blocks of the dashboard: elements with escaped content, and
form fields that show their error next to them.

Every text value goes through L{idserver.web.templates.escape}; only
L{Markup} is inserted as it is. Pages send a Content-Security-Policy
without C{'unsafe-inline'}, so nothing here writes C{style} attributes or
inline scripts: the look comes from C{/static/dashboard.css}.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import qrcode
import qrcode.image.svg

from idserver.errors import DirectoryError
from idserver.web.templates import Markup, escape

__all__ = [
    "Child",
    "FormState",
    "checkbox",
    "data_table",
    "element",
    "format_time",
    "hidden",
    "join",
    "qr_data_uri",
    "select",
    "text_area",
    "text_input",
]

Child = str | Markup | None | Iterable[Any]

_VOID = frozenset({"br", "hr", "img", "input", "link", "meta"})


def _children(children: Iterable[Any]) -> Iterable[str]:
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, str):
            yield escape(child)
        elif isinstance(child, Iterable):
            yield from _children(child)
        else:
            yield escape(child)


def join(*children: Child) -> Markup:
    """
    Concatenate C{children}, escaping text and flattening lists.
    """
    return Markup("".join(_children(children)))


def element(tag: str, *children: Child, **attributes: Any) -> Markup:
    """
    Build one HTML element.

    Attribute names are the keyword names with a trailing C{_} removed
    (C{class_}) and other C{_} turned into C{-} (C{aria_label}). C{True}
    writes a boolean attribute; C{None} and C{False} leave it out.
    """
    parts = [tag]
    for name, value in attributes.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        if value is True:
            parts.append(name)
        else:
            parts.append(f'{name}="{escape(value)}"')
    opening = "<" + " ".join(parts) + ">"
    if tag in _VOID:
        return Markup(opening)
    return Markup(opening + join(*children) + f"</{tag}>")


def data_table(labels: Iterable[str], rows: Child, **attributes: Any) -> Markup:
    """
    Build a table with one header row of column C{labels} above C{rows}.

    @param attributes: the table's attributes, named as L{element} takes them.
    """
    return element(
        "table",
        element(
            "thead",
            element("tr", [element("th", label, scope="col") for label in labels]),
        ),
        element("tbody", rows),
        **attributes,
    )


def hidden(name: str, value: str) -> Markup:
    """
    Build a hidden input.
    """
    return element("input", type="hidden", name=name, value=value)


@dataclass
class FormState:
    """
    The values a form shows and the errors found in them.

    @ivar values: the field values to fill in, by input name.
    @ivar errors: the error text shown under each input, by input name.
    @ivar general: errors that belong to no single input, shown above the
        form.
    @ivar aliases: maps a L{DirectoryError.field} name to the input that
        shows it, where they differ (C{password} to C{new_password}).
    """

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, values: Mapping[str, Any] | None = None, **aliases: str) -> FormState:
        """
        Start a state filled with C{values}, each turned into text.
        """
        filled = {k: "" if v is None else str(v) for k, v in (values or {}).items()}
        return cls(values=filled, aliases=dict(aliases))

    def value(self, name: str) -> str:
        return self.values.get(name, "")

    def fail(self, error: DirectoryError, fields: Sequence[str]) -> None:
        """
        Record C{error} under the input it names when that input is one of
        C{fields}, else above the form.
        """
        name = self.aliases.get(error.field or "", error.field)
        if name is not None and name in fields:
            self.errors[name] = error.message
        else:
            self.general.append(error.message)

    def add_error(self, name: str, message: str) -> None:
        self.errors[name] = message

    @property
    def failed(self) -> bool:
        return bool(self.errors or self.general)

    def summary(self) -> Markup:
        """
        Build the list of errors shown above the form.
        """
        if not self.general:
            return Markup("")
        return element(
            "div",
            [element("p", message) for message in self.general],
            class_="alert alert-error",
            role="alert",
        )


def _error(state: FormState, name: str) -> tuple[Markup, str | None]:
    message = state.errors.get(name)
    if message is None:
        return Markup(""), None
    error_id = f"{name}-error"
    return element("p", message, class_="field-error", id=error_id), error_id


def _hint(name: str, text: str | None) -> tuple[Markup, str | None]:
    if not text:
        return Markup(""), None
    hint_id = f"{name}-hint"
    return element("p", text, class_="hint", id=hint_id), hint_id


def _described_by(*ids: str | None) -> str | None:
    present = [i for i in ids if i]
    return " ".join(present) if present else None


def _field(
    name: str,
    label: str,
    control: Markup,
    hint_markup: Markup,
    error: Markup,
    error_id: str | None,
) -> Markup:
    """
    Wrap a form control with its label above and its hint and error below.
    """
    return element(
        "div",
        element("label", label, for_=name),
        control,
        hint_markup,
        error,
        class_="field" + (" invalid" if error_id else ""),
    )


def text_input(
    state: FormState,
    name: str,
    label: str,
    *,
    type: str = "text",
    hint: str | None = None,
    readonly: bool = False,
    required: bool = False,
    autocomplete: str | None = None,
    keep_value: bool = True,
    **attributes: Any,
) -> Markup:
    """
    Build a labelled input with its hint and error.

    @param keep_value: whether to fill in the value (false for passwords).
    """
    error, error_id = _error(state, name)
    hint_markup, hint_id = _hint(name, hint)
    control = element(
        "input",
        id=name,
        name=name,
        type=type,
        value=state.value(name) if keep_value else None,
        readonly=readonly,
        required=required,
        autocomplete=autocomplete,
        aria_invalid="true" if error_id else None,
        aria_describedby=_described_by(hint_id, error_id),
        **attributes,
    )
    return _field(name, label, control, hint_markup, error, error_id)


def text_area(
    state: FormState,
    name: str,
    label: str,
    *,
    hint: str | None = None,
    readonly: bool = False,
    rows: int = 4,
) -> Markup:
    """
    Build a labelled multi-line input with its hint and error.
    """
    error, error_id = _error(state, name)
    hint_markup, hint_id = _hint(name, hint)
    control = element(
        "textarea",
        state.value(name),
        id=name,
        name=name,
        rows=str(rows),
        readonly=readonly,
        spellcheck="false",
        aria_invalid="true" if error_id else None,
        aria_describedby=_described_by(hint_id, error_id),
    )
    return _field(name, label, control, hint_markup, error, error_id)


def checkbox(
    state: FormState,
    name: str,
    label: str,
    *,
    hint: str | None = None,
    disabled: bool = False,
) -> Markup:
    """
    Build a checkbox that always submits a value: a hidden C{false} comes
    first and the checked box adds C{true}, so an unchecked box is not
    mistaken for a missing field (see L{form_flag}).
    """
    error, error_id = _error(state, name)
    hint_markup, hint_id = _hint(name, hint)
    checked = state.value(name) == "true"
    return element(
        "div",
        hidden(name, "false") if not disabled else None,
        element(
            "label",
            element(
                "input",
                type="checkbox",
                id=name,
                name=name,
                value="true",
                checked=checked,
                disabled=disabled,
                aria_describedby=_described_by(hint_id, error_id),
            ),
            " ",
            label,
            class_="check",
        ),
        hint_markup,
        error,
        class_="field" + (" invalid" if error_id else ""),
    )


def select(
    state: FormState,
    name: str,
    label: str,
    options: Sequence[tuple[str, str]],
    *,
    hint: str | None = None,
    disabled: bool = False,
) -> Markup:
    """
    Build a labelled drop-down list of C{(value, text)} options.
    """
    error, error_id = _error(state, name)
    hint_markup, hint_id = _hint(name, hint)
    current = state.value(name)
    control = element(
        "select",
        [
            element("option", text, value=value, selected=value == current)
            for value, text in options
        ],
        id=name,
        name=name,
        disabled=disabled,
        aria_describedby=_described_by(hint_id, error_id),
    )
    return _field(name, label, control, hint_markup, error, error_id)


def format_time(moment: datetime | float | None, *, seconds: bool = False) -> Markup:
    """
    Show a time in UTC as a C{<time>} element, or a dash for none.
    """
    if moment is None:
        return Markup("—")
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    moment = moment.astimezone(UTC)
    return element(
        "time",
        moment.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC"),
        datetime=moment.isoformat(timespec="seconds"),
    )


def qr_data_uri(text: str) -> str:
    """
    Encode C{text} as a QR code in an SVG C{data:} URI, which the pages'
    Content-Security-Policy allows as an image.
    """
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=10)
    buffer = io.BytesIO()
    image.save(buffer)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/svg+xml;base64,{encoded}"
