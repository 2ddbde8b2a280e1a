"""
Search and compare over a snapshot (RFC 4511 §4.5 and §4.10), independent
of the connection: a L{SearchOperation} turns a request into encoded
response messages, a bounded amount of work at a time, so the caller can
interleave other clients and stop when its peer stops reading.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from idserver.ldap.dn import InvalidDN, normalize_dn, normalize_parsed, parse_dn
from idserver.ldap.entries import Entry, Selection, Snapshot
from idserver.ldap.matching import compile_filter
from idserver.ldap.messages import (
    COMPARE_RESPONSE,
    SEARCH_RESULT_DONE,
    CompareRequest,
    LDAPError,
    ResultCode,
    SearchRequest,
    encode_message,
    encode_result,
)
from idserver.ldap.paging import (
    PAGED_RESULTS_OID,
    CookieSigner,
    InvalidCookie,
    PageState,
    encode_paged_control,
)
from idserver.ldap.schema import InvalidValue, attribute_type, normalize

__all__ = [
    "STARTTLS_OID",
    "WHO_AM_I_OID",
    "PageRequest",
    "SearchOperation",
    "compare",
    "find_base",
    "root_dse",
]

STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
WHO_AM_I_OID = "1.3.6.1.4.1.4203.1.11.3"
# RFC 3673 (all operational attributes with "+") and RFC 4526 (absolute
# true and false filters).
_FEATURES = ("1.3.6.1.4.1.4203.1.5.1", "1.3.6.1.4.1.4203.1.5.3")

SCOPE_BASE, SCOPE_ONE, SCOPE_SUBTREE = 0, 1, 2

# Candidates tested per step before the caller gets control back.
STEP_CANDIDATES = 512


def root_dse(suffix: str, *, starttls: bool) -> Entry:
    """
    Build the root DSE (RFC 4512 §5.1), listing the controls and extended
    operations this server implements.

    @param starttls: whether StartTLS is offered on this connection.
    """
    extensions = [WHO_AM_I_OID]
    if starttls:
        extensions.insert(0, STARTTLS_OID)
    return Entry(
        "",
        "",
        {
            "objectclass": ("top",),
            "namingcontexts": (suffix,),
            "supportedldapversion": ("3",),
            "supportedcontrol": (PAGED_RESULTS_OID,),
            "supportedextension": tuple(extensions),
            "supportedfeatures": _FEATURES,
            "vendorname": ("idserver",),
        },
        sort_key="",
        kind="root",
        parsed_dn=(),
    )


def find_base(snapshot: Snapshot, base: str) -> Entry:
    """
    Return the entry named C{base}.

    @raise LDAPError: invalidDNSyntax for a malformed name, noSuchObject
        with the nearest existing superior as matchedDN (RFC 4511 §4.1.9)
        for a missing one.
    """
    try:
        entry = snapshot.find(normalize_dn(base))
    except InvalidDN:
        raise LDAPError(ResultCode.invalidDNSyntax, f"invalid DN {base!r}") from None
    if entry is not None:
        return entry
    parsed = parse_dn(base)
    matched = ""
    for start in range(1, len(parsed)):
        superior = snapshot.find(normalize_parsed(parsed[start:]))
        if superior is not None:
            matched = superior.dn
            break
    raise LDAPError(ResultCode.noSuchObject, f"no entry named {base!r}", matched)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """
    The paged results control of a search request.
    """

    size: int
    cookie: bytes


class SearchOperation:
    """
    One search over one snapshot, producing encoded messages.

    @ivar finished: whether the SearchResultDone has been produced.
    """

    def __init__(
        self,
        message_id: int,
        request: SearchRequest,
        snapshot: Snapshot,
        root: Entry,
        *,
        max_entries: int,
        page: PageRequest | None = None,
        signer: CookieSigner | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.message_id = message_id
        self.request = request
        self.snapshot = snapshot
        self.finished = False
        self._page = page
        self._signer = signer
        self._now = now
        self._deadline: float | None = None
        if request.time_limit > 0 and now is not None:
            self._deadline = now() + request.time_limit
        self._selection = Selection.from_request(request.attributes)
        self._matcher = compile_filter(request.filter)
        self._sent = 0
        self._returned_before = 0
        self._last_key: str | None = None
        self._pending: Entry | None = None
        self._paged_result = page is not None
        self._done: bytes | None = None
        self._root: Entry | None = None
        self._limit = 0
        self._candidates: Iterator[int] = iter(())

        try:
            self._limit, self._candidates = self._prepare(root, max_entries)
        except LDAPError as e:
            self._finish(e.code, e.message, e.matched_dn)

    def _prepare(self, root: Entry, max_entries: int) -> tuple[int, Iterator[int]]:
        request = self.request
        if request.scope not in (SCOPE_BASE, SCOPE_ONE, SCOPE_SUBTREE):
            raise LDAPError(ResultCode.protocolError, f"invalid scope {request.scope}")
        if not 0 <= request.deref_aliases <= 3:
            raise LDAPError(
                ResultCode.protocolError,
                f"invalid derefAliases {request.deref_aliases}",
            )
        if request.size_limit < 0 or request.time_limit < 0:
            raise LDAPError(ResultCode.protocolError, "negative size or time limit")

        client_limit = request.size_limit
        page = self._page
        if page is not None and client_limit and page.size >= client_limit:
            # RFC 2696 §3: the size limit fits in one page, so paging is
            # ignored.
            page = None
        start = 0
        if page is not None:
            if page.cookie:
                if self._signer is None:
                    raise LDAPError(ResultCode.unwillingToPerform, "invalid cookie")
                try:
                    state = self._signer.read(request.encoded, page.cookie)
                except InvalidCookie as e:
                    raise LDAPError(ResultCode.unwillingToPerform, str(e)) from None
                start = self.snapshot.start_after(state.after)
                self._returned_before = state.returned
            if page.size == 0:
                # RFC 2696 §3: a size of zero abandons the paged search.
                raise _Abandoned()
        self._page = page

        if request.base == "" and request.scope == SCOPE_BASE:
            positions: Collection[int] = ()
            self._root = root
        else:
            positions = self._scope_positions()

        if page is not None:
            limit = min(page.size, max_entries)
            if client_limit:
                limit = min(limit, client_limit - self._returned_before)
        else:
            limit = min(client_limit, max_entries) if client_limit else max_entries
        return limit, self._candidate_positions(positions, start)

    def _scope_positions(self) -> Collection[int]:
        request = self.request
        snapshot = self.snapshot
        if request.base == "":
            # Below the root DSE is the one naming context.
            suffix_entry = snapshot.entries[0]
            if request.scope == SCOPE_ONE:
                return (0,)
            return snapshot.subtree(suffix_entry)
        base = find_base(snapshot, request.base)
        if request.scope == SCOPE_BASE:
            return (base.position,)
        if request.scope == SCOPE_ONE:
            return snapshot.children(base)
        return snapshot.subtree(base)

    def _candidate_positions(self, scope: Collection[int], start: int) -> Iterator[int]:
        planned = self._matcher.plan(self.snapshot)
        if planned is None:
            return (p for p in scope if p >= start)
        if isinstance(scope, range):
            low, high = max(scope.start, start), scope.stop
            return iter(sorted(p for p in planned if low <= p < high))
        return iter(sorted(p for p in planned if p in scope and p >= start))

    def step(self, budget: int = STEP_CANDIDATES) -> list[bytes]:
        """
        Test up to C{budget} candidates and return the messages they
        produced; the last message of the search is its SearchResultDone.
        """
        if self._done is not None:
            done, self._done = self._done, None
            return [done]
        if self.finished:
            return []
        if self._root is not None:
            return self._answer_root()
        if self._deadline is not None and self._now is not None:
            if self._now() >= self._deadline:
                self._finish(ResultCode.timeLimitExceeded, "time limit exceeded")
                return self.step()

        messages: list[bytes] = []
        entries = self.snapshot.entries
        test = self._matcher.match
        selection = self._selection
        types_only = self.request.types_only
        message_id = self.message_id
        for _ in range(budget):
            position = next(self._candidates, None)
            if position is None:
                self._finish(ResultCode.success, last_page=True)
                break
            entry = entries[position]
            if test(entry) is not True:
                continue
            if self._sent >= self._limit:
                # Another match exists past the limit.
                self._over_limit()
                break
            messages.append(
                encode_message(message_id, entry.encode(selection, types_only))
            )
            self._sent += 1
            self._last_key = entry.sort_key
        if self._done is not None:
            messages.append(self._done)
            self._done = None
        return messages

    def _answer_root(self) -> list[bytes]:
        assert self._root is not None
        messages = []
        selection = self._selection
        if selection.user:
            # The root DSE's attributes are operational (RFC 4512 §5.1), but
            # clients that do not know RFC 3673 ask for them with "*" or no
            # list, as Active Directory and ldaptor answer.
            selection = Selection(True, True, selection.named)
        if self._matcher.match(self._root) is True:
            messages.append(
                encode_message(
                    self.message_id,
                    self._root.encode(selection, self.request.types_only),
                )
            )
        self._finish(ResultCode.success, last_page=True)
        assert self._done is not None
        messages.append(self._done)
        self._done = None
        return messages

    def _over_limit(self) -> None:
        page = self._page
        client_limit = self.request.size_limit
        total = self._returned_before + self._sent
        if page is not None and not (client_limit and total >= client_limit):
            # The page is full and more entries follow.
            assert self._signer is not None and self._last_key is not None
            cookie = self._signer.issue(
                self.request.encoded, PageState(self._last_key, total)
            )
            self._finish(ResultCode.success, cookie=cookie)
            return
        self._finish(ResultCode.sizeLimitExceeded, "size limit exceeded")

    def _finish(
        self,
        code: ResultCode,
        message: str = "",
        matched_dn: str = "",
        *,
        cookie: bytes = b"",
        last_page: bool = False,
    ) -> None:
        controls = b""
        if self._paged_result:
            controls = encode_paged_control(0, cookie)
        self._done = encode_message(
            self.message_id,
            encode_result(SEARCH_RESULT_DONE, code, message, matched_dn),
            controls,
        )
        self.finished = True


class _Abandoned(LDAPError):
    def __init__(self) -> None:
        super().__init__(ResultCode.success)


def compare(snapshot: Snapshot, request: CompareRequest) -> ResultCode:
    """
    Answer a compare request with compareTrue or compareFalse.

    @raise LDAPError: noSuchObject, invalidDNSyntax, undefinedAttributeType
        for an unknown attribute, noSuchAttribute when the entry has no
        value of it.
    """
    entry = find_base(snapshot, request.entry)
    attribute = attribute_type(request.attribute)
    if attribute is None:
        raise LDAPError(
            ResultCode.undefinedAttributeType,
            f"unknown attribute {request.attribute!r}",
        )
    values = entry.values.get(attribute.key)
    if not values:
        raise LDAPError(
            ResultCode.noSuchAttribute, f"the entry has no {attribute.name} attribute"
        )
    try:
        wanted = normalize(attribute.syntax, request.value)
    except InvalidValue:
        return ResultCode.compareFalse
    return ResultCode.compareTrue if wanted in values else ResultCode.compareFalse


def encode_compare_response(
    message_id: int, code: ResultCode, message: str = "", matched_dn: str = ""
) -> bytes:
    """
    Encode a CompareResponse message.
    """
    return encode_message(
        message_id, encode_result(COMPARE_RESPONSE, code, message, matched_dn)
    )
