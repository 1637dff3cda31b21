"""cxr-device: the device-building core (cohorts, images, models, bundles).

This package imports third-party libraries only; ``validation`` and ``fda_submission``
build on it, never the other way round.
"""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cxr-device")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
