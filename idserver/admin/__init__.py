"""
C{idserver-admin}, the command line for administrators: users, groups,
settings and the set-up of the data directory.

L{idserver.admin.cli} parses the command line and runs one command; each
other module here adds one command word (C{init}, C{user}, C{group},
C{settings}) through L{idserver.admin.command.add_command}.
"""

__all__: list[str] = []
