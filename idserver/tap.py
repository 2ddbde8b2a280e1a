"""
The C{twistd idserver} plugin: command-line options and L{makeService}.
"""

from __future__ import annotations

from twisted.application.service import IService
from twisted.python import usage

from idserver.config import default_config_path, load_config

__all__ = ["Options", "makeService"]


class Options(usage.Options):
    """
    Options of C{twistd idserver}. Everything else is in the configuration
    file.
    """

    synopsis = "[--config PATH]"
    longdesc = (
        "Serve the idserver user directory over HTTPS (OpenID Connect, the "
        "dashboard) and LDAP, as set in the configuration file."
    )

    optParameters = [
        [
            "config",
            "c",
            None,
            "The TOML configuration file "
            "[default: $IDSERVER_CONFIG or /etc/idserver/idserver.toml].",
        ],
    ]

    def postOptions(self) -> None:
        # Read at parse time, so that twistd reports a bad file as a usage
        # error before it daemonizes or opens anything.
        if self["config"] is None:
            self["config"] = default_config_path()
        self["configuration"] = load_config(self["config"])


def makeService(options: Options) -> IService:
    """
    Build the daemon's services from the options' configuration.

    @raise idserver.config.ConfigError: the configuration requests a
        feature that this version does not have.
    """
    from twisted.internet import reactor

    from idserver.service import build_service

    return build_service(options["configuration"], reactor=reactor)
