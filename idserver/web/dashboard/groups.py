"""
The admin pages for groups: list, create, rename, members, delete.
External groups are shown read-only.
"""

from __future__ import annotations

from klein import Klein
from twisted.web.iweb import IRequest

from idserver.errors import DirectoryError, NotFoundError
from idserver.model import Group, Source
from idserver.validation import normalize_group_name
from idserver.web.dashboard.base import DashboardPages, Viewer, done_notice, form_value
from idserver.web.dashboard.html import (
    FormState,
    data_table,
    element,
    hidden,
    text_input,
)
from idserver.web.templates import Markup

__all__ = ["GroupPages"]

_NOTICES = {
    "created": "The group was created.",
    "renamed": "The group was renamed.",
    "added": "The member was added.",
    "removed": "The member was removed.",
    "deleted": "The group was deleted.",
}

_READ_ONLY = (
    "This group comes from the external directory, so its name and members"
    " can only be changed there."
)


class GroupPages(DashboardPages):
    """
    The routes under C{/admin/groups}.
    """

    app = Klein()

    async def _group(self, group_id: str) -> Group | None:
        try:
            return await self.directory.get_group(group_id)
        except NotFoundError:
            return None

    @app.route("/admin/groups", methods=["GET", "HEAD"])
    async def list_groups(self, request: IRequest) -> bytes:
        """
        List every group, with the form that creates one.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        return await self._list_page(
            request, viewer, FormState(), notice=done_notice(request, _NOTICES)
        )

    async def _list_page(
        self,
        request: IRequest,
        viewer: Viewer,
        state: FormState,
        notice: str | None = None,
    ) -> bytes:
        groups = await self.directory.list_groups()
        if groups:
            rows = [
                element(
                    "tr",
                    element(
                        "td",
                        element("a", group.name, href=f"/admin/groups/{group.id}"),
                        data_label="Name",
                    ),
                    element("td", str(len(group.members)), data_label="Members"),
                    element("td", group.source.value, data_label="Source"),
                    element("td", str(group.gid_number), data_label="GID"),
                )
                for group in groups
            ]
            table: Markup = data_table(
                ("Name", "Members", "Source", "GID"), rows, class_="table", id="groups"
            )
        else:
            table = element("p", "There are no groups yet.", class_="empty")
        create = self.post_form(
            viewer,
            "/admin/groups",
            state.summary(),
            text_input(
                state,
                "name",
                "New group",
                required=True,
                autocapitalize="none",
                spellcheck="false",
                hint="Lower case a-z, 0-9, '.', '-' and '_'.",
            ),
            submit="Create group",
            class_="row card",
            id="new-group",
        )
        return self.page(
            request,
            viewer,
            "Groups",
            create,
            table,
            section="/admin/groups",
            notice=notice,
        )

    @app.route("/admin/groups", methods=["POST"])
    async def create_group(self, request: IRequest) -> bytes:
        """
        Create a local group.
        """
        posted = await self.admin_form(request)
        if isinstance(posted, bytes):
            return posted
        viewer, form = posted
        state = FormState.of({"name": form_value(form, "name")})
        name = state.value("name")
        try:
            name = normalize_group_name(name)
            group = await self.directory.add_group(name)
        except DirectoryError as error:
            state.fail(error, ("name",))
            await self.record(
                request, viewer, "group.add", name, str(error), outcome="failure"
            )
            request.setResponseCode(400)
            return await self._list_page(request, viewer, state)
        await self.record(request, viewer, "group.add", group.name, group.id)
        return self.redirect(request, f"/admin/groups/{group.id}?done=created")

    @app.route("/admin/groups/<string:group_id>", methods=["GET", "HEAD"])
    async def show_group(self, request: IRequest, group_id: str) -> bytes:
        """
        Show a group with its members and the forms that change it.
        """
        viewer = await self.admin(request)
        if not isinstance(viewer, Viewer):
            return viewer
        group = await self._group(group_id)
        if group is None:
            return self.not_found(request, viewer, "There is no such group.")
        return await self._group_page(
            request, viewer, group, notice=done_notice(request, _NOTICES)
        )

    async def _group_page(
        self,
        request: IRequest,
        viewer: Viewer,
        group: Group,
        *,
        rename: FormState | None = None,
        members: FormState | None = None,
        notice: str | None = None,
    ) -> bytes:
        rename = rename or FormState.of({"name": group.name})
        members = members or FormState()
        base = f"/admin/groups/{group.id}"
        external = group.source is Source.ldap
        member_items = []
        for user_id, username in await self._members(group):
            remove = (
                None
                if external
                else self.post_form(
                    viewer,
                    f"{base}/remove",
                    hidden("user", user_id),
                    submit="Remove",
                    button_class="link small",
                    class_="inline",
                    aria_label=f"Remove {username}",
                )
            )
            member_items.append(
                element(
                    "li",
                    element("a", username, href=f"/admin/users/{user_id}"),
                    remove,
                )
            )
        member_list = (
            element("ul", member_items, class_="chips", id="members")
            if member_items
            else element("p", "No members.", class_="muted", id="members")
        )
        body: list[Markup | None] = [
            element("p", _READ_ONLY, class_="alert alert-info") if external else None,
            element(
                "dl",
                element("dt", "Id"),
                element("dd", element("code", group.id)),
                element("dt", "GID number"),
                element("dd", str(group.gid_number)),
                element("dt", "Source"),
                element("dd", group.source.value),
                class_="facts card",
            ),
            element("h2", "Members"),
            element(
                "div",
                member_list,
                None
                if external
                else self.post_form(
                    viewer,
                    f"{base}/add",
                    members.summary(),
                    text_input(
                        members,
                        "username",
                        "Add a member by username",
                        required=True,
                        autocapitalize="none",
                        spellcheck="false",
                    ),
                    submit="Add member",
                    class_="row",
                ),
                class_="card stack",
            ),
        ]
        if not external:
            body += [
                element("h2", "Rename"),
                self.post_form(
                    viewer,
                    f"{base}/rename",
                    rename.summary(),
                    text_input(
                        rename,
                        "name",
                        "Name",
                        required=True,
                        autocapitalize="none",
                        spellcheck="false",
                        hint="Renaming changes the group's LDAP DN.",
                    ),
                    submit="Rename group",
                    class_="row card",
                ),
                element("h2", "Delete"),
                self.post_form(
                    viewer,
                    f"{base}/delete",
                    element(
                        "p",
                        "Deleting the group removes its memberships; apps that"
                        " allowed only this group stop admitting its members.",
                    ),
                    submit="Delete group",
                    button_class="danger",
                    class_="stack card",
                ),
            ]
        return self.page(
            request,
            viewer,
            f"Group {group.name}",
            body,
            section="/admin/groups",
            notice=notice,
        )

    async def _members(self, group: Group) -> list[tuple[str, str]]:
        """
        Return the ids and usernames of the members, ordered by username.
        """
        members = []
        for user_id in group.members:
            try:
                members.append(
                    (user_id, (await self.directory.get_user(user_id)).username)
                )
            except NotFoundError:
                continue
        return sorted(members, key=lambda member: member[1])

    async def _change(self, request: IRequest, group_id: str, action: str) -> bytes:
        posted = await self.admin_post(
            request, self._group, group_id, "There is no such group."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, group = posted
        state = FormState()
        kind = {
            "rename": "group.rename",
            "add": "group.add_member",
            "remove": "group.remove_member",
        }[action]
        detail = ""
        try:
            if action == "rename":
                state = FormState.of({"name": form_value(form, "name")})
                renamed = await self.directory.rename_group(
                    group.id, state.value("name")
                )
                detail = f"renamed to {renamed.name}"
            elif action == "add":
                state = FormState.of(
                    {"username": form_value(form, "username")}, user="username"
                )
                username = state.value("username").strip()
                user = await self.directory.user_by_username(username)
                if user is None:
                    raise NotFoundError(
                        f"There is no user named {username!r}.", "username"
                    )
                await self.directory.add_member(group.id, user.id)
                detail = user.username
            else:
                user = await self.directory.get_user(form_value(form, "user"))
                await self.directory.remove_member(group.id, user.id)
                detail = user.username
        except DirectoryError as error:
            state.fail(error, ("name", "username"))
            await self.record(
                request, viewer, kind, group.name, str(error), outcome="failure"
            )
            request.setResponseCode(400)
            if action == "rename":
                return await self._group_page(request, viewer, group, rename=state)
            return await self._group_page(request, viewer, group, members=state)
        await self.record(request, viewer, kind, group.name, detail)
        done = {"rename": "renamed", "add": "added", "remove": "removed"}[action]
        return self.redirect(request, f"/admin/groups/{group.id}?done={done}")

    @app.route("/admin/groups/<string:group_id>/rename", methods=["POST"])
    async def rename_group(self, request: IRequest, group_id: str) -> bytes:
        """
        Rename a local group.
        """
        return await self._change(request, group_id, "rename")

    @app.route("/admin/groups/<string:group_id>/add", methods=["POST"])
    async def add_member(self, request: IRequest, group_id: str) -> bytes:
        """
        Add a user, named by username, to a local group.
        """
        return await self._change(request, group_id, "add")

    @app.route("/admin/groups/<string:group_id>/remove", methods=["POST"])
    async def remove_member(self, request: IRequest, group_id: str) -> bytes:
        """
        Remove a user from a local group.
        """
        return await self._change(request, group_id, "remove")

    @app.route("/admin/groups/<string:group_id>/delete", methods=["POST"])
    async def delete_group(self, request: IRequest, group_id: str) -> bytes:
        """
        Delete a local group.
        """
        posted = await self.admin_post(
            request, self._group, group_id, "There is no such group."
        )
        if isinstance(posted, bytes):
            return posted
        viewer, form, group = posted
        if group.source is Source.ldap:
            await self.record(
                request,
                viewer,
                "group.delete",
                group.name,
                _READ_ONLY,
                outcome="failure",
            )
            request.setResponseCode(403)
            return await self._group_page(request, viewer, group)
        await self.directory.delete_group(group.id)
        await self.record(request, viewer, "group.delete", group.name, group.id)
        return self.redirect(request, "/admin/groups?done=deleted")
