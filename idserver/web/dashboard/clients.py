"""
The admin pages for OpenID Connect clients: list, create (showing the id,
the secret once, and the endpoint URLs), edit, regenerate the secret,
delete.
"""

from __future__ import annotations

import re
from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from idserver.errors import DirectoryError
from idserver.model import Group
from idserver.oidc.model import SIGNING_ALGORITHMS, Client
from idserver.web.dashboard.base import (
    DashboardPages,
    Viewer,
    done_notice,
    form_flag,
    form_lines,
    form_value,
)
from idserver.web.dashboard.html import (
    FormState,
    checkbox,
    data_table,
    element,
    select,
    text_area,
    text_input,
)
from idserver.web.templates import Markup

__all__ = ["ClientPages", "endpoint_urls"]

CLIENT_FIELDS = (
    "name",
    "redirect_uris",
    "post_logout_redirect_uris",
    "launch_url",
    "signing_alg",
    "public",
    "allowed_groups",
)

_NOTICES = {
    "saved": "The client was saved.",
    "deleted": "The client was deleted. Its tokens no longer work.",
}

_ALGORITHM_NAMES = {"RS256": "RS256 (RSA, the default)", "EdDSA": "EdDSA (Ed25519)"}


def endpoint_urls(issuer: str) -> list[tuple[str, str]]:
    """
    Return the names and URLs a relying party is configured with.
    """
    return [
        ("Issuer", issuer),
        ("Discovery", f"{issuer}/.well-known/openid-configuration"),
        ("Authorization", f"{issuer}/auth"),
        ("Token", f"{issuer}/token"),
        ("UserInfo", f"{issuer}/me"),
        ("JWKS", f"{issuer}/jwks"),
        ("End session", f"{issuer}/session/end"),
        ("Revocation", f"{issuer}/token/revocation"),
        ("Introspection", f"{issuer}/token/introspection"),
    ]


def copy_list(items: list[tuple[str, str]], id: str) -> Markup:
    """
    Build a list of read-only values with copy buttons; without JavaScript
    the values can still be selected and copied by hand.
    """
    rows = []
    for label, value in items:
        field_id = id + "-" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        rows.append(
            element(
                "div",
                element("label", label, for_=field_id),
                element(
                    "div",
                    element(
                        "input",
                        id=field_id,
                        type="text",
                        value=value,
                        readonly=True,
                        class_="copy-value",
                    ),
                    element(
                        "button",
                        "Copy",
                        type="button",
                        class_="copy small",
                        data_copy=field_id,
                        hidden=True,
                    ),
                    class_="copy-row",
                ),
                class_="field",
            )
        )
    return element("div", rows, class_="copy-list card stack", id=id)


