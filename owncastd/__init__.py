"""owncastd: a self-hosted live video and web chat server speaking the Owncast API."""
from .version import __version__

__all__ = ["__version__"]
