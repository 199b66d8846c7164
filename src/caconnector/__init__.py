"""ca-connector and ca-manager: a CA-agnostic certificate manager and its on-premises connectors."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("caconnector")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