class ClientPages(DashboardPages):
    """
    The routes under C{/admin/clients}.
    """

    app = Klein()

    async def _client(self, client_id: str) -> Client | None:
        return await self.context.clients.get_client(client_id)

    @app.route("/admin/clients", methods=["GET", "HEAD"])
    async def list_clients(self, request: IRequest) -> bytes:
        """
        List the registered clients.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        clients = await self.context.clients.list_clients()
        if clients:
            rows = [
                element(
                    "tr",
                    element(
                        "td",
                        element(
                            "a", client.name, href=f"/admin/clients/{client.client_id}"
                        ),
                        data_label="Name",
                    ),
                    element("td", element("code", client.client_id), data_label="Id"),
                    element(
                        "td",
                        "public" if client.public else "confidential",
                        data_label="Type",
                    ),
                    element("td", client.signing_alg, data_label="Signing"),
                )
                for client in clients
            ]
            table: Markup = data_table(
                ("Name", "Client id", "Type", "Signing"),
                rows,
                class_="table",
                id="clients",
            )
        else:
            table = element("p", "No clients are registered yet.", class_="empty")
        toolbar = element(
            "div",
            element(
                "a", "New client", href="/admin/clients/new", class_="button primary"
            ),
            class_="toolbar",
        )
        return self.page(
            request,
            viewer,
            "OpenID clients",
            toolbar,
            table,
            element("h2", "Provider endpoints"),
            copy_list(endpoint_urls(self.context.issuer()), "endpoints"),
            section="/admin/clients",
            notice=done_notice(request, _NOTICES),
        )

    # Forms

    def _state(self, client: Client | None) -> FormState:
        if client is None:
            return FormState.of(
                {"signing_alg": "RS256", "public": "false"},
                redirect_uri="redirect_uris",
            )
        state = FormState.of(
            {
                "name": client.name,
                "redirect_uris": "\n".join(client.redirect_uris),
                "post_logout_redirect_uris": "\n".join(
                    client.post_logout_redirect_uris
                ),
                "launch_url": client.launch_url,
                "signing_alg": client.signing_alg,
                "public": "true" if client.public else "false",
            },
            redirect_uri="redirect_uris",
        )
        state.values["allowed_groups"] = "\n".join(client.allowed_group_ids)
        return state

    def _read_form(self, form: dict[str, list[str]]) -> FormState:
        state = FormState.of(
            {
                "name": form_value(form, "name"),
                "redirect_uris": form_value(form, "redirect_uris"),
                "post_logout_redirect_uris": form_value(
                    form, "post_logout_redirect_uris"
                ),
                "launch_url": form_value(form, "launch_url"),
                "signing_alg": form_value(form, "signing_alg"),
                "public": "true" if form_flag(form, "public") else "false",
            },
            redirect_uri="redirect_uris",
        )
        state.values["allowed_groups"] = "\n".join(form.get("allowed_groups", []))
        return state

    def _fields(self, state: FormState, groups: list[Group]) -> list[Markup]:
        chosen = set(state.value("allowed_groups").split())
        group_boxes = [
            element(
                "label",
                element(
                    "input",
                    type="checkbox",
                    name="allowed_groups",
                    value=group.id,
                    checked=group.id in chosen,
                ),
                " ",
                group.name,
                class_="check",
            )
            for group in groups
        ]
        error = state.errors.get("allowed_groups")
        return [
            text_input(state, "name", "Name", required=True),
            text_area(
                state,
                "redirect_uris",
                "Redirect URIs",
                hint="One per line, matched exactly. The port of an"
                " http://127.0.0.1 or http://[::1] URI may vary.",
            ),
            text_area(
                state,
                "post_logout_redirect_uris",
                "Post-logout redirect URIs",
                hint="One per line; optional.",
                rows=2,
            ),
            text_input(
                state,
                "launch_url",
                "Launch URL",
                type="url",
                hint="The link to the app on the dashboard's home page; optional.",
            ),
            select(
                state,
                "signing_alg",
                "ID token signing algorithm",
                [(alg, _ALGORITHM_NAMES.get(alg, alg)) for alg in SIGNING_ALGORITHMS],
            ),
            checkbox(
                state,
                "public",
                "Public client (no secret; PKCE required)",
                hint="For single-page and native apps that cannot keep a secret.",
            ),
            element(
                "fieldset",
                element("legend", "Allowed groups"),
                element(
                    "p",
                    "Only members of the checked groups may use the app; none"
                    " checked lets every user in. Admins always may.",
                    class_="hint",
                ),
                element("div", group_boxes, class_="checks")
                if group_boxes
                else element("p", "There are no groups.", class_="muted"),
                element("p", error, class_="field-error") if error else None,
                class_="field",
            ),
        ]

    def _values(self, state: FormState) -> dict[str, Any]:
        return {
            "redirect_uris": form_lines(state.value("redirect_uris")),
            "post_logout_redirect_uris": form_lines(
                state.value("post_logout_redirect_uris")
            ),
            "signing_alg": state.value("signing_alg"),
            "public": state.value("public") == "true",
            "allowed_group_ids": state.value("allowed_groups").split(),
        }

    async def _check_groups(self, state: FormState, group_ids: list[str]) -> bool:
        known = {group.id for group in await self.directory.list_groups()}
        unknown = [g for g in group_ids if g not in known]
        if unknown:
            state.add_error(
                "allowed_groups",
                f"There is no group with the id {unknown[0]!r}.",
            )
            return False
        return True

    # Create

    @app.route("/admin/clients/new", methods=["GET", "HEAD"])
    async def new_client(self, request: IRequest) -> bytes:
        """
        Show the form that registers a client.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        return await self._new_page(request, viewer, self._state(None))

    async def _new_page(
        self, request: IRequest, viewer: Viewer, state: FormState
    ) -> bytes:
        groups = await self.directory.list_groups()
        form = self.post_form(
            viewer,
            "/admin/clients/new",
            state.summary(),
            self._fields(state, groups),
            submit="Create client",
            class_="stack card",
            id="client-form",
        )
        return self.page(
            request, viewer, "New OpenID client", form, section="/admin/clients"
        )

    @app.route("/admin/clients/new", methods=["POST"])
    async def create_client(self, request: IRequest) -> bytes:
        """
        Register a client and show its id and secret once.
        """
        posted = await self.admin_form(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        state = self._read_form(form)
        values = self._values(state)
        name = state.value("name")
        try:
            if not await self._check_groups(state, values["allowed_group_ids"]):
                raise _FormInvalid()
            client, secret = await self.context.clients.add_client(
                name,
                values["redirect_uris"],
                post_logout_redirect_uris=values["post_logout_redirect_uris"],
                launch_url=state.value("launch_url").strip() or None,
                signing_alg=values["signing_alg"],
                public=values["public"],
                allowed_group_ids=values["allowed_group_ids"],
            )
        except (DirectoryError, _FormInvalid) as error:
            await self._reject_form(request, viewer, state, error, "client.add", name)
            return await self._new_page(request, viewer, state)
        await self.record(
            request,
            viewer,
            "client.add",
            client.client_id,
            f"{client.name}, {'public' if client.public else 'confidential'}",
        )
        return self._credentials_page(
            request, viewer, client, secret, "OpenID client created"
        )

    async def _reject_form(
        self,
        request: IRequest,
        viewer: Viewer,
        state: FormState,
        error: DirectoryError | _FormInvalid,
        kind: str,
        subject: str,
    ) -> None:
        """
        Mark the fields of a rejected client form, record the failure as an
        audit event of type C{kind} on C{subject}, and set status 400.
        """
        if isinstance(error, DirectoryError):
            state.fail(error, CLIENT_FIELDS)
        await self.record(
            request,
            viewer,
            kind,
            subject,
            str(error) or "invalid allowed groups",
            outcome="failure",
        )
        request.setResponseCode(400)

    def _credentials_page(
        self,
        request: IRequest,
        viewer: Viewer,
        client: Client,
        secret: str | None,
        title: str,
    ) -> bytes:
        credentials = [("Client id", client.client_id)]
        if secret is not None:
            credentials.append(("Client secret", secret))
        warning = (
            element(
                "p",
                "Copy the client secret now: it is shown only once and cannot"
                " be read back. Regenerate it if it is lost.",
                class_="alert alert-warn",
                role="alert",
            )
            if secret is not None
            else element(
                "p",
                "This is a public client: it has no secret and must use PKCE.",
                class_="alert alert-info",
            )
        )
        body = [
            warning,
            copy_list(credentials, "credentials"),
            element("h2", "Endpoints"),
            copy_list(endpoint_urls(self.context.issuer()), "endpoints"),
            element(
                "p",
                element(
                    "a",
                    "Continue to the client",
                    href=f"/admin/clients/{client.client_id}",
                    class_="button primary",
                ),
            ),
        ]
        return self.page(request, viewer, title, body, section="/admin/clients")

    # Edit

    @app.route("/admin/clients/<string:client_id>", methods=["GET", "HEAD"])
    async def show_client(self, request: IRequest, client_id: str) -> bytes:
        """
        Show a client's settings form.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        client = await self._client(client_id)
        if client is None:
            return self.not_found(request, viewer, "There is no such client.")
        return await self._edit_page(
            request, viewer, client, self._state(client), done_notice(request, _NOTICES)
        )

    async def _edit_page(
        self,
        request: IRequest,
        viewer: Viewer,
        client: Client,
        state: FormState,
        notice: str | None = None,
    ) -> bytes:
        base = f"/admin/clients/{client.client_id}"
        groups = await self.directory.list_groups()
        body = [
            copy_list([("Client id", client.client_id)], "credentials"),
            element("h2", "Settings"),
            self.post_form(
                viewer,
                base,
                state.summary(),
                self._fields(state, groups),
                submit="Save client",
                class_="stack card",
                id="client-form",
            ),
            element("h2", "Secret"),
            self.post_form(
                viewer,
                f"{base}/secret",
                element(
                    "p",
                    "A new secret replaces the old one at once; the app must be"
                    " configured with it.",
                ),
                submit="Regenerate secret",
                button_class="danger",
                class_="stack card",
            )
            if not client.public
            else element("p", "A public client has no secret.", class_="card muted"),
            element("h2", "Endpoints"),
            copy_list(endpoint_urls(self.context.issuer()), "endpoints"),
            element("h2", "Delete"),
            self.post_form(
                viewer,
                f"{base}/delete",
                element(
                    "p",
                    "Deleting the client signs its users out of it: its tokens"
                    " stop working.",
                ),
                submit="Delete client",
                button_class="danger",
                class_="stack card",
            ),
        ]
        return self.page(
            request,
            viewer,
            f"Client {client.name}",
            body,
            section="/admin/clients",
            notice=notice,
        )

    @app.route("/admin/clients/<string:client_id>", methods=["POST"])
    async def save_client(self, request: IRequest, client_id: str) -> bytes:
        """
        Save a client's settings.
        """
        posted = await self.admin_post(
            request, self._client, client_id, "There is no such client."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, client = posted
        state = self._read_form(form)
        values = self._values(state)
        try:
            if not await self._check_groups(state, values["allowed_group_ids"]):
                raise _FormInvalid()
            updated, secret = await self.context.clients.update_client(
                client.client_id,
                name=state.value("name"),
                redirect_uris=values["redirect_uris"],
                post_logout_redirect_uris=values["post_logout_redirect_uris"],
                launch_url=state.value("launch_url").strip(),
                signing_alg=values["signing_alg"],
                public=values["public"],
                allowed_group_ids=values["allowed_group_ids"],
            )
        except (DirectoryError, _FormInvalid) as error:
            await self._reject_form(
                request, viewer, state, error, "client.set", client.client_id
            )
            return await self._edit_page(request, viewer, client, state)
        await self.record(request, viewer, "client.set", client.client_id, updated.name)
        if secret is not None:
            # The client stopped being public, so it got its first secret.
            return self._credentials_page(
                request, viewer, updated, secret, "New client secret"
            )
        return self.redirect(request, f"/admin/clients/{client.client_id}?done=saved")

    @app.route("/admin/clients/<string:client_id>/secret", methods=["POST"])
    async def regenerate_secret(self, request: IRequest, client_id: str) -> bytes:
        """
        Replace a confidential client's secret and show the new one once.
        """
        posted = await self.admin_post(
            request, self._client, client_id, "There is no such client."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, client = posted
        updated, secret = await self.context.clients.update_client(
            client.client_id, new_secret=True
        )
        await self.record(request, viewer, "client.set", client.client_id, "new secret")
        return self._credentials_page(
            request, viewer, updated, secret, "New client secret"
        )

    @app.route("/admin/clients/<string:client_id>/delete", methods=["POST"])
    async def delete_client(self, request: IRequest, client_id: str) -> bytes:
        """
        Delete a client.
        """
        posted = await self.admin_post(
            request, self._client, client_id, "There is no such client."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, client = posted
        await self.context.clients.delete_client(client.client_id)
        await self.record(
            request, viewer, "client.delete", client.client_id, client.name
        )
        return self.redirect(request, "/admin/clients?done=deleted")


class _FormInvalid(Exception):
    """
    A form error already recorded in the L{FormState}.
    """
