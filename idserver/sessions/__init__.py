"""
The session store: browser sessions, authorization codes, grants (app
sessions), refresh and access tokens, and the rate-limit counters.
"""

__all__: list[str] = []
