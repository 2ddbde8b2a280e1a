"""
The HTTP face of the OpenID Connect provider: discovery, JWKS,
authorization, token, UserInfo, end session, revocation and introspection.

Paths are those of the issuer C{<public_url>/openid}; the discovery
document is also served at the site root's C{/.well-known/} path, where
many relying parties look first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlencode

from jwcrypto.common import JWException, base64url_decode
from jwcrypto.jwt import JWT
from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from idserver.interfaces import IDirectory
from idserver.oidc.clients import is_client_id
from idserver.oidc.model import SIGNING_ALGORITHMS, Client
from idserver.oidc.protocol import (
    AuthorizationError,
    AuthorizationRequest,
    ErrorPage,
    TokenError,
    add_query,
    parse_authorization_request,
    parse_client_credentials,
    single,
)
from idserver.oidc.provider import BearerError, OpenIDProvider
from idserver.sessions.model import SessionState
from idserver.web.csrf import CSRF_FIELD, check_csrf
from idserver.web.login import request_form
from idserver.web.session import SessionManager
from idserver.web.templates import Markup, escape, render, send_page

__all__ = ["OpenIDResource"]

_JSON = b"application/json"
# The methods that get 405 from a POST-only endpoint. OPTIONS has its own
# route where CORS needs it.
_OTHER_METHODS = ["GET", "HEAD", "PUT", "PATCH", "DELETE"]


def _json(
    request: IRequest, body: Any, *, status: int = 200, cache: bool = False
) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", _JSON)
    if cache:
        request.setHeader(b"Cache-Control", b"public, max-age=300")
    else:
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"Pragma", b"no-cache")
    return json.dumps(body).encode("utf-8")


def _allow_any_origin(request: IRequest) -> None:
    # These endpoints take no cookies, so any origin may call them (a
    # single-page app that is a public client, say).
    request.setHeader(b"Access-Control-Allow-Origin", b"*")


def _body_form(request: IRequest) -> dict[str, list[str]]:
    """
    Parse an C{application/x-www-form-urlencoded} body; parameters in the
    query string do not count (RFC 6749 §3.2).

    @raise TokenError: the body has another type or is not UTF-8.
    """
    content_type = (request.getHeader(b"content-type") or b"").split(b";")[0]
    if content_type.strip().lower() != b"application/x-www-form-urlencoded":
        raise TokenError(
            "invalid_request",
            "The body must be application/x-www-form-urlencoded.",
        )
    assert request.content is not None
    request.content.seek(0)
    try:
        text = request.content.read().decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError("invalid_request", "The body is not UTF-8.") from None
    return parse_qs(text, keep_blank_values=True)


def _unverified_claims(token: str) -> Any:
    """
    Decode the payload of a compact JWS without checking its signature;
    C{None} when it is not one.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        return json.loads(base64url_decode(parts[1]))
    except (ValueError, TypeError):
        return None


def _as_get(request: IRequest, path: str, params: Mapping[str, Sequence[str]]) -> bytes:
    """
    Send the browser to C{path} with C{params} as a GET request.

    A browser leaves the C{SameSite=Lax} session cookie out of a POST
    request that another site's page sends, but includes it in the
    top-level GET request that follows a 303 redirect. So a POST request
    from a client application without the cookie is handled as that GET
    request, where the signed-in user is known.

    NOTE: Twisted's HTTP/1.1 channel refuses requests whose request line and
    headers exceed 16 KiB, so a POST with more parameters than that fails
    on the GET request that follows.
    """
    query = urlencode(
        [(name, value) for name, values in params.items() for value in values]
    )
    request.setResponseCode(303)
    request.setHeader(b"Location", f"{path}?{query}".encode())
    request.setHeader(b"Cache-Control", b"no-store")
    return b""


def _hidden_fields(items: Iterable[tuple[str, str]]) -> Markup:
    return Markup(
        "\n".join(
            f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'
            for name, value in items
        )
    )


