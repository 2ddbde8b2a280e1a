"""
The read-only LDAP server: wire format, filters, the indexed directory
snapshot, binds, searches, access control and listeners.
"""

__all__: list[str] = []
