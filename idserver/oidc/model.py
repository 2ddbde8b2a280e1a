"""
Value objects of the OpenID Connect provider.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SIGNING_ALGORITHMS", "Client"]

SIGNING_ALGORITHMS = ("RS256", "EdDSA")


@dataclass(frozen=True)
class Client:
    """
    A registered relying party.

    @ivar client_id: C{cid-} followed by 32 hex digits.
    @ivar secret_hash: the SHA-256 (hex) of the client secret, or C{None}
        for a public client.
    @ivar redirect_uris: the registered redirect URIs, compared exactly
        (except the port of loopback C{http} URIs).
    @ivar launch_url: the link the dashboard shows for the app, or C{None}.
    @ivar signing_alg: the ID token algorithm, one of L{SIGNING_ALGORITHMS}.
    @ivar public: C{True} for a client without a secret, which must use
        PKCE.
    @ivar allowed_group_ids: ids of the groups whose members may use the
        app; empty means every user. Admins always may. Ids rather than
        names, so renaming a group keeps its access and a new group that
        takes an old name does not inherit it.
    """

    client_id: str
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...]
    launch_url: str | None
    signing_alg: str
    public: bool
    allowed_group_ids: tuple[str, ...]
    created_at: float
    updated_at: float
