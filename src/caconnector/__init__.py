"""ca-connector and ca-manager: a CA-agnostic certificate manager and its on-premises connectors."""

from __future__ import annotations

import functools


@functools.cache
def _installed_version() -> str:
    # importlib.metadata costs a tenth of a second to import: looked up on first use (PEP 562), not at
    # `import caconnector`, so `ca-manager -h` does not pay for it.
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415  (deferred on purpose)

    try:
        return version("caconnector")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _installed_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
