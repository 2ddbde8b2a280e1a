"""
idserver: a self-hosted user directory served over OpenID Connect and LDAP.
"""

__all__: list[str] = []