class OpenIDResource:
    """
    The routes of the OpenID Connect provider.
    """

    app = Klein()
    # Werkzeug redirects a path with doubled slashes to an absolute URL
    # built from the client's Host header, so such a path gets 404.
    app.url_map.merge_slashes = False
    log = Logger()

    def __init__(
        self,
        *,
        provider: OpenIDProvider,
        sessions: SessionManager,
        directory: IDirectory,
        clock: IReactorTime,
    ) -> None:
        self.provider = provider
        self.sessions = sessions
        self.directory = directory
        self.clock = clock

    async def _server_name(self) -> str:
        settings = await self.directory.get_settings()
        return str(settings.get("name") or "idserver")

    async def _error_page(
        self, request: IRequest, error: str, message: str, status: int = 400
    ) -> bytes:
        body = render("error.html", message=message, error=error)
        return send_page(request, await self._server_name(), body, status=status)

    # Discovery and keys

    @app.route("/.well-known/openid-configuration", methods=["GET", "HEAD"])
    @app.route("/openid/.well-known/openid-configuration", methods=["GET", "HEAD"])
    def discovery(self, request: IRequest) -> bytes:
        """
        Serve the provider metadata.
        """
        _allow_any_origin(request)
        return _json(request, self.provider.discovery(), cache=True)

    @app.route("/openid/jwks", methods=["GET", "HEAD"])
    def jwks(self, request: IRequest) -> bytes:
        """
        Serve the RSA and Ed25519 public keys.
        """
        _allow_any_origin(request)
        return _json(request, self.provider.keys.jwks(), cache=True)

    @app.route("/openid/jwks_rsaonly", methods=["GET", "HEAD"])
    def jwks_rsa_only(self, request: IRequest) -> bytes:
        """
        Serve the RSA public keys only, for clients that cannot read
        Ed25519 keys.
        """
        _allow_any_origin(request)
        return _json(request, self.provider.keys.jwks(rsa_only=True), cache=True)

    # Authorization

    @app.route("/openid/auth", methods=["GET", "POST"])
    async def authorize(self, request: IRequest) -> bytes:
        """
        Handle an authorization request: sign the user in (or reuse the
        browser's session) and send a code to the client.
        """
        if request.method == b"POST":
            try:
                params = _body_form(request)
            except TokenError as e:
                return await self._error_page(request, e.error, e.description)
            not_utf8 = False
        else:
            params = request_form(request)
            # request_form leaves out parameters that are not UTF-8.
            not_utf8 = len(params) != len(request.args or {})

        client = None
        try:
            client_id = single(params, "client_id")
        except ValueError:
            client_id = None
        if client_id is not None and is_client_id(client_id):
            client = await self.provider.clients.get_client(client_id)

        try:
            auth = parse_authorization_request(params, client)
            if not_utf8:
                raise AuthorizationError(
                    "invalid_request",
                    "A parameter is not UTF-8.",
                    redirect_uri=auth.redirect_uri,
                    state=auth.state,
                    response_mode=auth.response_mode,
                )
        except ErrorPage as e:
            self.log.info(
                "Rejected an authorization request for {client_id}: {reason}",
                client_id=client_id,
                reason=e.description,
            )
            return await self._error_page(request, e.error, e.description)
        except AuthorizationError as e:
            return self._respond(
                request,
                e.redirect_uri,
                e.response_mode,
                e.parameters(self.provider.issuer),
            )

        if request.method == b"POST" and not self.sessions.cookie_sent(request):
            return _as_get(request, "/openid/auth", params)
        try:
            return await self._authorize(request, auth, params)
        except AuthorizationError as e:
            return self._respond(
                request,
                e.redirect_uri,
                e.response_mode,
                e.parameters(self.provider.issuer),
            )

    async def _authorize(
        self,
        request: IRequest,
        auth: AuthorizationRequest,
        params: Mapping[str, Sequence[str]],
    ) -> bytes:
        def fail(error: str, description: str) -> AuthorizationError:
            return AuthorizationError(
                error,
                description,
                redirect_uri=auth.redirect_uri,
                state=auth.state,
                response_mode=auth.response_mode,
            )

        try:
            hinted_user = self._hinted_user(single(params, "id_token_hint"))
        except ValueError:
            raise fail(
                "invalid_request", "The id_token_hint parameter is repeated."
            ) from None

        current = await self.sessions.signed_in(request)
        now = self.clock.seconds()
        fresh_login_needed = "login" in auth.prompt or (
            current is not None
            and auth.max_age is not None
            and now - (current[0].auth_time or 0.0) > auth.max_age
        )
        # OIDC Core §3.1.2.1: a hint naming another user than the signed-in
        # one gets a positive response only after that user signs in.
        other_user = (
            current is not None
            and hinted_user is not None
            and current[1].username != hinted_user
        )
        if current is None or fresh_login_needed or other_user:
            if "none" in auth.prompt:
                description = (
                    "The signed-in user is not the one id_token_hint names."
                    if other_user
                    else "The user is not signed in."
                )
                raise fail("login_required", description)
            return self._to_login(request, params, auth, hinted_user)

        session, user = current
        groups = await self.provider.groups_of(user)
        if not self.provider.may_use(user, auth.client, groups):
            self.log.info(
                "{user} may not use client {client_id}: not in its groups",
                user=user.username,
                client_id=auth.client.client_id,
            )
            raise fail("access_denied", "The user may not use this application.")

        code = await self.provider.issue_code(auth, session, user)
        parameters = {"code": code}
        if auth.state is not None:
            parameters["state"] = auth.state
        parameters["iss"] = self.provider.issuer
        return self._respond(request, auth.redirect_uri, auth.response_mode, parameters)

    def _to_login(
        self,
        request: IRequest,
        params: Mapping[str, Sequence[str]],
        auth: AuthorizationRequest,
        hinted_user: str | None,
    ) -> bytes:
        # The login page sends the browser back here. prompt=login, max_age
        # and id_token_hint are left out of that return request: the login
        # that is about to happen satisfies them, and keeping them would ask
        # again (the user may choose to sign in as someone else).
        again = [
            (name, value)
            for name, values in params.items()
            if name not in ("max_age", "id_token_hint")
            for value in values
        ]
        again = [
            (name, " ".join(v for v in value.split() if v != "login"))
            if name == "prompt"
            else (name, value)
            for name, value in again
        ]
        return_to = "/openid/auth?" + urlencode(again)
        query = {"return_to": return_to}
        login_hint = auth.login_hint or hinted_user
        if login_hint:
            query["login_hint"] = login_hint
        request.setResponseCode(303)
        request.setHeader(b"Location", ("/login?" + urlencode(query)).encode("utf-8"))
        request.setHeader(b"Cache-Control", b"no-store")
        return b""

    def _respond(
        self,
        request: IRequest,
        redirect_uri: str,
        response_mode: str,
        parameters: dict[str, str],
    ) -> bytes:
        request.setHeader(b"Cache-Control", b"no-store")
        if response_mode == "form_post":
            fields = _hidden_fields(parameters.items())
            body = render("form_post.html", action=redirect_uri, fields=fields)
            # The page's only job is to post to the client; no title needed.
            return send_page(request, "Continue", body)
        request.setResponseCode(303 if request.method == b"POST" else 302)
        request.setHeader(
            b"Location", add_query(redirect_uri, parameters).encode("utf-8")
        )
        return b""

    # Token endpoint

    async def _client(
        self,
        request: IRequest,
        form: Mapping[str, Sequence[str]],
        *,
        allow_public: bool = True,
    ) -> Client:
        credentials = parse_client_credentials(
            request.getHeader(b"authorization"), form
        )
        return await self.provider.authenticate_client(
            credentials, allow_public=allow_public
        )

    def _token_error(self, request: IRequest, error: TokenError) -> bytes:
        if error.status == 401:
            request.setHeader(b"WWW-Authenticate", b'Basic realm="idserver"')
        return _json(request, error.body(), status=error.status)

    @app.route("/openid/token", methods=["POST"])
    async def token(self, request: IRequest) -> bytes:
        """
        Exchange a code or a refresh token for tokens.
        """
        _allow_any_origin(request)
        try:
            form = _body_form(request)
            client = await self._client(request, form)
            response = await self.provider.token(client, form)
        except TokenError as e:
            return self._token_error(request, e)
        return _json(request, response)

    @app.route("/openid/token/revocation", methods=["POST"])
    async def revocation(self, request: IRequest) -> bytes:
        """
        Revoke an access or refresh token (RFC 7009).
        """
        _allow_any_origin(request)
        try:
            form = _body_form(request)
            client = await self._client(request, form)
            await self.provider.revoke(client, form)
        except TokenError as e:
            return self._token_error(request, e)
        request.setHeader(b"Cache-Control", b"no-store")
        return b""

    @app.route("/openid/token/introspection", methods=["POST"])
    async def introspection(self, request: IRequest) -> bytes:
        """
        Describe a token of the calling client (RFC 7662).
        """
        try:
            form = _body_form(request)
            client = await self._client(request, form, allow_public=False)
            response = await self.provider.introspect(client, form)
        except TokenError as e:
            return self._token_error(request, e)
        return _json(request, response)

    @app.route("/openid/token", methods=_OTHER_METHODS)
    @app.route("/openid/token/revocation", methods=_OTHER_METHODS)
    @app.route("/openid/token/introspection", methods=[*_OTHER_METHODS, "OPTIONS"])
    def method_not_allowed(self, request: IRequest) -> bytes:
        """
        Reject a token, revocation or introspection request that is not a
        POST with a JSON error, as clients of these endpoints expect.
        """
        path = (request.path or b"").rstrip(b"/")
        allowed = b"POST" if path.endswith(b"/introspection") else b"OPTIONS, POST"
        request.setHeader(b"Allow", allowed)
        body = {
            "error": "invalid_request",
            "error_description": "This endpoint accepts only POST requests.",
        }
        return _json(request, body, status=405)

    @app.route("/openid/token", methods=["OPTIONS"])
    @app.route("/openid/me", methods=["OPTIONS"])
    @app.route("/openid/token/revocation", methods=["OPTIONS"])
    def preflight(self, request: IRequest) -> bytes:
        """
        Respond to a CORS preflight request of a browser-based client.
        """
        _allow_any_origin(request)
        request.setHeader(b"Access-Control-Allow-Methods", b"GET, POST, OPTIONS")
        request.setHeader(
            b"Access-Control-Allow-Headers", b"Authorization, Content-Type"
        )
        request.setHeader(b"Access-Control-Max-Age", b"600")
        request.setResponseCode(204)
        return b""

    # UserInfo

    @app.route("/openid/me", methods=["GET", "POST"])
    async def userinfo(self, request: IRequest) -> bytes:
        """
        Return the claims of the user an access token belongs to; the token
        comes in the C{Authorization} header or, for POST, the form body.
        """
        _allow_any_origin(request)
        try:
            token = self._bearer_token(request)
            claims = await self.provider.userinfo(token)
        except BearerError as e:
            challenge = 'Bearer realm="idserver"'
            if e.error is not None:
                challenge += f', error="{e.error}", error_description="{e.description}"'
            request.setHeader(b"WWW-Authenticate", challenge.encode("ascii"))
            body = (
                {}
                if e.error is None
                else {"error": e.error, "error_description": e.description}
            )
            return _json(request, body, status=e.status)
        return _json(request, claims)

    def _bearer_token(self, request: IRequest) -> str:
        header = request.getHeader(b"authorization")
        from_header = None
        if header is not None:
            scheme, _, value = header.partition(b" ")
            if scheme.lower() != b"bearer" or not value.strip():
                raise BearerError(
                    "invalid_request", "The Authorization header is malformed.", 400
                )
            from_header = value.strip().decode("ascii", "replace")

        from_body = None
        if request.method == b"POST":
            try:
                form = _body_form(request)
                from_body = single(form, "access_token")
            except (TokenError, ValueError):
                if from_header is None:
                    raise BearerError(
                        "invalid_request", "The request body is invalid.", 400
                    ) from None
        if from_header is not None and from_body is not None:
            # RFC 6750 §2: one method per request.
            raise BearerError(
                "invalid_request", "The access token was sent twice.", 400
            )
        token = from_header or from_body
        if token is None:
            raise BearerError(None, "No access token.", 401)
        return token

    # End session

    @app.route("/openid/session/end", methods=["GET", "POST"])
    async def end_session(self, request: IRequest) -> bytes:
        """
        Sign the user out (RP-initiated logout) and send the browser to the
        client's registered post-logout URI with C{state}.
        """
        if request.method == b"POST":
            try:
                params = _body_form(request)
            except TokenError as e:
                return await self._error_page(request, e.error, e.description)
            if not self.sessions.cookie_sent(request):
                # Without the cookie the session can neither be ended nor
                # kept, and clearing the cookie would sign the user out
                # without asking. The CSRF token belongs to no session here.
                params = {k: v for k, v in params.items() if k != CSRF_FIELD}
                return _as_get(request, "/openid/session/end", params)
        else:
            params = request_form(request)
            if len(params) != len(request.args or {}):
                return await self._error_page(
                    request, "invalid_request", "A parameter is not UTF-8."
                )
        try:
            values = {
                name: single(params, name)
                for name in (
                    "id_token_hint",
                    "post_logout_redirect_uri",
                    "state",
                    "client_id",
                )
            }
        except ValueError as e:
            return await self._error_page(
                request, "invalid_request", f"The {e} parameter is repeated."
            )

        hint, hint_verified = self._read_id_token_hint(values["id_token_hint"])
        client_id = values["client_id"]
        if hint is not None:
            audience = hint.get("aud")
            hinted = audience[0] if isinstance(audience, list) else audience
            if client_id is not None and hinted != client_id:
                return await self._error_page(
                    request,
                    "invalid_request",
                    "The client_id does not match the id_token_hint.",
                )
            client_id = hinted if isinstance(hinted, str) else None

        redirect_to = values["post_logout_redirect_uri"]
        if redirect_to is not None:
            client = None
            if client_id is not None and is_client_id(client_id):
                client = await self.provider.clients.get_client(client_id)
            if client is None or redirect_to not in client.post_logout_redirect_uris:
                return await self._error_page(
                    request,
                    "invalid_request",
                    "The post_logout_redirect_uri is not registered for this client.",
                )

        session = await self.sessions.load(request)
        confirmed = request.method == b"POST" and check_csrf(session, params)
        if session is not None and session.state == SessionState.active:
            user = await self.sessions.user_of(session)
            matches_hint = (
                hint is not None
                and hint_verified
                and user is not None
                and hint.get("sub") == user.username
            )
            if not (matches_hint or confirmed):
                return await self._confirm_logout(
                    request, session.csrf_token, {**values, "client_id": client_id}
                )
        ended = await self.sessions.end(request)
        if ended is not None and ended.user_id is not None:
            self.log.info("Signed out session of user {user_id}", user_id=ended.user_id)

        if redirect_to is not None:
            parameters = {} if values["state"] is None else {"state": values["state"]}
            location = add_query(redirect_to, parameters) if parameters else redirect_to
            request.setResponseCode(303 if request.method == b"POST" else 302)
            request.setHeader(b"Location", location.encode("utf-8"))
            request.setHeader(b"Cache-Control", b"no-store")
            return b""
        body = render("message.html", message="You are signed out.")
        return send_page(request, await self._server_name(), body)

    def _read_id_token_hint(
        self, token: str | None
    ) -> tuple[dict[str, Any] | None, bool]:
        """
        Return the claims of an ID token of this issuer, expired or not, and
        whether its signature was verified with a published key.

        A hint whose key is no longer published (an old ID token kept across
        a key rotation) is still read, but only its C{aud} may be trusted as
        much as a C{client_id} parameter: it picks the client whose
        registered post-logout URIs apply. Its C{sub} must not end a session
        without the user's confirmation.
        """
        if token is None:
            return None, False
        try:
            parsed = JWT(
                jwt=token,
                key=self.provider.keys.verification_keys(),
                algs=list(SIGNING_ALGORITHMS),
                check_claims=False,
            )
            claims: Any = json.loads(parsed.claims)
            verified = True
        except (JWException, ValueError, TypeError):
            claims = _unverified_claims(token)
            verified = False
        if not isinstance(claims, dict) or claims.get("iss") != self.provider.issuer:
            return None, False
        return claims, verified

    def _hinted_user(self, token: str | None) -> str | None:
        """
        Return the username an authorization request's C{id_token_hint}
        names, or C{None} without a hint whose signature checks out.
        """
        hint, verified = self._read_id_token_hint(token)
        if hint is None or not verified:
            return None
        subject = hint.get("sub")
        return subject if isinstance(subject, str) else None

    async def _confirm_logout(
        self, request: IRequest, csrf_token: str, values: Mapping[str, str | None]
    ) -> bytes:
        fields = _hidden_fields(
            (name, value)
            for name, value in values.items()
            if value is not None and name != "id_token_hint"
        )
        name = await self._server_name()
        body = render(
            "logout.html", server_name=name, csrf_token=csrf_token, fields=fields
        )
        return send_page(request, name, body)
