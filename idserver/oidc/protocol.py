"""
OpenID Connect and OAuth 2.0 rules that need no network or storage:
authorization request validation, PKCE, client authentication parsing,
claims and ID token contents.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from idserver.model import User
from idserver.oidc.clients import redirect_uri_matches
from idserver.oidc.model import Client

__all__ = [
    "CLAIMS_SUPPORTED",
    "PROMPTS_SUPPORTED",
    "SCOPES_SUPPORTED",
    "AuthorizationError",
    "AuthorizationRequest",
    "ClientCredentials",
    "ErrorPage",
    "TokenError",
    "add_query",
    "hash_half",
    "parse_authorization_request",
    "parse_client_credentials",
    "single",
    "user_claims",
    "verify_pkce",
]

SCOPES_SUPPORTED = ("openid", "profile", "email", "groups")
PROFILE_CLAIMS = ("name", "given_name", "family_name", "preferred_username", "locale")
EMAIL_CLAIMS = ("email", "email_verified")
CLAIMS_SUPPORTED = (
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "at_hash",
    "amr",
    "sid",
    *PROFILE_CLAIMS,
    *EMAIL_CLAIMS,
    "groups",
)
RESPONSE_MODES = ("query", "form_post")
# OIDC Core §3.1.2.1 prompt values. Only none and login change what happens:
# administrators register the clients, so there is no consent page, and a
# browser has one session, so there is no account to select.
PROMPTS_SUPPORTED = ("none", "login")
PROMPTS = frozenset({*PROMPTS_SUPPORTED, "consent", "select_account"})
LOCALE = "en-US"

# RFC 7636 §4.1 and §4.2: a verifier is 43 to 128 unreserved characters;
# an S256 challenge is the base64url SHA-256 without padding (43 characters).
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")
# RFC 6749 §A.5 and §A.4: printable ASCII without quote and backslash.
_STATE = re.compile(r"[\x20-\x7e]*")
_MAX_PARAMETER = 2000


class ErrorPage(Exception):
    """
    An authorization request error that must not go back to the client,
    because the client or the redirect URI cannot be trusted (RFC 6749
    §4.1.2.1): the user sees an error page.
    """

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


class AuthorizationError(Exception):
    """
    An authorization request error sent back to the client's redirect URI.
    """

    def __init__(
        self,
        error: str,
        description: str,
        *,
        redirect_uri: str,
        state: str | None,
        response_mode: str,
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state
        self.response_mode = response_mode

    def parameters(self, issuer: str) -> dict[str, str]:
        """
        Return the response parameters, with C{iss} (RFC 9207).
        """
        result = {"error": self.error, "error_description": self.description}
        if self.state is not None:
            result["state"] = self.state
        result["iss"] = issuer
        return result


class TokenError(Exception):
    """
    An error of the token, revocation or introspection endpoint (RFC 6749
    §5.2), sent as JSON with C{status}.
    """

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def single(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    """
    Return the one value of parameter C{name}, C{None} when it is absent or
    empty (OIDC Core §3.1.2.1 treats empty parameters as omitted).

    @raise ValueError: the parameter is repeated (RFC 6749 §3.1).
    """
    values = params.get(name, [])
    if len(values) > 1:
        raise ValueError(name)
    if not values or values[0] == "":
        return None
    return values[0]


@dataclass(frozen=True)
class AuthorizationRequest:
    """
    A validated authorization request.

    @ivar scope: the requested scopes that are supported, C{openid} first.
    @ivar prompt: the C{prompt} values.
    @ivar max_age: seconds, or C{None}.
    @ivar login_hint: a username to fill into the login form.
    """

    client: Client
    redirect_uri: str
    response_mode: str
    scope: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    prompt: frozenset[str]
    max_age: int | None
    login_hint: str | None


def parse_authorization_request(
    params: Mapping[str, Sequence[str]], client: Client | None
) -> AuthorizationRequest:
    """
    Validate the parameters of an authorization request for C{client}, the
    client its C{client_id} names (C{None} when unknown).

    @raise ErrorPage: the client is unknown or the redirect URI is missing
        or not registered, so the error must not be sent to it.
    @raise AuthorizationError: any other problem, to send to the client.
    """
    try:
        client_id = single(params, "client_id")
        redirect_uri = single(params, "redirect_uri")
    except ValueError as e:
        raise ErrorPage("invalid_request", f"The {e} parameter is repeated.") from None
    if client_id is None:
        raise ErrorPage("invalid_request", "The client_id parameter is missing.")
    if client is None or client.client_id != client_id:
        raise ErrorPage("invalid_client", "The client is not registered.")
    if redirect_uri is None:
        raise ErrorPage("invalid_request", "The redirect_uri parameter is missing.")
    if not any(redirect_uri_matches(uri, redirect_uri) for uri in client.redirect_uris):
        raise ErrorPage(
            "invalid_request", "The redirect_uri is not registered for this client."
        )

    # From here on errors go back to the client. The state and mode are
    # read first so that even these errors reach it as it asked.
    state = _first(params, "state")
    if state is not None and not _STATE.fullmatch(state):
        state = None
    mode_values = params.get("response_mode", [])
    response_mode = mode_values[0] if len(mode_values) == 1 else "query"
    if response_mode not in RESPONSE_MODES:
        response_mode = "query"

    def fail(error: str, description: str) -> AuthorizationError:
        return AuthorizationError(
            error,
            description,
            redirect_uri=redirect_uri,
            state=state,
            response_mode=response_mode,
        )

    try:
        values = {
            name: single(params, name)
            for name in (
                "response_type",
                "response_mode",
                "scope",
                "state",
                "nonce",
                "code_challenge",
                "code_challenge_method",
                "prompt",
                "max_age",
                "login_hint",
                "request",
                "request_uri",
            )
        }
    except ValueError as e:
        raise fail("invalid_request", f"The {e} parameter is repeated.") from None
    for name, value in values.items():
        if value is not None and len(value) > _MAX_PARAMETER:
            raise fail("invalid_request", f"The {name} parameter is too long.")

    if values["request"] is not None:
        raise fail("request_not_supported", "Request objects are not supported.")
    if values["request_uri"] is not None:
        raise fail("request_uri_not_supported", "request_uri is not supported.")
    if values["response_type"] is None:
        raise fail("invalid_request", "The response_type parameter is missing.")
    if values["response_type"] != "code":
        raise fail(
            "unsupported_response_type", "Only the response type code is supported."
        )
    if values["response_mode"] not in (None, *RESPONSE_MODES):
        raise fail("invalid_request", "The response_mode must be query or form_post.")
    if values["state"] is not None and state is None:
        raise fail("invalid_request", "The state parameter has invalid characters.")

    requested = (values["scope"] or "").split()
    if "openid" not in requested:
        raise fail("invalid_scope", "The scope must include openid.")
    scope = tuple(s for s in SCOPES_SUPPORTED if s in requested)

    code_challenge = values["code_challenge"]
    method = values["code_challenge_method"]
    if code_challenge is None:
        if method is not None:
            raise fail("invalid_request", "code_challenge_method without a challenge.")
        if client.public:
            raise fail(
                "invalid_request", "Public clients must use PKCE (code_challenge)."
            )
    else:
        if method != "S256":
            raise fail("invalid_request", "The code_challenge_method must be S256.")
        if not _CHALLENGE.fullmatch(code_challenge):
            raise fail("invalid_request", "The code_challenge is malformed.")

    prompt = frozenset((values["prompt"] or "").split())
    if not prompt <= PROMPTS:
        raise fail("invalid_request", "The prompt parameter has an unknown value.")
    if "none" in prompt and len(prompt) > 1:
        raise fail("invalid_request", "prompt=none cannot be combined.")

    max_age = None
    if values["max_age"] is not None:
        if not values["max_age"].isdigit():
            raise fail("invalid_request", "max_age must be a non-negative integer.")
        max_age = int(values["max_age"])

    return AuthorizationRequest(
        client=client,
        redirect_uri=redirect_uri,
        response_mode=values["response_mode"] or "query",
        scope=scope,
        state=state,
        nonce=values["nonce"],
        code_challenge=code_challenge,
        prompt=prompt,
        max_age=max_age,
        login_hint=values["login_hint"],
    )


def _first(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name, [])
    return values[0] if values and values[0] else None


def add_query(uri: str, parameters: Mapping[str, str]) -> str:
    """
    Add C{parameters} to the query of C{uri}, keeping what it has.
    """
    parts = urlsplit(uri)
    extra = urlencode(parameters)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def verify_pkce(verifier: str | None, challenge: str | None) -> bool:
    """
    Check a token request's C{code_verifier} against the S256 challenge
    stored with the code (RFC 7636 §4.6). A verifier without a stored
    challenge fails, and so does a missing verifier when one was stored.
    """
    if challenge is None:
        return verifier is None
    if verifier is None or not _VERIFIER.fullmatch(verifier):
        return False
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return computed == challenge


def hash_half(value: str, alg: str) -> str:
    """
    Return the C{at_hash} of C{value} for an ID token signed with C{alg}
    (OIDC Core §3.1.3.6): the left half of the hash, base64url. RS256 uses
    SHA-256; EdDSA with Ed25519 uses SHA-512, as OpenID Connect clients
    (openid-client, oidc-token-hash) compute it.
    """
    algorithm = hashlib.sha512 if alg == "EdDSA" else hashlib.sha256
    digest = algorithm(value.encode("ascii")).digest()
    half = digest[: len(digest) // 2]
    return base64.urlsafe_b64encode(half).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class ClientCredentials:
    """
    The client id, secret and authentication method of a token request.

    @ivar method: C{client_secret_basic}, C{client_secret_post} or C{none}.
    """

    client_id: str
    secret: str | None
    method: str


def parse_client_credentials(
    authorization: bytes | None, form: Mapping[str, Sequence[str]]
) -> ClientCredentials:
    """
    Read the client's id and secret from the C{Authorization} header or the
    form body. A request must use one method (RFC 6749 §2.3).

    @raise TokenError: C{invalid_request} for a malformed or repeated
        parameter, C{invalid_client} for a malformed header or no client id.
    """
    try:
        form_id = single(form, "client_id")
        form_secret = single(form, "client_secret")
    except ValueError as e:
        raise TokenError("invalid_request", f"The {e} parameter is repeated.") from None

    if authorization is not None and authorization[:6].lower() == b"basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True)
            user, separator, password = decoded.decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            raise TokenError(
                "invalid_client", "The Basic authorization header is malformed.", 401
            ) from None
        if not separator:
            raise TokenError(
                "invalid_client", "The Basic authorization header is malformed.", 401
            )
        if form_secret is not None:
            raise TokenError(
                "invalid_request", "Use one client authentication method only."
            )
        # RFC 6749 §2.3.1: id and secret are form-encoded before base64.
        client_id = unquote(user.replace("+", " "))
        secret = unquote(password.replace("+", " "))
        if form_id is not None and form_id != client_id:
            raise TokenError("invalid_request", "The client_id values differ.")
        return ClientCredentials(client_id, secret, "client_secret_basic")

    if form_id is None:
        raise TokenError("invalid_client", "Client authentication is missing.", 401)
    if form_secret is not None:
        return ClientCredentials(form_id, form_secret, "client_secret_post")
    return ClientCredentials(form_id, None, "none")


def _name_parts(user: User) -> tuple[str, str, str]:
    """
    Return the name, given name and family name, by the rules of the LDAP
    entries. The given and family names are the first and last words of the
    display name. A one-word name is also the family name, and a user
    without a display name gets the username for all three.
    """
    words = user.display_name.split()
    if not words:
        return user.username, user.username, user.username
    return " ".join(words), words[0], words[-1]


def user_claims(
    user: User, group_names: Sequence[str], scope: Sequence[str]
) -> dict[str, Any]:
    """
    Return C{sub} and the claims that C{scope} grants, for both the ID
    token and UserInfo.
    """
    claims: dict[str, Any] = {"sub": user.username}
    if "profile" in scope:
        name, given, family = _name_parts(user)
        claims.update(
            name=name,
            given_name=given,
            family_name=family,
            preferred_username=user.username,
            locale=LOCALE,
        )
    if "email" in scope:
        claims.update(email=user.email, email_verified=bool(user.email_verified))
    if "groups" in scope:
        claims["groups"] = sorted(group_names)
    return claims
