"""
The web dashboard: self-service pages for every user (apps, profile,
password, two-factor authentication, app sessions) and the admin pages
(users, groups, OpenID clients, LDAP server, settings, audit log).
"""

__all__: list[str] = []
