"""
Makes C{twistd idserver} available; the options and the service are in
L{idserver.tap}, imported only when the plugin is used.
"""

from twisted.application.service import ServiceMaker

idserver = ServiceMaker(
    "idserver",
    "idserver.tap",
    "A user directory served over OpenID Connect and LDAP.",
    "idserver",
)
