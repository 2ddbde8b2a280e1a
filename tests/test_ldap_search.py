"""
Tests for searching a snapshot without sockets: the entries of SPEC'd
users and groups (L{idserver.ldap.entries}), filter evaluation
(L{idserver.ldap.matching}) and whole search operations with scopes,
limits and paging (L{idserver.ldap.search}).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from idserver.ldap.dn import normalize_dn
from idserver.ldap.entries import Snapshot
from idserver.ldap.filters import (
    And,
    Equality,
    Filter,
    Not,
    Or,
    Present,
    Substrings,
    parse_filter,
)
from idserver.ldap.matching import compile_filter
from idserver.ldap.messages import (
    CompareRequest,
    LDAPError,
    ResultCode,
    SearchRequest,
)
from idserver.ldap.paging import PAGED_RESULTS_OID, CookieSigner
from idserver.ldap.search import PageRequest, SearchOperation, compare, root_dse

from .ldaphelpers import Response, decode_responses, make_group, make_user, paged_cookie

SUFFIX = "dc=cloudron"
USERS = "ou=users,dc=cloudron"
GROUPS = "ou=groups,dc=cloudron"


def build_snapshot(count: int = 0) -> tuple[Snapshot, dict[str, Any]]:
    """
    Build a snapshot with a few hand-made users and groups, and C{count}
    numbered users.
    """
    alice = make_user(
        "alice",
        display_name="Alice Liddell",
        fallback_email="alice@elsewhere.example",
        uid_number=10001,
        password_changed_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    bob = make_user("bob", display_name="Bob", uid_number=10002)
    carol = make_user("carol", display_name="", uid_number=10003)
    star = make_user("star", display_name="A*B (test) \\ x", uid_number=10004)
    numbered = [
        make_user(f"user{i:04d}", display_name=f"User {i}", uid_number=20000 + i)
        for i in range(count)
    ]
    admins = make_group("admins", (alice, bob), gid_number=10100)
    staff = make_group("staff", (carol,), gid_number=10101)
    empty = make_group("empty", gid_number=10102)
    users = [alice, bob, carol, star, *numbered]
    snapshot = Snapshot(SUFFIX, users, [admins, staff, empty], revision=1)
    people: dict[str, Any] = {"alice": alice, "bob": bob, "carol": carol, "star": star}
    people.update({"admins": admins, "staff": staff, "empty": empty})
    return snapshot, people


def request(
    filter: str | Filter = "(objectClass=*)",
    base: str = USERS,
    *,
    scope: int = 2,
    attributes: tuple[str, ...] = (),
    size_limit: int = 0,
    time_limit: int = 0,
    types_only: bool = False,
) -> SearchRequest:
    node = parse_filter(filter) if isinstance(filter, str) else filter
    encoded = repr((filter, base, scope, attributes, size_limit, types_only)).encode()
    return SearchRequest(
        base, scope, 0, size_limit, time_limit, types_only, node, attributes, encoded
    )


def run(
    snapshot: Snapshot,
    search: SearchRequest,
    *,
    max_entries: int = 1000,
    page: PageRequest | None = None,
    signer: CookieSigner | None = None,
    now: Callable[[], float] | None = None,
) -> tuple[list[Response], Response]:
    """
    Run a search to its end and return the entries and the done message.
    """
    operation = SearchOperation(
        1,
        search,
        snapshot,
        root_dse(SUFFIX, starttls=True),
        max_entries=max_entries,
        page=page,
        signer=signer,
        now=now,
    )
    data = []
    for _ in range(100000):
        data.extend(operation.step(7))
        if operation.finished:
            data.extend(operation.step())
            break
    responses = decode_responses(b"".join(data))
    entries = [r for r in responses if r.tag == 0x64]
    done = [r for r in responses if r.tag == 0x65]
    if len(done) != 1 or responses[-1] is not done[0]:
        raise AssertionError(f"expected one SearchResultDone at the end: {responses}")
    return entries, done[0]


def dns(entries: list[Response]) -> list[str]:
    return [e.dn for e in entries]


def user_dn(user: Any) -> str:
    return f"cn={user.id},{USERS}"


class EntryTests(SynchronousTestCase):
    """
    Tests for the attributes of user and group entries.
    """

    def setUp(self) -> None:
        self.snapshot, self.people = build_snapshot()

    def entry(self, search: SearchRequest) -> Response:
        entries, done = run(self.snapshot, search)
        self.assertEqual(done.code, 0)
        self.assertEqual(len(entries), 1)
        return entries[0]

    def test_user(self) -> None:
        """
        A user entry contains the published attributes with their names'
        spelling, and no operational attributes by default.
        """
        alice = self.people["alice"]
        entry = self.entry(request("(username=alice)"))
        self.assertEqual(entry.dn, user_dn(alice))
        self.assertEqual(
            entry.attributes,
            {
                "objectClass": [
                    "top",
                    "user",
                    "inetOrgPerson",
                    "person",
                    "organizationalPerson",
                    "posixAccount",
                ],
                "objectCategory": ["person"],
                "cn": [alice.id],
                "uid": [alice.id],
                "username": ["alice"],
                "sAMAccountName": ["alice"],
                "mail": ["alice@example.com"],
                "mailAlternateAddress": ["alice@elsewhere.example"],
                "displayName": ["Alice Liddell"],
                "givenName": ["Alice"],
                "sn": ["Liddell"],
                "memberOf": [f"cn=admins,{GROUPS}"],
                "uidNumber": ["10001"],
                "gidNumber": ["10001"],
                "homeDirectory": ["/home/alice"],
                "loginShell": ["/bin/sh"],
            },
        )

    def test_names(self) -> None:
        """
        A one-word name is both given name and surname; without a name the
        surname is the username and there is no given or display name.
        """
        bob = self.entry(request("(username=bob)")).attributes
        self.assertEqual((bob["givenName"], bob["sn"]), (["Bob"], ["Bob"]))
        carol = self.entry(request("(username=carol)")).attributes
        self.assertEqual(carol["sn"], ["carol"])
        self.assertNotIn("givenName", carol)
        self.assertNotIn("displayName", carol)

    def test_operational(self) -> None:
        """
        Operational attributes come back with C{+} or by name, in
        GeneralizedTime and RFC 4530 form.
        """
        alice = self.people["alice"]
        entry = self.entry(request("(username=alice)", attributes=("+",)))
        self.assertEqual(
            entry.attributes,
            {
                "entryUUID": [alice.id.removeprefix("uid-")],
                "createTimestamp": ["20240506070809Z"],
                "modifyTimestamp": ["20240506070809Z"],
                "pwdChangedTime": ["20240102030405Z"],
            },
        )
        entry = self.entry(request("(username=alice)", attributes=("*", "entryUUID")))
        self.assertIn("entryUUID", entry.attributes)
        self.assertIn("mail", entry.attributes)
        self.assertNotIn("createTimestamp", entry.attributes)

    def test_no_password_material(self) -> None:
        """
        No attribute of any entry contains password material.
        """
        entries, _ = run(self.snapshot, request(base=SUFFIX, attributes=("*", "+")))
        for entry in entries:
            for name in entry.attributes:
                self.assertNotIn("password", name.lower())
                self.assertNotIn("totp", name.lower())

    def test_group(self) -> None:
        """
        A group entry contains its members' ids and DNs.
        """
        alice, bob = self.people["alice"], self.people["bob"]
        entry = self.entry(request("(cn=admins)", base=GROUPS))
        self.assertEqual(entry.dn, f"cn=admins,{GROUPS}")
        self.assertEqual(
            entry.attributes,
            {
                "objectClass": ["top", "group", "groupOfNames", "posixGroup"],
                "cn": ["admins"],
                "gidNumber": ["10100"],
                "memberUid": sorted([alice.id, bob.id]),
                "member": [
                    user_dn(u) for u in sorted([alice, bob], key=lambda u: u.id)
                ],
            },
        )

    def test_inactive_users_left_out(self) -> None:
        """
        An inactive user has no entry, is in no group's C{member} or
        C{memberUid} values, and the group keeps its other members.
        """
        alice = make_user("alice", uid_number=10001)
        dave = make_user("dave", uid_number=10005, active=False)
        admins = make_group("admins", (alice, dave))
        gone = make_group("gone", (dave,))
        snapshot = Snapshot(SUFFIX, [alice, dave], [admins, gone])

        entries, _ = run(snapshot, request(base=SUFFIX, attributes=("*", "+")))
        self.assertNotIn(user_dn(dave), dns(entries))
        for entry in entries:
            for values in entry.attributes.values():
                self.assertNotIn(dave.id, " ".join(values))
        groups = {e.dn: e.attributes for e in entries if e.dn.endswith(GROUPS)}
        self.assertEqual(groups[f"cn=admins,{GROUPS}"]["memberUid"], [alice.id])
        self.assertEqual(groups[f"cn=admins,{GROUPS}"]["member"], [user_dn(alice)])
        self.assertNotIn("member", groups[f"cn=gone,{GROUPS}"])
        self.assertNotIn("memberUid", groups[f"cn=gone,{GROUPS}"])

        for query in ["(username=dave)", f"(memberUid={dave.id})", "(uidNumber=10005)"]:
            found, done = run(snapshot, request(query, base=SUFFIX))
            self.assertEqual((dns(found), done.code), ([], 0), query)

    def test_attribute_selection(self) -> None:
        """
        Named attributes come back in their published spelling; unknown
        names are ignored; C{1.1} alone selects nothing, and is ignored
        with other names.
        """
        entry = self.entry(
            request("(username=alice)", attributes=("MAIL", "Bogus", "sn"))
        )
        self.assertEqual(
            entry.attributes, {"mail": ["alice@example.com"], "sn": ["Liddell"]}
        )
        entry = self.entry(request("(username=alice)", attributes=("1.1",)))
        self.assertEqual(entry.attributes, {})
        entry = self.entry(request("(username=alice)", attributes=("1.1", "uid")))
        self.assertEqual(list(entry.attributes), ["uid"])

    def test_types_only(self) -> None:
        """
        With typesOnly, attributes come back without values.
        """
        entry = self.entry(
            request("(username=alice)", attributes=("mail",), types_only=True)
        )
        self.assertEqual(entry.attributes, {"mail": []})


class FilterTests(SynchronousTestCase):
    """
    Tests for filter evaluation: which users a filter selects.
    """

    def setUp(self) -> None:
        self.snapshot, self.people = build_snapshot()

    def usernames(self, filter: str, base: str = USERS) -> list[str]:
        entries, done = run(
            self.snapshot, request(filter, base, attributes=("username",))
        )
        self.assertEqual(done.code, 0)
        return [
            e.attributes["username"][0] for e in entries if "username" in e.attributes
        ]

    def test_case_insensitive(self) -> None:
        """
        Attribute names and values compare without case.
        """
        for text in [
            "(USERNAME=ALICE)",
            "(sAMAccountName=Alice)",
            "(mail=ALICE@Example.COM)",
            "(displayname=alice   liddell)",
            f"(cn={self.people['alice'].id.upper()})",
        ]:
            with self.subTest(filter=text):
                self.assertEqual(self.usernames(text), ["alice"])

    def test_dn_values(self) -> None:
        """
        memberOf and member compare with distinguishedNameMatch.
        """
        self.assertEqual(
            self.usernames("(memberOf=CN=Admins, OU=Groups,DC=Cloudron)"),
            ["alice", "bob"],
        )
        self.assertEqual(
            self.usernames(r"(memberOf=cn=adm\69ns,ou=groups,dc=cloudron)"),
            ["alice", "bob"],
        )
        entries, _ = run(
            self.snapshot,
            request(f"(member={user_dn(self.people['carol']).upper()})", GROUPS),
        )
        self.assertEqual(dns(entries), [f"cn=staff,{GROUPS}"])

    def test_in_chain(self) -> None:
        """
        Active Directory's in-chain rule on memberOf is a membership test.
        """
        self.assertEqual(
            self.usernames(f"(memberOf:1.2.840.113556.1.4.1941:=cn=staff,{GROUPS})"),
            ["carol"],
        )

    def test_escapes(self) -> None:
        """
        Escaped characters match literally.
        """
        self.assertEqual(
            self.usernames(r"(displayName=a\2ab \28test\29 \5c x)"), ["star"]
        )
        self.assertEqual(self.usernames(r"(displayName=a\2a*)"), ["star"])
        self.assertEqual(self.usernames(r"(displayName=a\2ab*)"), ["star"])
        self.assertEqual(self.usernames("(displayName=a*b*)"), ["star"])

    def test_substrings(self) -> None:
        """
        Initial, any and final components match in order.
        """
        self.assertEqual(self.usernames("(username=a*)"), ["alice"])
        self.assertEqual(self.usernames("(username=*b)"), ["bob"])
        self.assertEqual(self.usernames("(username=*o*)"), ["bob", "carol"])
        self.assertEqual(
            self.usernames("(mail=*@example.com)"), ["alice", "bob", "carol", "star"]
        )
        self.assertEqual(self.usernames("(username=b*o*b)"), ["bob"])
        self.assertEqual(self.usernames("(username=bo*ob)"), [])
        self.assertEqual(self.usernames("(memberOf=cn=ad*)"), ["alice", "bob"])

    def test_presence_under_not(self) -> None:
        """
        A known attribute that an entry lacks is FALSE, so NOT makes it
        TRUE; an unknown attribute is Undefined, and so is its NOT.
        """
        self.assertEqual(
            self.usernames("(&(objectClass=user)(!(mailAlternateAddress=*)))"),
            ["bob", "carol", "star"],
        )
        self.assertEqual(self.usernames("(!(givenName=*))"), ["carol"])
        self.assertEqual(len(self.usernames("(objectclass=INETORGPERSON)")), 4)
        self.assertEqual(self.usernames("(!(bogusAttribute=*))"), [])
        self.assertEqual(self.usernames("(!(bogusAttribute=x))"), [])
        self.assertEqual(self.usernames("(|(bogusAttribute=x)(username=bob))"), ["bob"])

    def test_invalid_assertion_is_undefined(self) -> None:
        """
        An assertion value invalid for its syntax is Undefined, so NOT
        does not select it either.
        """
        self.assertEqual(self.usernames("(!(uidNumber=abc))"), [])
        self.assertEqual(self.usernames("(!(memberOf=not a dn))"), [])

    def test_ordering(self) -> None:
        """
        Numbers order as integers and strings without case.
        """
        self.assertEqual(self.usernames("(uidNumber>=10003)"), ["carol", "star"])
        self.assertEqual(self.usernames("(uidNumber<=10001)"), ["alice"])
        self.assertEqual(self.usernames("(username<=BOB)"), ["alice", "bob"])
        self.assertEqual(
            self.usernames("(modifyTimestamp>=20240101000000Z)"),
            ["alice", "bob", "carol", "star"],
        )
        self.assertEqual(
            self.usernames("(modifyTimestamp>=20240506090809+0200)"),
            ["alice", "bob", "carol", "star"],
        )
        self.assertEqual(self.usernames("(modifyTimestamp>=20240506090810+0200)"), [])

    def test_approx_and_extensible(self) -> None:
        """
        Approximate matching is equality; extensible matches apply their
        rule, to the DN's values too with C{:dn:}.
        """
        self.assertEqual(self.usernames("(username~=BOB)"), ["bob"])
        self.assertEqual(self.usernames("(displayName:caseExactMatch:=Bob)"), ["bob"])
        self.assertEqual(self.usernames("(displayName:caseExactMatch:=bob)"), [])
        self.assertEqual(self.usernames("(username:=bob)"), ["bob"])
        self.assertEqual(len(self.usernames("(ou:dn:=users)")), 4)
        self.assertEqual(self.usernames("(ou:=users)"), [])
        self.assertEqual(
            self.usernames("(uidNumber:1.2.840.113556.1.4.803:=3)"), ["carol"]
        )
        self.assertEqual(self.usernames("(cn:1.2.3.4:=x)"), [])

    def test_absolute_filters(self) -> None:
        """
        The empty AND is TRUE and the empty OR is FALSE (RFC 4526).
        """
        self.assertEqual(len(self.usernames("(&)")), 4)
        self.assertEqual(self.usernames("(|)"), [])

    def test_index_narrows(self) -> None:
        """
        Equality and substring filters on indexed attributes narrow the
        candidates to the matching entries, without testing every entry.
        """
        snapshot, _ = build_snapshot(count=300)
        for text, most in [
            ("(username=user0042)", 1),
            ("(uid=x)", 0),
            ("(mail=user0042@example.com)", 1),
            ("(sAMAccountName=USER0042)", 1),
            ("(&(objectclass=user)(|(username=user0042)(mail=user0042)))", 1),
            (f"(memberOf=cn=admins,{GROUPS})", 2),
            ("(username=user004*)", 10),
            ("(username=*0042)", 1),
            ("(mail=*r0042@*)", 1),
            ("(objectClass=group)", 3),
            ("(&(uidNumber=20042)(objectClass=posixAccount))", 1),
            ("(gidNumber=20042)", 1),
            ("(&(gidNumber=10100)(objectClass=posixGroup))", 1),
        ]:
            with self.subTest(filter=text):
                candidates = compile_filter(parse_filter(text)).plan(snapshot)
                assert candidates is not None
                self.assertLessEqual(len(candidates), most)


names = st.sampled_from(
    [
        "username",
        "mail",
        "cn",
        "memberOf",
        "objectClass",
        "displayName",
        "uidNumber",
        "bogus",
        "sn",
    ]
)
values = st.sampled_from(
    [
        "alice",
        "BOB",
        "user0001",
        "admins",
        "user",
        "group",
        "10002",
        "a",
        "o",
        f"cn=admins,{GROUPS}",
        "",
    ]
)
pieces = st.sampled_from(["a", "b", "o", "user", "00", "@", "x"])
leaves = st.one_of(
    st.builds(Equality, names, values),
    st.builds(Present, names),
    st.builds(
        Substrings,
        names,
        st.none() | pieces,
        st.lists(pieces, max_size=2).map(tuple),
        st.none() | pieces,
    ).filter(lambda s: s.initial is not None or s.any or s.final is not None),
)
filters = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda fs: And(tuple(fs))),
        st.lists(children, max_size=3).map(lambda fs: Or(tuple(fs))),
        children.map(Not),
    ),
    max_leaves=8,
)


class IndexPropertyTests(SynchronousTestCase):
    """
    The index plan never changes which entries a search returns.
    """

    snapshot, _ = build_snapshot(count=12)

    @settings(max_examples=300)
    @given(
        filters, st.sampled_from([SUFFIX, USERS, GROUPS]), st.sampled_from([0, 1, 2])
    )
    def test_plan_agrees_with_scan(self, node: Filter, base: str, scope: int) -> None:
        """
        A search returns exactly the entries in scope that the filter
        matches when tested one by one.
        """
        snapshot = self.snapshot
        entries, done = run(
            snapshot, request(node, base, scope=scope, attributes=("1.1",))
        )
        self.assertEqual(done.code, 0)

        base_entry = snapshot.find(normalize_dn(base))
        assert base_entry is not None
        if scope == 0:
            positions: list[int] = [base_entry.position]
        elif scope == 1:
            positions = list(snapshot.children(base_entry))
        else:
            positions = list(snapshot.subtree(base_entry))

        test = compile_filter(node).match
        expected = [
            snapshot.entries[p].dn
            for p in positions
            if test(snapshot.entries[p]) is True
        ]
        self.assertEqual(dns(entries), expected)


class ScopeTests(SynchronousTestCase):
    """
    Tests for base, one-level and subtree scopes and the root DSE.
    """

    def setUp(self) -> None:
        self.snapshot, self.people = build_snapshot()

    def test_scopes(self) -> None:
        """
        Base returns the base, one level its children, subtree all below.
        """
        entries, _ = run(self.snapshot, request(base=SUFFIX, scope=0))
        self.assertEqual(dns(entries), [SUFFIX])
        entries, _ = run(self.snapshot, request(base=SUFFIX, scope=1))
        self.assertEqual(dns(entries), [USERS, GROUPS])
        entries, _ = run(self.snapshot, request(base=GROUPS, scope=1))
        self.assertEqual(
            dns(entries), [f"cn={n},{GROUPS}" for n in ("admins", "empty", "staff")]
        )
        entries, _ = run(self.snapshot, request(base=SUFFIX, scope=2))
        self.assertEqual(len(entries), 1 + 1 + 4 + 1 + 3)
        alice = user_dn(self.people["alice"])
        entries, _ = run(self.snapshot, request(base=alice.upper(), scope=0))
        self.assertEqual(dns(entries), [alice])
        entries, _ = run(self.snapshot, request(base=alice, scope=1))
        self.assertEqual(dns(entries), [])

    def test_containers(self) -> None:
        """
        The suffix and the two containers are entries of their own.
        """
        entries, _ = run(self.snapshot, request(base=SUFFIX, scope=0))
        self.assertEqual(
            entries[0].attributes,
            {"objectClass": ["top", "domain"], "dc": ["cloudron"]},
        )
        entries, _ = run(self.snapshot, request(base=USERS, scope=0))
        self.assertEqual(
            entries[0].attributes,
            {"objectClass": ["top", "organizationalUnit"], "ou": ["users"]},
        )

    def test_missing_base(self) -> None:
        """
        A missing base is noSuchObject with the nearest existing superior
        as matchedDN; a malformed one is invalidDNSyntax.
        """
        for base, matched in [
            (f"cn=nobody,{USERS}", USERS),
            (f"cn=x,cn=nobody,{USERS}", USERS),
            ("ou=people,dc=cloudron", SUFFIX),
            ("dc=example,dc=com", ""),
        ]:
            with self.subTest(base=base):
                entries, done = run(self.snapshot, request(base=base, scope=0))
                self.assertEqual((entries, done.code, done.dn), ([], 32, matched))
        _, done = run(self.snapshot, request(base="not a dn"))
        self.assertEqual(done.code, 34)

    def test_invalid_scope(self) -> None:
        """
        A scope out of range is a protocolError.
        """
        _, done = run(self.snapshot, request(scope=3))
        self.assertEqual(done.code, 2)

    def test_root_dse(self) -> None:
        """
        The root DSE is returned for any filter it matches, listing what
        this server implements; it is not part of subtree searches.
        """
        entries, done = run(self.snapshot, request("(objectclass=*)", "", scope=0))
        self.assertEqual(done.code, 0)
        attributes = entries[0].attributes
        self.assertEqual(entries[0].dn, "")
        self.assertEqual(attributes["namingContexts"], [SUFFIX])
        self.assertEqual(attributes["supportedLDAPVersion"], ["3"])
        self.assertEqual(attributes["supportedControl"], [PAGED_RESULTS_OID])
        self.assertEqual(
            attributes["supportedExtension"],
            ["1.3.6.1.4.1.1466.20037", "1.3.6.1.4.1.4203.1.11.3"],
        )
        entries, _ = run(
            self.snapshot, request("(supportedLDAPVersion=3)", "", scope=0)
        )
        self.assertEqual(len(entries), 1)
        entries, _ = run(self.snapshot, request("(cn=x)", "", scope=0))
        self.assertEqual(entries, [])
        entries, _ = run(
            self.snapshot,
            request("(objectClass=*)", "", scope=0, attributes=("namingContexts",)),
        )
        self.assertEqual(entries[0].attributes, {"namingContexts": [SUFFIX]})
        entries, _ = run(self.snapshot, request("(username=alice)", "", scope=2))
        self.assertEqual(len(entries), 1)


class LimitTests(SynchronousTestCase):
    """
    Tests for size and time limits.
    """

    def setUp(self) -> None:
        self.snapshot, _ = build_snapshot(count=50)

    def test_client_size_limit(self) -> None:
        """
        Past the client's size limit the search ends with
        sizeLimitExceeded and the entries so far. A limit equal to the
        number of matches is not exceeded.
        """
        entries, done = run(self.snapshot, request("(objectClass=user)", size_limit=5))
        self.assertEqual((len(entries), done.code), (5, 4))
        entries, done = run(
            self.snapshot, request("(username=user000*)", size_limit=10)
        )
        self.assertEqual((len(entries), done.code), (10, 0))

    def test_server_limit(self) -> None:
        """
        An unpaged search stops at the server's maximum, also below the
        client's limit.
        """
        entries, done = run(
            self.snapshot, request("(objectClass=user)"), max_entries=20
        )
        self.assertEqual((len(entries), done.code), (20, 4))
        entries, done = run(
            self.snapshot, request("(objectClass=user)", size_limit=30), max_entries=20
        )
        self.assertEqual((len(entries), done.code), (20, 4))

    def test_time_limit(self) -> None:
        """
        Past the client's time limit the search ends with
        timeLimitExceeded.
        """
        clock = iter(range(0, 1000, 10))
        entries, done = run(
            self.snapshot,
            request("(objectClass=user)", time_limit=15),
            now=lambda: float(next(clock)),
        )
        self.assertEqual(done.code, 3)
        self.assertLess(len(entries), 54)


class PagingTests(SynchronousTestCase):
    """
    Tests for Simple Paged Results (RFC 2696).
    """

    def setUp(self) -> None:
        self.snapshot, _ = build_snapshot(count=96)
        self.signer = CookieSigner()

    def pages(
        self, search: SearchRequest, size: int, max_entries: int = 1000
    ) -> tuple[list[list[str]], Response]:
        cookie = b""
        pages = []
        for _ in range(1000):
            entries, done = run(
                self.snapshot,
                search,
                page=PageRequest(size, cookie),
                signer=self.signer,
                max_entries=max_entries,
            )
            pages.append(dns(entries))
            cookie = paged_cookie(done)
            if not cookie or done.code != 0:
                return pages, done
        raise AssertionError("paging did not end")

    def test_walk(self) -> None:
        """
        Pages of the requested size cover every entry once, the last cookie
        is empty, and a full last page needs no extra empty page.
        """
        everything, _ = run(self.snapshot, request("(objectClass=user)"))
        pages, done = self.pages(request("(objectClass=user)"), 25)
        self.assertEqual(done.code, 0)
        self.assertEqual([len(p) for p in pages], [25, 25, 25, 25])
        self.assertEqual(sum(pages, []), dns(everything))

    def test_past_server_limit(self) -> None:
        """
        A paged search walks past the server's maximum, with pages no
        larger than it.
        """
        pages, done = self.pages(request("(objectClass=user)"), 500, max_entries=30)
        self.assertEqual(done.code, 0)
        self.assertEqual([len(p) for p in pages], [30, 30, 30, 10])

    def test_client_size_limit(self) -> None:
        """
        The client's size limit applies to the whole paged search.
        """
        pages, done = self.pages(request("(objectClass=user)", size_limit=60), 25)
        self.assertEqual([len(p) for p in pages], [25, 25, 10])
        self.assertEqual(done.code, 4)

    def test_page_larger_than_limit(self) -> None:
        """
        A page size of at least the size limit makes paging moot.
        """
        entries, done = run(
            self.snapshot,
            request("(objectClass=user)", size_limit=10),
            page=PageRequest(50, b""),
            signer=self.signer,
        )
        self.assertEqual((len(entries), done.code), (10, 4))

    def test_abandon(self) -> None:
        """
        A size of zero abandons the paged search.
        """
        search = request("(objectClass=user)")
        _, first = run(
            self.snapshot, search, page=PageRequest(10, b""), signer=self.signer
        )
        entries, done = run(
            self.snapshot,
            search,
            page=PageRequest(0, paged_cookie(first)),
            signer=self.signer,
        )
        self.assertEqual((entries, done.code, paged_cookie(done)), ([], 0, b""))

    def test_foreign_cookie(self) -> None:
        """
        A cookie from another search, another key, or garbage is rejected
        with unwillingToPerform.
        """
        _, first = run(
            self.snapshot,
            request("(objectClass=user)"),
            page=PageRequest(10, b""),
            signer=self.signer,
        )
        cookie = paged_cookie(first)
        for search, signer, value in [
            (request("(objectClass=group)"), self.signer, cookie),
            (request("(objectClass=user)"), CookieSigner(), cookie),
            (request("(objectClass=user)"), self.signer, b"garbage cookie bytes!!"),
        ]:
            _, done = run(
                self.snapshot, search, page=PageRequest(10, value), signer=signer
            )
            self.assertEqual(done.code, 53)

    def test_changes_between_pages(self) -> None:
        """
        A page continues after the last entry sent, in a newer snapshot.
        """
        search = request("(objectClass=user)")
        _, first = run(
            self.snapshot, search, page=PageRequest(50, b""), signer=self.signer
        )
        newer, _ = build_snapshot(count=10)
        entries, done = run(
            newer, search, page=PageRequest(50, paged_cookie(first)), signer=self.signer
        )
        self.assertEqual(done.code, 0)
        self.assertEqual(
            [e.dn for e in entries],
            [
                e.dn
                for e in newer.entries
                if e.sort_key > "1\x00user0045" and e.kind == "user"
            ],
        )


class CompareTests(SynchronousTestCase):
    """
    Tests for L{compare}.
    """

    def setUp(self) -> None:
        self.snapshot, self.people = build_snapshot()

    def compare(self, entry: str, attribute: str, value: str) -> ResultCode:
        return compare(self.snapshot, CompareRequest(entry, attribute, value))

    def test_results(self) -> None:
        """
        Values compare with the attribute's matching rule.
        """
        alice = user_dn(self.people["alice"])
        self.assertEqual(
            self.compare(alice, "mail", "ALICE@example.com"), ResultCode.compareTrue
        )
        self.assertEqual(
            self.compare(alice, "mail", "bob@example.com"), ResultCode.compareFalse
        )
        self.assertEqual(
            self.compare(alice, "memberof", f"CN=admins,{GROUPS}"),
            ResultCode.compareTrue,
        )
        self.assertEqual(
            self.compare(alice, "uidNumber", "010001"), ResultCode.compareTrue
        )

    def test_errors(self) -> None:
        """
        Unknown attributes, absent attributes and missing entries are
        errors.
        """
        alice = user_dn(self.people["alice"])
        bob = user_dn(self.people["bob"])
        cases = [
            ((alice, "userPassword", "x"), ResultCode.undefinedAttributeType),
            ((bob, "mailAlternateAddress", "x"), ResultCode.noSuchAttribute),
            ((f"cn=nobody,{USERS}", "cn", "x"), ResultCode.noSuchObject),
        ]
        for arguments, code in cases:
            with self.subTest(arguments=arguments):
                error = self.assertRaises(LDAPError, self.compare, *arguments)
                self.assertEqual(error.code, code)
