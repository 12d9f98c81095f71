"""meshobs: observability and security alerting for service meshes."""

from meshobs._version import __version__

__all__ = ["__version__"]
