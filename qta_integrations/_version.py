"""The package version, in one place: every module that needs it reads it from here.

Nothing inside the package imports ``qta_integrations`` itself for its version, so a module
low in the layers (the saved-state format, the trainer) never reaches back up to the root.
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["__version__"]

try:
    __version__ = metadata.version("qta-integrations")
except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
