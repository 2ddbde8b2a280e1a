"""
The admin settings page: server name, lock profile, mandatory 2FA and LDAP
2FA, validated by the same rules as C{idserver-admin settings set}.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from idserver.errors import DirectoryError
from idserver.sessions.maintenance import end_sessions_without_2fa
from idserver.validation import BOOLEAN_SETTINGS, SETTINGS_DEFAULTS, parse_setting
from idserver.web.dashboard.base import DashboardPages, Viewer, form_flag, form_value
from idserver.web.dashboard.html import FormState, checkbox, text_input

__all__ = ["SettingsPages"]

SETTING_FIELDS = tuple(SETTINGS_DEFAULTS)

_HINTS = {
    "name": "Shown on the login page, in the dashboard and as the OpenID"
    " provider name.",
    "lock_profile": "Users cannot change their name or email addresses;"
    " administrators still can.",
    "mandatory_2fa": "Users without two-factor authentication are signed out"
    " of everything at once and must enrol at their next login.",
    "ldap_require_2fa": "Users with 2FA must append their TOTP code to LDAP binds.",
}

_LABELS = {
    "name": "Server name",
    "lock_profile": "Lock profiles",
    "mandatory_2fa": "Mandatory two-factor authentication",
    "ldap_require_2fa": "Require the TOTP code in LDAP binds",
}


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


class SettingsPages(DashboardPages):
    """
    The routes C{/admin/settings}.
    """

    app = Klein()

    def _state(self, settings: Any) -> FormState:
        return FormState.of(
            {
                key: _format(settings.get(key, d))
                if key in BOOLEAN_SETTINGS
                else settings.get(key, d)
                for key, d in SETTINGS_DEFAULTS.items()
            }
        )

    @app.route("/admin/settings", methods=["GET", "HEAD"])
    async def show(self, request: IRequest) -> bytes:
        """
        Show the settings form.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        notice = None
        ended = (request.args or {}).get(b"ended", [])
        if (request.args or {}).get(b"done"):
            notice = "The settings were saved."
            # The count comes from the link, so only a number is shown.
            if len(ended) == 1 and ended[0].isdigit():
                count = int(ended[0])
                users = "1 user" if count == 1 else f"{count} users"
                notice += (
                    f" Mandatory 2FA is on: the sessions of {users} without 2FA ended."
                )
        return self._page(request, viewer, self._state(viewer.settings), notice)

    def _page(
        self,
        request: IRequest,
        viewer: Viewer,
        state: FormState,
        notice: str | None = None,
    ) -> bytes:
        fields = []
        for key in SETTING_FIELDS:
            label = _LABELS.get(key, key)
            if key in BOOLEAN_SETTINGS:
                fields.append(checkbox(state, key, label, hint=_HINTS.get(key)))
            else:
                fields.append(
                    text_input(state, key, label, required=True, hint=_HINTS.get(key))
                )
        form = self.post_form(
            viewer,
            "/admin/settings",
            state.summary(),
            fields,
            submit="Save settings",
            class_="stack card",
            id="settings",
        )
        return self.page(
            request, viewer, "Settings", form, section="/admin/settings", notice=notice
        )

    @app.route("/admin/settings", methods=["POST"])
    async def save(self, request: IRequest) -> bytes:
        """
        Validate and store the changed settings; turning mandatory 2FA on
        ends the sessions of users without 2FA at once.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        form = self.check_form(request, viewer)
        if form is None:
            return self.expired_form(request, viewer)

        state = FormState()
        parsed: dict[str, Any] = {}
        for key in SETTING_FIELDS:
            if key in BOOLEAN_SETTINGS:
                raw: str | bool = form_flag(form, key)
                state.values[key] = _format(raw)
            else:
                raw = form_value(form, key)
                state.values[key] = raw
            try:
                parsed[key] = parse_setting(key, raw)
            except DirectoryError as error:
                state.fail(error, SETTING_FIELDS)
        if state.failed:
            request.setResponseCode(400)
            return self._page(request, viewer, state)

        current = viewer.settings
        changed = {
            key: value
            for key, value in parsed.items()
            if current.get(key, SETTINGS_DEFAULTS[key]) != value
        }
        for key, value in changed.items():
            try:
                await self.directory.set_setting(key, value)
            except DirectoryError as error:
                state.fail(error, SETTING_FIELDS)
                await self.record(
                    request,
                    viewer,
                    "settings.set",
                    key,
                    str(error),
                    outcome="failure",
                )
                request.setResponseCode(400)
                return self._page(request, viewer, state)
            await self.record(
                request, viewer, "settings.set", key, f"{key} = {_format(value)}"
            )

        location = "/admin/settings?done=saved"
        if changed.get("mandatory_2fa") is True:
            ended = await end_sessions_without_2fa(self.directory, self.context.store)
            location += f"&ended={len(ended)}"
        return self.redirect(request, location)
