"""
The admin page of the LDAP server: enable or disable it, edit the address
allowlist, set or generate the admin bind secret, and read the settings to
copy into a client application.
"""

from __future__ import annotations

from klein import Klein
from twisted.web.iweb import IRequest

from idserver.errors import DirectoryError, HasherBusyError
from idserver.ldap import settings as ldap_settings
from idserver.ldap.settings import MIN_SECRET_LENGTH, ldap_state
from idserver.web.dashboard.base import DashboardPages, Viewer, form_flag, form_value
from idserver.web.dashboard.clients import copy_list
from idserver.web.dashboard.html import (
    FormState,
    checkbox,
    element,
    text_area,
    text_input,
)
from idserver.web.dashboard.ldapsettings import client_settings

__all__ = ["LDAPPages"]

_NOTICES = {
    "saved": "The LDAP server settings were saved.",
    "secret": "The admin secret was set.",
}


class LDAPPages(DashboardPages):
    """
    The routes under C{/admin/ldap}.
    """

    app = Klein()

    @app.route("/admin/ldap", methods=["GET", "HEAD"])
    async def show(self, request: IRequest) -> bytes:
        """
        Show the LDAP server settings.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        codes = (request.args or {}).get(b"done", [])
        notice = _NOTICES.get(codes[0].decode("ascii", "replace")) if codes else None
        return self._page(request, viewer, notice=notice)

    def _page(
        self,
        request: IRequest,
        viewer: Viewer,
        *,
        access: FormState | None = None,
        secret: FormState | None = None,
        generated: str | None = None,
        notice: str | None = None,
    ) -> bytes:
        state = ldap_state(viewer.settings)
        if access is None:
            access = FormState.of(
                {
                    "enabled": "true" if state.enabled else "false",
                    "allowlist": "\n".join(state.allowlist),
                }
            )
        secret = secret or FormState()
        status = element(
            "p",
            element(
                "span",
                "Enabled" if state.enabled else "Disabled",
                class_="badge badge-ok" if state.enabled else "badge",
                id="ldap-status",
            ),
            " ",
            "Clients on the allowlist may connect and bind."
            if state.enabled
            else "Connections are closed as soon as they open.",
        )
        access_form = self.post_form(
            viewer,
            "/admin/ldap",
            access.summary(),
            checkbox(access, "enabled", "Enable the LDAP server"),
            text_area(
                access,
                "allowlist",
                "Allowed client addresses",
                hint="One IPv4 or IPv6 address or CIDR range per line, such as"
                " 10.0.0.0/8; text after # is a comment. Addresses not on the"
                " list are disconnected at once.",
                rows=5,
            ),
            submit="Save",
            class_="stack card",
            id="ldap-access",
        )
        secret_status = {
            "generated": "A generated secret is set.",
            "chosen": "A secret chosen by an administrator is set.",
            None: "No secret is set: the admin bind DN cannot bind.",
        }[state.secret]
        secret_forms = element(
            "div",
            element("p", secret_status, id="ldap-secret-status"),
            element(
                "div",
                element("p", "Copy the secret now: it is shown only once."),
                copy_list([("Admin secret", generated)], "ldap-secret"),
                class_="alert alert-warn",
                role="alert",
            )
            if generated
            else None,
            self.post_form(
                viewer,
                "/admin/ldap/secret/generate",
                submit="Generate a new secret",
                class_="inline",
            ),
            self.post_form(
                viewer,
                "/admin/ldap/secret",
                secret.summary(),
                text_input(
                    secret,
                    "secret",
                    "Or choose a secret",
                    type="password",
                    required=True,
                    autocomplete="new-password",
                    keep_value=False,
                    hint=f"At least {MIN_SECRET_LENGTH} characters.",
                ),
                text_input(
                    secret,
                    "confirm_secret",
                    "The secret again",
                    type="password",
                    required=True,
                    autocomplete="new-password",
                    keep_value=False,
                ),
                submit="Set secret",
            ),
            class_="card stack",
            id="ldap-secret",
        )
        body = [
            status,
            access_form,
            element("h2", "Admin secret"),
            secret_forms,
            element("h2", "Client settings"),
            element(
                "p",
                "Configure an app that speaks LDAP with these values; it binds"
                " as the admin DN with the admin secret.",
                class_="muted",
            ),
            copy_list(
                client_settings(self.context.ldap, self.context.public_url),
                "ldap-client",
            ),
        ]
        return self.page(
            request,
            viewer,
            "LDAP server",
            body,
            section="/admin/ldap",
            notice=notice,
        )

    @app.route("/admin/ldap", methods=["POST"])
    async def save(self, request: IRequest) -> bytes:
        """
        Store the on/off switch and the allowlist.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        form = self.check_form(request, viewer)
        if form is None:
            return self.expired_form(request, viewer)
        enabled = form_flag(form, "enabled")
        access = FormState.of(
            {
                "enabled": "true" if enabled else "false",
                "allowlist": form_value(form, "allowlist"),
            }
        )

        before = ldap_state(viewer.settings)
        generated = None
        try:
            lines = ldap_settings.check_allowlist(
                access.value("allowlist").splitlines()
            )
            if enabled:
                generated = await ldap_settings.enable(self.directory, allowlist=lines)
            else:
                await ldap_settings.set_allowlist(self.directory, lines)
                await ldap_settings.disable(self.directory)
        except DirectoryError as error:
            access.fail(error, ("allowlist", "enabled"))
            await self.record(
                request,
                viewer,
                "ldap_server.allowlist",
                "ldap_server",
                str(error),
                outcome="failure",
            )
            request.setResponseCode(400)
            return self._page(request, viewer, access=access)

        if tuple(lines) != before.allowlist:
            await self.record(
                request,
                viewer,
                "ldap_server.allowlist",
                "ldap_server",
                f"{len(lines)} lines",
            )
        if enabled != before.enabled:
            kind = "ldap_server.enable" if enabled else "ldap_server.disable"
            await self.record(request, viewer, kind, "ldap_server")

        if generated is not None:
            # Enabling without a stored secret generates one, as
            # idserver-admin ldap-server enable does.
            await self.record(
                request, viewer, "ldap_server.secret", "ldap_server", "generated"
            )
            viewer = Viewer(
                viewer.session, viewer.user, await self.directory.get_settings()
            )
            return self._page(
                request,
                viewer,
                generated=generated,
                notice="The LDAP server settings were saved, and an admin secret"
                " was generated.",
            )
        return self.redirect(request, "/admin/ldap?done=saved")

    @app.route("/admin/ldap/secret/generate", methods=["POST"])
    async def generate(self, request: IRequest) -> bytes:
        """
        Generate a new admin secret and show it once.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        form = self.check_form(request, viewer)
        if form is None:
            return self.expired_form(request, viewer)
        secret = await ldap_settings.set_secret(self.directory)
        await self.record(
            request, viewer, "ldap_server.secret", "ldap_server", "generated"
        )
        viewer = Viewer(
            viewer.session, viewer.user, await self.directory.get_settings()
        )
        return self._page(
            request,
            viewer,
            generated=secret,
            notice="A new admin secret was generated.",
        )

    @app.route("/admin/ldap/secret", methods=["POST"])
    async def choose(self, request: IRequest) -> bytes:
        """
        Store an admin secret chosen by the administrator.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        form = self.check_form(request, viewer)
        if form is None:
            return self.expired_form(request, viewer)
        state = FormState()
        secret = form_value(form, "secret")
        if secret != form_value(form, "confirm_secret"):
            state.add_error("confirm_secret", "The secrets do not match.")
        else:
            try:
                await ldap_settings.set_secret(self.directory, secret)
            except DirectoryError as error:
                state.fail(error, ("secret",))
            except HasherBusyError:
                state.general.append(
                    "The server is busy. Please try again in a moment."
                )
        if state.failed:
            request.setResponseCode(400)
            return self._page(request, viewer, secret=state)
        await self.record(
            request, viewer, "ldap_server.secret", "ldap_server", "chosen"
        )
        return self.redirect(request, "/admin/ldap?done=secret")
