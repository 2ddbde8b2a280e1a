"""
The LDAP view of the directory: entries built from users and groups, and
an immutable snapshot of them with indexes.

A snapshot is built once per directory revision and then only read, so
searches need no locks and an entry caches its encoded attributes for
every later search of the same revision.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable
from typing import Any

from idserver.ldap.ber import encode_octet_string, encode_tlv
from idserver.ldap.dn import (
    DN,
    escape_value,
    normalize_parsed,
    normalize_value,
    parse_dn,
)
from idserver.ldap.schema import (
    ATTRIBUTE_TYPES,
    AttributeType,
    Syntax,
    attribute_type,
    format_time,
    normalize,
)
from idserver.model import Group, User

__all__ = [
    "INDEXED_ATTRIBUTES",
    "Entry",
    "Selection",
    "Snapshot",
    "user_dn",
]

# Equality and substring filters on these attributes use an index instead
# of testing every entry. uidNumber and gidNumber are looked up by POSIX
# clients such as SSSD for every numeric id they resolve.
INDEXED_ATTRIBUTES = (
    "uid",
    "cn",
    "username",
    "samaccountname",
    "mail",
    "mailalternateaddress",
    "entryuuid",
    "memberof",
    "member",
    "memberuid",
    "objectclass",
    "uidnumber",
    "gidnumber",
)

_TYPES: dict[str, AttributeType] = {a.key: a for a in ATTRIBUTE_TYPES}
_ORDER: dict[str, int] = {a.key: i for i, a in enumerate(ATTRIBUTE_TYPES)}

USER_OBJECT_CLASSES = (
    "top",
    "user",
    "inetOrgPerson",
    "person",
    "organizationalPerson",
    "posixAccount",
)
GROUP_OBJECT_CLASSES = ("top", "group", "groupOfNames", "posixGroup")

_PARTIAL_ATTRIBUTE_LIST = 0x30
_SEARCH_RESULT_ENTRY = 0x64


class Selection:
    """
    The attributes a search asked for (RFC 4511 §4.5.1.8, RFC 3673).

    @ivar user: whether every user attribute is selected.
    @ivar operational: whether every operational attribute is selected.
    @ivar named: keys of attributes selected by name.
    """

    __slots__ = ("user", "operational", "named", "_hash")

    def __init__(self, user: bool, operational: bool, named: frozenset[str]) -> None:
        self.user = user
        self.operational = operational
        self.named = named
        self._hash = hash((user, operational, named))

    @classmethod
    def from_request(cls, descriptions: Iterable[str]) -> Selection:
        """
        Build the selection for the attribute list of a search request:
        an empty list or C{*} selects all user attributes, C{+} all
        operational ones, C{1.1} alone none; unknown names are ignored.
        """
        user = False
        operational = False
        named: set[str] = set()
        seen_any = False
        for description in descriptions:
            seen_any = True
            if description == "*":
                user = True
            elif description == "+":
                operational = True
            elif description == "1.1":
                continue
            else:
                attribute = attribute_type(description)
                if attribute is not None:
                    named.add(attribute.key)
        if not seen_any:
            user = True
        return cls(user, operational, frozenset(named))

    def includes(self, key: str) -> bool:
        """
        Return whether the attribute with this key is selected.
        """
        if key in self.named:
            return True
        return self.operational if _TYPES[key].operational else self.user

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Selection)
            and self.user == other.user
            and self.operational == other.operational
            and self.named == other.named
        )

    def __hash__(self) -> int:
        return self._hash


ALL_USER_ATTRIBUTES = Selection(True, False, frozenset())


class Entry:
    """
    One entry: its name, its attributes, their normalised values and the
    cached encodings.

    @ivar dn: the name as published.
    @ivar ndn: the normalised name (L{idserver.ldap.dn.normalize_parsed}).
    @ivar attributes: attribute key to published values, in schema order.
    @ivar values: attribute key to normalised values.
    @ivar sort_key: orders entries within a snapshot and names the last
        entry of a page in a paging cookie.
    @ivar kind: C{user}, C{group}, C{container} or C{root}.
    @ivar object_id: the user or group id, for users and groups.
    """

    __slots__ = (
        "dn",
        "ndn",
        "parsed_dn",
        "attributes",
        "values",
        "sort_key",
        "kind",
        "object_id",
        "position",
        "_encoded_name",
        "_encoded_attributes",
        "_all_user",
    )

    def __init__(
        self,
        dn: str,
        ndn: str,
        attributes: dict[str, tuple[str, ...]],
        *,
        sort_key: str,
        kind: str,
        object_id: str | None = None,
        parsed_dn: DN | None = None,
    ) -> None:
        self.dn = dn
        self.ndn = ndn
        self.parsed_dn = parsed_dn if parsed_dn is not None else parse_dn(dn)
        # Attributes without values are left out, and the rest follow the
        # order of the schema, so entries list them alike.
        ordered = sorted(
            ((key, values) for key, values in attributes.items() if values),
            key=lambda item: _ORDER[item[0]],
        )
        self.attributes = dict(ordered)
        self.values: dict[str, tuple[Any, ...]] = {
            key: _normalized(key, values) for key, values in self.attributes.items()
        }
        self.sort_key = sort_key
        self.kind = kind
        self.object_id = object_id
        self.position = -1
        self._encoded_name = encode_octet_string(dn)
        self._encoded_attributes: dict[str, bytes] = {}
        self._all_user: bytes | None = None

    def __repr__(self) -> str:
        return f"<Entry {self.dn}>"

    def _encode_attribute(self, key: str) -> bytes:
        encoded = self._encoded_attributes.get(key)
        if encoded is None:
            values = b"".join(encode_octet_string(v) for v in self.attributes[key])
            encoded = encode_tlv(
                0x30,
                encode_octet_string(_TYPES[key].name) + encode_tlv(0x31, values),
            )
            self._encoded_attributes[key] = encoded
        return encoded

    def selected(self, selection: Selection) -> list[str]:
        """
        Return the keys of this entry's attributes that C{selection}
        includes, in schema order.
        """
        return [key for key in self.attributes if selection.includes(key)]

    def encode(self, selection: Selection, types_only: bool = False) -> bytes:
        """
        Encode this entry as the protocolOp of a SearchResultEntry.
        """
        if selection == ALL_USER_ATTRIBUTES and not types_only:
            if self._all_user is None:
                self._all_user = self._encode_op(
                    b"".join(
                        self._encode_attribute(k) for k in self.selected(selection)
                    )
                )
            return self._all_user
        if types_only:
            body = b"".join(
                encode_tlv(0x30, encode_octet_string(_TYPES[k].name) + b"\x31\x00")
                for k in self.selected(selection)
            )
        else:
            body = b"".join(self._encode_attribute(k) for k in self.selected(selection))
        return self._encode_op(body)

    def _encode_op(self, attributes: bytes) -> bytes:
        return encode_tlv(
            _SEARCH_RESULT_ENTRY,
            self._encoded_name + encode_tlv(_PARTIAL_ATTRIBUTE_LIST, attributes),
        )


_SHARED_NORMALIZED: dict[tuple[str, tuple[str, ...]], tuple[Any, ...]] = {}


def _normalized(key: str, values: tuple[str, ...]) -> tuple[Any, ...]:
    syntax = _TYPES[key].syntax
    if syntax is Syntax.oid:
        # Object class lists repeat on every entry: share one tuple.
        shared = _SHARED_NORMALIZED.get((key, values))
        if shared is None:
            shared = tuple(normalize_value(v) for v in values)
            _SHARED_NORMALIZED[(key, values)] = shared
        return shared
    if syntax is Syntax.string:
        return tuple(normalize_value(v) for v in values)
    return tuple(normalize(syntax, v) for v in values)


def user_dn(user_id: str, suffix: str) -> str:
    """
    Return the DN of a user: C{cn=<user id>,ou=users,<suffix>}.
    """
    return f"cn={escape_value(user_id)},ou=users,{suffix}"


def group_dn(name: str, suffix: str) -> str:
    """
    Return the DN of a group: C{cn=<group name>,ou=groups,<suffix>}.
    """
    return f"cn={escape_value(name)},ou=groups,{suffix}"


def _words(display_name: str) -> list[str]:
    return display_name.split()


def user_attributes(
    user: User, suffix: str, group_dns: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """
    Return the attributes of a user's entry, keyed by lower-case name.
    """
    words = _words(user.display_name)
    attributes: dict[str, tuple[str, ...]] = {
        "objectclass": USER_OBJECT_CLASSES,
        "objectcategory": ("person",),
        "cn": (user.id,),
        "uid": (user.id,),
        "username": (user.username,),
        "samaccountname": (user.username,),
        "mail": (user.email,),
        "mailalternateaddress": (user.fallback_email,) if user.fallback_email else (),
        "displayname": (" ".join(words),) if words else (),
        "givenname": (words[0],) if words else (),
        "sn": (words[-1] if words else user.username,),
        "memberof": tuple(group_dns),
        "uidnumber": (str(user.uid_number),),
        "gidnumber": (str(user.uid_number),),
        "homedirectory": (f"/home/{user.username}",),
        "loginshell": ("/bin/sh",),
        "entryuuid": (user.id.removeprefix("uid-"),),
        "createtimestamp": (format_time(user.created_at),),
        "modifytimestamp": (format_time(user.updated_at),),
        "pwdchangedtime": (
            (format_time(user.password_changed_at),) if user.password_changed_at else ()
        ),
    }
    return attributes


def group_attributes(
    group: Group, suffix: str, active_ids: Collection[str]
) -> dict[str, tuple[str, ...]]:
    """
    Return the attributes of a group's entry, keyed by lower-case name.

    @param active_ids: the ids of the active users; other members are left
        out of C{memberUid} and C{member}.
    """
    members = tuple(member for member in group.members if member in active_ids)
    return {
        "objectclass": GROUP_OBJECT_CLASSES,
        "cn": (group.name,),
        "gidnumber": (str(group.gid_number),),
        "memberuid": members,
        "member": tuple(user_dn(member, suffix) for member in members),
        "entryuuid": (group.id.removeprefix("gid-"),),
        "createtimestamp": (format_time(group.created_at),),
        "modifytimestamp": (format_time(group.updated_at),),
    }


def _container_attributes(rdn_type: str, value: str) -> dict[str, tuple[str, ...]]:
    object_class = {
        "dc": "domain",
        "o": "organization",
        "ou": "organizationalUnit",
    }.get(rdn_type, "organizationalUnit")
    attributes: dict[str, tuple[str, ...]] = {"objectclass": ("top", object_class)}
    if rdn_type in ("dc", "o", "ou"):
        attributes[rdn_type] = (value,)
    return attributes


class Snapshot:
    """
    Every entry of one directory revision, ordered and indexed. Inactive
    users are not part of it.

    Entries are ordered: the suffix entry, C{ou=users} and the users by
    username, C{ou=groups} and the groups by name. A subtree is therefore a
    contiguous range of positions.

    @ivar revision: the directory revision the snapshot was built from.
    @ivar suffix: the suffix as published.
    @ivar entries: every entry below and including the suffix, in order.
    """

    def __init__(
        self,
        suffix: str,
        users: Iterable[User],
        groups: Iterable[Group],
        revision: int = 0,
    ) -> None:
        self.revision = revision
        parsed_suffix = parse_dn(suffix)
        self.suffix = suffix
        self.suffix_ndn = normalize_parsed(parsed_suffix)

        groups = sorted(groups, key=lambda g: g.name)
        # Disabled users are left out of the tree and of group memberships,
        # so applications that sync users over LDAP drop them.
        users = sorted((u for u in users if u.active), key=lambda u: u.username)
        active_ids = {u.id for u in users}
        dns_of_group = {g.id: group_dn(g.name, suffix) for g in groups}
        memberships: dict[str, list[str]] = {}
        for group in groups:
            for member in group.members:
                memberships.setdefault(member, []).append(dns_of_group[group.id])

        entries: list[Entry] = []
        rdn_type, rdn_value = parsed_suffix[0][0] if parsed_suffix else ("dc", "")
        entries.append(
            Entry(
                suffix,
                self.suffix_ndn,
                _container_attributes(rdn_type, rdn_value),
                sort_key="0",
                kind="container",
                parsed_dn=parsed_suffix,
            )
        )
        self.users_dn = f"ou=users,{suffix}"
        entries.append(self._container("users", "1"))
        for user in users:
            dn = user_dn(user.id, suffix)
            entries.append(
                Entry(
                    dn,
                    f"cn={escape_value(normalize_value(user.id))},ou=users,{self.suffix_ndn}",
                    user_attributes(user, suffix, memberships.get(user.id, ())),
                    sort_key="1\x00" + user.username,
                    kind="user",
                    object_id=user.id,
                    parsed_dn=(
                        (("cn", user.id),),
                        (("ou", "users"),),
                        *parsed_suffix,
                    ),
                )
            )
        self.groups_dn = f"ou=groups,{suffix}"
        self._groups_position = len(entries)
        entries.append(self._container("groups", "2"))
        for group in groups:
            entries.append(
                Entry(
                    dns_of_group[group.id],
                    f"cn={escape_value(normalize_value(group.name))},ou=groups,"
                    f"{self.suffix_ndn}",
                    group_attributes(group, suffix, active_ids),
                    sort_key="2\x00" + group.name,
                    kind="group",
                    object_id=group.id,
                    parsed_dn=(
                        (("cn", group.name),),
                        (("ou", "groups"),),
                        *parsed_suffix,
                    ),
                )
            )

        for position, entry in enumerate(entries):
            entry.position = position
        self.entries = entries
        self.sort_keys = [entry.sort_key for entry in entries]
        self.by_ndn = {entry.ndn: entry for entry in entries}
        self.users = {e.object_id: e for e in entries if e.kind == "user"}
        self._index = self._build_index(entries)
        self._substring_keys: dict[str, tuple[list[str], list[str]]] = {}

    def _container(self, name: str, sort_key: str) -> Entry:
        dn = f"ou={name},{self.suffix}"
        return Entry(
            dn,
            f"ou={name},{self.suffix_ndn}",
            _container_attributes("ou", name),
            sort_key=sort_key,
            kind="container",
        )

    @staticmethod
    def _build_index(entries: list[Entry]) -> dict[str, dict[Any, list[int]]]:
        index: dict[str, dict[Any, list[int]]] = {key: {} for key in INDEXED_ATTRIBUTES}
        for position, entry in enumerate(entries):
            for key, values in entry.values.items():
                table = index.get(key)
                if table is None:
                    continue
                for value in values:
                    positions = table.get(value)
                    if positions is None:
                        table[value] = [position]
                    elif positions[-1] != position:
                        positions.append(position)
        return index

    # The Index protocol of idserver.ldap.matching

    def lookup(self, key: str, value: Any) -> Collection[int] | None:
        table = self._index.get(key)
        if table is None:
            return None
        return table.get(value, ())

    def substrings(
        self, key: str, initial: str | None, middle: tuple[str, ...], final: str | None
    ) -> Collection[int] | None:
        table = self._index.get(key)
        if table is None:
            return None
        forward, backward = self._sorted_keys(key)
        if initial is not None:
            start = bisect.bisect_left(forward, initial)
            stop = bisect.bisect_left(forward, initial + "\U0010ffff")
            keys: Iterable[str] = forward[start:stop]
        elif final is not None:
            reversed_final = final[::-1]
            start = bisect.bisect_left(backward, reversed_final)
            stop = bisect.bisect_left(backward, reversed_final + "\U0010ffff")
            keys = [k[::-1] for k in backward[start:stop]]
        else:
            # Only middle components: test the distinct values of this one
            # attribute, not the entries.
            longest = max(middle, key=len)
            keys = [k for k in forward if longest in k]
        positions: set[int] = set()
        for k in keys:
            positions.update(table[k])
        return positions

    def _sorted_keys(self, key: str) -> tuple[list[str], list[str]]:
        cached = self._substring_keys.get(key)
        if cached is None:
            forward = sorted(k for k in self._index[key] if isinstance(k, str))
            backward = sorted(k[::-1] for k in forward)
            cached = (forward, backward)
            self._substring_keys[key] = cached
        return cached

    # Tree navigation

    def find(self, ndn: str) -> Entry | None:
        """
        Return the entry with this normalised name, if any.
        """
        return self.by_ndn.get(ndn)

    def subtree(self, entry: Entry) -> range:
        """
        Return the positions of C{entry} and every entry below it.
        """
        position = entry.position
        if position == 0:
            return range(0, len(self.entries))
        if position == 1:
            return range(1, self._groups_position)
        if position == self._groups_position:
            return range(position, len(self.entries))
        return range(position, position + 1)

    def children(self, entry: Entry) -> Collection[int]:
        """
        Return the positions of the entries directly below C{entry}.
        """
        position = entry.position
        if position == 0:
            return (1, self._groups_position)
        if position in (1, self._groups_position):
            subtree = self.subtree(entry)
            return range(subtree.start + 1, subtree.stop)
        return ()

    def start_after(self, sort_key: str) -> int:
        """
        Return the first position whose entry sorts after C{sort_key}.
        """
        return bisect.bisect_right(self.sort_keys, sort_key)
