"""canary: a progressive-delivery controller daemon."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("canary")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"
