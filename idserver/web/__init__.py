"""
The HTTP face of idserver: the health check now, the OpenID Connect provider
and the dashboard once they are added to L{idserver.web.app}.
"""

__all__: list[str] = []
