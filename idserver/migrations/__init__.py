"""
The SQLite schema as numbered SQL files, C{NNNN_name.sql}.

L{idserver.directory.schema} applies the files in the order of their
numbers, each once, and records them in the C{schema_migrations} table. A
schema change is a new file with the next number; an applied file is never
edited.
"""

__all__: list[str] = []
