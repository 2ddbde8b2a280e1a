"""
The HTTP face of idserver: the health check, the login pages and the
dashboard, put together with the OpenID Connect provider in
L{idserver.web.app}.
"""

__all__: list[str] = []
