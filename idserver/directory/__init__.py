"""
Directory backends: where users, groups and settings are stored.
"""

__all__: list[str] = []
