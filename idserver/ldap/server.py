"""
The LDAP protocol: framing, dispatch and flow control for one connection,
on top of ldaptor's L{BaseLDAPServer}.

ldaptor's decoding, dispatch and server behaviour are replaced here: its
BER decoder trusts length fields and recurses without limit, its server
accepts every anonymous bind, ignores size limits and controls, returns the
root DSE for one exact filter and swallows errors raised while sending
entries. This class decodes with L{idserver.ldap.messages} and answers from
L{idserver.ldap.search} and L{idserver.ldap.backend}.

Requests of one connection are processed in order, one at a time (RFC 4511
§3.1 allows it); abandon and unbind act at once. Search results are
written only while the transport accepts data: when a client stops
reading, the search pauses and the connection stops reading requests.
Requests waiting behind the current one are bounded in number and in
bytes, so a connection holds about the request in progress, one maximal
request waiting, one partial request and one transport buffer.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ldaptor.protocols.ldap.ldapserver import BaseLDAPServer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
)
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from idserver.ldap.access import AccessPolicy
from idserver.ldap.backend import BindIdentity, LDAPBackend
from idserver.ldap.ber import DecodeError, MessageTooLarge, frame_length
from idserver.ldap.entries import Entry, Snapshot
from idserver.ldap.messages import (
    BIND_RESPONSE,
    COMPARE_RESPONSE,
    EXTENDED_RESPONSE,
    NOTICE_OF_DISCONNECTION,
    SEARCH_RESULT_DONE,
    AbandonRequest,
    BindRequest,
    CompareRequest,
    ExtendedRequest,
    LDAPError,
    Message,
    ResultCode,
    SearchRequest,
    UnbindRequest,
    UpdateRequest,
    decode_message,
    encode_extended_response,
    encode_message,
    encode_result,
)
from idserver.ldap.paging import (
    PAGED_RESULTS_OID,
    CookieSigner,
    decode_paged_control,
)
from idserver.ldap.search import (
    SCOPE_BASE,
    STARTTLS_OID,
    WHO_AM_I_OID,
    PageRequest,
    SearchOperation,
    compare,
    root_dse,
)

__all__ = ["LDAPServerFactory", "LDAPServerProtocol"]

PASSWORD_MODIFY_OID = "1.3.6.1.4.1.4203.1.11.1"  # noqa: S105 (an OID)

# Requests a connection may have waiting; past this it stops reading.
MAX_QUEUED_REQUESTS = 32
# The largest request of a connection that is neither bound nor binding.
# Such a session may only bind, read the root DSE and start TLS, which take
# a few hundred bytes, so anyone on the allowlist can make the server hold
# at most this much per connection (OpenLDAP's default for anonymous
# sessions, sockbuf_max_incoming, is 256 KiB).
MAX_ANONYMOUS_MESSAGE_SIZE = 64 * 1024
# Search steps run in one reactor turn before other connections get theirs.
STEPS_PER_TURN = 8


class LDAPServerFactory(ServerFactory):
    """
    Builds the protocol for each connection of one listener and keeps the
    state they share: limits, the StartTLS certificate, the paging key and
    the set of open connections.

    @ivar starttls: context options for StartTLS, or C{None} on listeners
        that speak TLS from the start (LDAPS) or have no certificate.
    """

    log = Logger()

    def __init__(
        self,
        backend: LDAPBackend,
        reactor: IReactorTime,
        *,
        max_entries: int = 1000,
        idle_timeout: float = 600.0,
        max_message_size: int = 1024 * 1024,
        max_connections: int = 10000,
        starttls: Any = None,
        signer: CookieSigner | None = None,
    ) -> None:
        self.backend = backend
        self.reactor = reactor
        self.max_entries = max_entries
        self.idle_timeout = idle_timeout
        self.max_message_size = max_message_size
        self.max_connections = max_connections
        self.starttls = starttls
        self.signer = signer if signer is not None else CookieSigner()
        self.connections: set[LDAPServerProtocol] = set()
        self._sweep_call: IDelayedCall | None = None
        self._refusals: dict[str, int] = {}
        self._empty_snapshot: Snapshot | None = None
        self._root_dse = {
            tls: root_dse(backend.suffix, starttls=tls) for tls in (False, True)
        }

    def buildProtocol(self, addr: IAddress | None) -> LDAPServerProtocol:
        host = getattr(addr, "host", None)
        protocol = LDAPServerProtocol(self, host if isinstance(host, str) else None)
        return protocol

    def root_dse(self, starttls: bool) -> Entry:
        """
        Return the root DSE, listing StartTLS when it is offered.
        """
        return self._root_dse[starttls]

    def empty_snapshot(self) -> Snapshot:
        """
        Return a snapshot without users and groups, for reading the root DSE
        before the directory is loaded.
        """
        if self._empty_snapshot is None:
            self._empty_snapshot = Snapshot(self.backend.suffix, (), ())
        return self._empty_snapshot

    # Connections

    def opened(self, connection: LDAPServerProtocol) -> None:
        """
        Track a new connection; past C{max_connections}, close the one idle
        the longest, so a flood of idle connections cannot lock out active
        clients.
        """
        if len(self.connections) >= self.max_connections:
            oldest = min(self.connections, key=lambda c: c.last_activity)
            self.log.warn(
                "LDAP connection limit ({limit}) reached: closing the connection "
                "from {address}, idle the longest",
                limit=self.max_connections,
                address=oldest.address,
            )
            oldest.abort()
        self.connections.add(connection)
        if self._sweep_call is None:
            self._sweep_call = self.reactor.callLater(
                self._sweep_interval(), self._sweep
            )

    def closed(self, connection: LDAPServerProtocol) -> None:
        self.connections.discard(connection)

    def _sweep_interval(self) -> float:
        return max(self.idle_timeout / 4, 0.05)

    def _sweep(self) -> None:
        self._sweep_call = None
        deadline = self.reactor.seconds() - self.idle_timeout
        idle = [c for c in self.connections if c.last_activity <= deadline]
        for connection in idle:
            connection.abort()
        if idle:
            self.log.info(
                "Closed {count} LDAP connections idle for {seconds} seconds,"
                " the first from {address}",
                count=len(idle),
                seconds=self.idle_timeout,
                address=idle[0].address,
            )
        if self.connections:
            self._sweep_call = self.reactor.callLater(
                self._sweep_interval(), self._sweep
            )

    def stopFactory(self) -> None:
        if self._sweep_call is not None and self._sweep_call.active():
            self._sweep_call.cancel()
        self._sweep_call = None

    def refused(self, address: str | None, reason: str) -> None:
        """
        Log a connection closed by the server for C{reason}; repeats from
        one address are counted and logged every hundredth time.
        """
        key = address or "?"
        count = self._refusals.get(key, 0) + 1
        if len(self._refusals) > 1000:
            self._refusals.clear()
        self._refusals[key] = count
        if count == 1 or count % 100 == 0:
            self.log.info(
                "Closed the LDAP connection from {address}: {reason}"
                " ({count} from this address so far)",
                address=address,
                reason=reason,
                count=count,
            )


@implementer(IPushProducer)
class LDAPServerProtocol(BaseLDAPServer):  # type: ignore[misc]
    """
    One LDAP connection.

    @ivar address: the client's IP address, or C{None} when the transport
        has none.
    @ivar identity: who the connection is bound as; C{None} is anonymous.
    @ivar last_activity: when the client last sent data or read some.
    """

    log = Logger()

    def __init__(self, factory: LDAPServerFactory, address: str | None) -> None:
        super().__init__()
        self.factory = factory
        self.address = address
        self.identity: BindIdentity | None = None
        self.last_activity = factory.reactor.seconds()
        self._buffer = bytearray()
        # Requests read but not started, with their encoded sizes.
        self._queue: deque[tuple[Message, int]] = deque()
        self._queued_bytes = 0
        self._admitted = False
        self._current: Message | None = None
        self._search: SearchOperation | None = None
        self._write_paused = False
        self._reading_paused = False
        self._pumping = False
        self._running = False
        self._pump_call: IDelayedCall | None = None
        self._closing = False

    # Connection life

    def connectionMade(self) -> None:
        self.connected = 1
        self.factory.opened(self)
        self.transport.registerProducer(self, True)
        policy = self.factory.backend.current_policy()
        if policy is not None:
            self._admit(policy)
            return
        self._pause_reading()
        self.factory.backend.policy().addCallbacks(self._admit, self._policy_failed)

    def _policy_failed(self, failure: Failure) -> None:
        self.log.failure(
            "Failed to read the LDAP server settings; closing the connection"
            " from {address}",
            failure,
            address=self.address,
        )
        self.abort()

    def _admit(self, policy: AccessPolicy) -> None:
        if not self.connected:
            return
        if not policy.enabled:
            self.factory.refused(self.address, "the LDAP server is disabled")
            self.abort()
            return
        if self.address is None or not policy.allows(self.address):
            self.factory.refused(self.address, "the address is not on the allowlist")
            self.abort()
            return
        self._admitted = True
        self._resume_reading()
        self._parse()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.connected = 0
        self.factory.closed(self)
        self._drop_queue()
        self._search = None
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        self._pump_call = None

    def abort(self) -> None:
        """
        Close the connection at once, dropping unsent data.
        """
        self._closing = True
        self._drop_queue()
        self._search = None
        self.transport.abortConnection()

    def _disconnect(self, code: ResultCode, message: str) -> None:
        """
        Send a notice of disconnection (RFC 4511 §4.4.1) and close.
        """
        if self._closing:
            return
        self._closing = True
        self._drop_queue()
        self._search = None
        self.factory.refused(self.address, message)
        self._write(
            encode_message(
                0, encode_extended_response(code, message, NOTICE_OF_DISCONNECTION)
            )
        )
        self.transport.loseConnection()

    # Reading

    def dataReceived(self, data: bytes) -> None:
        self.last_activity = self.factory.reactor.seconds()
        if self._closing:
            return
        self._buffer += data
        if not self._admitted:
            if len(self._buffer) > self.factory.max_message_size:
                self.abort()
            return
        self._parse()

    def _parse(self) -> None:
        buffer = self._buffer
        while buffer and not self._closing:
            if self._queue_full():
                self._pause_reading()
                return
            maximum = self._message_size_limit()
            try:
                size = frame_length(buffer, maximum)
            except MessageTooLarge as e:
                if maximum < self.factory.max_message_size:
                    reason = (
                        f"request too large for an unbound session: {e}; bind first"
                    )
                else:
                    reason = f"request too large: {e}"
                self._disconnect(ResultCode.protocolError, reason)
                return
            except DecodeError as e:
                self._disconnect(ResultCode.protocolError, f"malformed request: {e}")
                return
            if size is None or len(buffer) < size:
                return
            data = bytes(buffer[:size])
            del buffer[:size]
            try:
                message = decode_message(data)
            except DecodeError as e:
                self._disconnect(ResultCode.protocolError, f"malformed request: {e}")
                return
            self._accept(message, size)

    def _message_size_limit(self) -> int:
        """
        Return the largest request accepted next: the configured maximum
        once the connection is bound or has a bind request in progress,
        else at most L{MAX_ANONYMOUS_MESSAGE_SIZE}.
        """
        maximum: int = self.factory.max_message_size
        if self.identity is not None:
            return maximum
        current = self._current
        if current is not None and isinstance(current.request, BindRequest):
            return maximum
        if any(isinstance(m.request, BindRequest) for m, _ in self._queue):
            return maximum
        return min(maximum, MAX_ANONYMOUS_MESSAGE_SIZE)

    def _queue_full(self) -> bool:
        # Counting bytes as well as requests bounds what one connection
        # holds to about two maximal requests (one queued, one being read),
        # whatever their size.
        return (
            len(self._queue) >= MAX_QUEUED_REQUESTS
            or self._queued_bytes >= self.factory.max_message_size
        )

    def _drop_queue(self) -> None:
        self._queue.clear()
        self._queued_bytes = 0

    def _accept(self, message: Message, size: int) -> None:
        request = message.request
        if isinstance(request, AbandonRequest):
            self._abandon(request.message_id)
            return
        if isinstance(request, UnbindRequest):
            self._closing = True
            self._drop_queue()
            self._search = None
            self.transport.loseConnection()
            return
        self._queue.append((message, size))
        self._queued_bytes += size
        self._run()

    def _abandon(self, message_id: int) -> None:
        # RFC 4511 §4.11: an abandoned operation gets no further response.
        # Only searches stop once started; a bind runs to its end.
        for queued in self._queue:
            if queued[0].message_id == message_id:
                self._queue.remove(queued)
                self._queued_bytes -= queued[1]
                return
        current = self._current
        if (
            current is not None
            and current.message_id == message_id
            and isinstance(current.request, SearchRequest)
        ):
            self._search = None
            self._current = None
            self._run()

    def _pause_reading(self) -> None:
        if not self._reading_paused and not self._closing:
            self._reading_paused = True
            self.transport.pauseProducing()

    def _resume_reading(self) -> None:
        if self._reading_paused and not self._write_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    # IPushProducer: the transport pauses us when its buffer is full.

    def pauseProducing(self) -> None:
        self._write_paused = True
        self._pause_reading()

    def resumeProducing(self) -> None:
        self.last_activity = self.factory.reactor.seconds()
        self._write_paused = False
        self._pump()

    def stopProducing(self) -> None:
        self._search = None
        self._drop_queue()

    # Processing

    def _write(self, data: bytes) -> None:
        if self.connected:
            self.transport.write(data)

    def _run(self) -> None:
        if self._running:
            # The loop below is already on the stack and continues.
            return
        self._running = True
        try:
            self._run_queue()
        finally:
            self._running = False

    def _run_queue(self) -> None:
        while self.connected and not self._closing:
            if self._current is None and self._queue:
                message, size = self._queue.popleft()
                self._queued_bytes -= size
                self._dispatch(message)
                continue
            if (
                self._reading_paused
                and not self._write_paused
                and self._admitted
                and not self._queue_full()
            ):
                # Requests left unread while the queue was full.
                self._resume_reading()
                queued = len(self._queue)
                self._parse()
                if len(self._queue) > queued:
                    continue
            return

    def _dispatch(self, message: Message) -> None:
        # The settings are checked again for every request, so disabling
        # the server or narrowing the allowlist also ends open connections.
        policy = self.factory.backend.current_policy()
        if policy is None:
            self._current = message
            self.factory.backend.policy().addCallbacks(
                lambda loaded: self._dispatch_loaded(message, loaded),
                self._policy_failed,
            )
            return
        self._dispatch_allowed(message, policy)

    def _dispatch_loaded(self, message: Message, policy: AccessPolicy) -> None:
        if self._current is not message:
            # Abandoned while the settings loaded: no response, and the
            # requests after it have started already.
            return
        self._dispatch_allowed(message, policy)

    def _dispatch_allowed(self, message: Message, policy: AccessPolicy) -> None:
        if not self.connected or self._closing:
            return
        if self.address is None or not policy.allows(self.address):
            reason = (
                "the LDAP server is disabled"
                if not policy.enabled
                else "the address is not on the allowlist"
            )
            self._disconnect(ResultCode.unavailable, reason)
            return

        request = message.request
        handler = getattr(self, "handle_" + type(request).__name__)
        response_tag = _response_tag(request)
        self._current = message
        try:
            self._check_controls(message)
            result = handler(message)
        except LDAPError as e:
            self._respond(message.message_id, response_tag, e)
            self._current = None
            return
        except Exception:
            self.log.failure(
                "LDAP {operation} from {address} failed",
                operation=type(request).__name__,
                address=self.address,
            )
            self._respond(
                message.message_id,
                response_tag,
                LDAPError(ResultCode.other, "internal server error"),
            )
            self._current = None
            return
        if isinstance(result, Deferred):
            result.addErrback(self._failed, message, response_tag)
            result.addBoth(self._finished, message)
        else:
            self._finished(None, message)

    def _failed(self, failure: Failure, message: Message, response_tag: int) -> None:
        if self._current is not message:
            # Abandoned: no response.
            return
        if failure.check(LDAPError):
            error = failure.value
        else:
            self.log.failure(
                "LDAP {operation} from {address} failed",
                failure,
                operation=type(message.request).__name__,
                address=self.address,
            )
            error = LDAPError(ResultCode.other, "internal server error")
        assert isinstance(error, LDAPError)
        self._respond(message.message_id, response_tag, error)

    def _finished(self, result: object, message: Message) -> None:
        if self._current is message and (
            self._search is None or self._search.message_id != message.message_id
        ):
            self._current = None
            self._run()

    def _respond(self, message_id: int, tag: int, error: LDAPError) -> None:
        if tag == EXTENDED_RESPONSE:
            op = encode_extended_response(error.code, error.message)
        else:
            op = encode_result(tag, error.code, error.message, error.matched_dn)
        self._write(encode_message(message_id, op))

    def _check_controls(self, message: Message) -> None:
        for control in message.controls:
            if not control.critical:
                continue
            if control.oid == PAGED_RESULTS_OID and isinstance(
                message.request, SearchRequest
            ):
                continue
            # RFC 4511 §4.1.11.
            raise LDAPError(
                ResultCode.unavailableCriticalExtension,
                f"unsupported critical control {control.oid}",
            )

    # Operations

    def handle_BindRequest(self, message: Message) -> Deferred[None] | None:
        request = message.request
        assert isinstance(request, BindRequest)
        # RFC 4511 §4.2.1: a bind, even a failed one, starts anonymous.
        self.identity = None
        if request.version != 3:
            raise LDAPError(
                ResultCode.protocolError,
                f"LDAP version {request.version} is not supported",
            )
        if request.mechanism is not None:
            raise LDAPError(
                ResultCode.authMethodNotSupported,
                "SASL binds are not supported; use a simple bind",
            )
        password = request.password or b""
        if not request.name:
            if password:
                raise LDAPError(
                    ResultCode.invalidCredentials, "a password needs a bind DN"
                )
            self._bound(message.message_id, None)
            return None
        if not password:
            # RFC 4513 §5.1.2: a name without a password is an
            # unauthenticated bind, which is not allowed here.
            raise LDAPError(
                ResultCode.unwillingToPerform,
                "unauthenticated bind (DN without password)",
            )
        deferred = Deferred.fromCoroutine(
            self.factory.backend.bind(request.name, password, self.address)
        )
        return deferred.addCallback(
            lambda identity: self._bound(message.message_id, identity)
        )

    def _bound(self, message_id: int, identity: BindIdentity | None) -> None:
        self.identity = identity
        self._write(encode_message(message_id, encode_result(BIND_RESPONSE, 0)))

    def handle_SearchRequest(self, message: Message) -> Deferred[None] | None:
        request = message.request
        assert isinstance(request, SearchRequest)
        root_only = request.base == "" and request.scope == SCOPE_BASE
        if self.identity is None and not root_only:
            raise LDAPError(
                ResultCode.insufficientAccessRights,
                "anonymous sessions may read only the root DSE; bind first",
            )
        if request.rejection is not None:
            raise LDAPError(ResultCode.adminLimitExceeded, request.rejection)
        page = None
        for control in message.controls:
            if control.oid == PAGED_RESULTS_OID:
                try:
                    size, cookie = decode_paged_control(control.value)
                except DecodeError as e:
                    raise LDAPError(
                        ResultCode.protocolError, f"invalid paged results control: {e}"
                    ) from None
                page = PageRequest(size, cookie)

        backend = self.factory.backend
        snapshot = backend.current_snapshot()
        if snapshot is None and root_only:
            snapshot = self.factory.empty_snapshot()
        if snapshot is not None:
            self._start_search(message, page, snapshot)
            return None
        return backend.snapshot().addCallback(
            lambda loaded: self._start_search(message, page, loaded)
        )

    def _start_search(
        self, message: Message, page: PageRequest | None, snapshot: Snapshot
    ) -> None:
        if not self.connected or self._closing or self._current is not message:
            # Closed, or abandoned while the snapshot loaded.
            return
        request = message.request
        assert isinstance(request, SearchRequest)
        if not (request.base == "" and request.scope == SCOPE_BASE):
            self._check_bound_user(snapshot)
        self._search = SearchOperation(
            message.message_id,
            request,
            snapshot,
            self.factory.root_dse(self._offers_starttls()),
            max_entries=self.factory.max_entries,
            page=page,
            signer=self.factory.signer,
            now=self.factory.reactor.seconds,
        )
        self._pump()

    def _pump(self) -> None:
        """
        Write search results while the transport takes them, for at most
        L{STEPS_PER_TURN} steps before letting other connections run.
        """
        if self._pumping:
            return
        self._pumping = True
        try:
            steps = 0
            while self._search is not None and not self._write_paused:
                if steps >= STEPS_PER_TURN:
                    if self._pump_call is None or not self._pump_call.active():
                        self._pump_call = self.factory.reactor.callLater(0, self._pump)
                    return
                search = self._search
                messages = search.step()
                steps += 1
                if messages:
                    self._write(b"".join(messages))
                if search.finished and self._search is search:
                    self._search = None
                    self._current = None
        finally:
            self._pumping = False
        self._run()

    def _who_am_i(self, message_id: int, snapshot: Snapshot | None) -> None:
        if snapshot is not None and self.identity is not None:
            try:
                self._check_bound_user(snapshot)
            except LDAPError:
                # The user was disabled or deleted: the session is anonymous.
                pass
        # RFC 4532 §2.2: no responseName; an empty value for anonymous.
        authz = f"dn:{self.identity.dn}" if self.identity is not None else ""
        self._write(
            encode_message(
                message_id,
                encode_extended_response(
                    ResultCode.success, value=authz.encode("utf-8")
                ),
            )
        )

    def _check_bound_user(self, snapshot: Snapshot) -> None:
        """
        End the authorization of a connection bound as a user who has since
        been disabled or deleted, so that disabling a user also ends the
        access of the connections they opened before.

        @raise LDAPError: insufficientAccessRights when it ends.
        """
        identity = self.identity
        if identity is None or identity.user_id is None:
            return
        if identity.user_id in snapshot.users:
            return
        self.identity = None
        self.log.info(
            "LDAP connection from {address} is anonymous again: the bound user"
            " {user_id} was disabled or deleted",
            address=self.address,
            user_id=identity.user_id,
        )
        raise LDAPError(
            ResultCode.insufficientAccessRights,
            "the bound user was disabled or deleted; bind again",
        )

    def handle_CompareRequest(self, message: Message) -> Deferred[None] | None:
        request = message.request
        assert isinstance(request, CompareRequest)
        if self.identity is None:
            raise LDAPError(
                ResultCode.insufficientAccessRights,
                "anonymous sessions may read only the root DSE; bind first",
            )

        def answer(snapshot: Snapshot) -> None:
            self._check_bound_user(snapshot)
            try:
                code = compare(snapshot, request)
            except LDAPError as e:
                self._respond(message.message_id, COMPARE_RESPONSE, e)
                return
            self._write(
                encode_message(
                    message.message_id, encode_result(COMPARE_RESPONSE, code)
                )
            )

        snapshot = self.factory.backend.current_snapshot()
        if snapshot is not None:
            answer(snapshot)
            return None
        return self.factory.backend.snapshot().addCallback(answer)

    def handle_ExtendedRequest(self, message: Message) -> Deferred[None] | None:
        request = message.request
        assert isinstance(request, ExtendedRequest)
        if request.name == STARTTLS_OID:
            self._start_tls(message.message_id, request)
        elif request.name == WHO_AM_I_OID:
            if request.value is not None:
                raise LDAPError(ResultCode.protocolError, "Who am I? takes no value")
            snapshot = self.factory.backend.current_snapshot()
            if snapshot is None and self.identity is not None:
                return self.factory.backend.snapshot().addCallback(
                    lambda loaded: self._who_am_i(message.message_id, loaded)
                )
            self._who_am_i(message.message_id, snapshot)
        elif request.name == PASSWORD_MODIFY_OID:
            raise LDAPError(
                ResultCode.unwillingToPerform,
                "passwords cannot be changed over LDAP; use the dashboard",
            )
        else:
            # RFC 4511 §4.12: an unknown request name is a protocolError.
            raise LDAPError(
                ResultCode.protocolError, f"unknown extended operation {request.name}"
            )
        return None

    def _offers_starttls(self) -> bool:
        return self.factory.starttls is not None and not ISSLTransport.providedBy(
            self.transport
        )

    def _start_tls(self, message_id: int, request: ExtendedRequest) -> None:
        def reply(code: ResultCode, text: str = "") -> None:
            self._write(
                encode_message(
                    message_id, encode_extended_response(code, text, STARTTLS_OID)
                )
            )

        if ISSLTransport.providedBy(self.transport):
            reply(ResultCode.operationsError, "TLS is already active")
            return
        if self.factory.starttls is None:
            # RFC 4511 §4.14.2: a server without TLS returns protocolError.
            reply(ResultCode.protocolError, "StartTLS is not offered on this port")
            return
        if request.value is not None:
            reply(ResultCode.protocolError, "StartTLS takes no value")
            return
        if self._queue or self._buffer:
            # RFC 4511 §4.14.1: no other operation may be outstanding.
            reply(ResultCode.operationsError, "operations are outstanding")
            return
        reply(ResultCode.success)
        # Twisted sends the bytes written so far in the clear, then
        # negotiates TLS.
        self.transport.startTLS(self.factory.starttls)

    def handle_UpdateRequest(self, message: Message) -> None:
        request = message.request
        assert isinstance(request, UpdateRequest)
        raise LDAPError(
            ResultCode.unwillingToPerform, "the directory is read-only over LDAP"
        )


_RESPONSE_TAGS: dict[type, int] = {
    BindRequest: BIND_RESPONSE,
    SearchRequest: SEARCH_RESULT_DONE,
    CompareRequest: COMPARE_RESPONSE,
    ExtendedRequest: EXTENDED_RESPONSE,
}


def _response_tag(request: object) -> int:
    if isinstance(request, UpdateRequest):
        return request.response_tag
    return _RESPONSE_TAGS[type(request)]
