"""
The OpenID Connect provider: keys, clients, protocol rules and the HTTP
resource that serves them.
"""

__all__: list[str] = []
