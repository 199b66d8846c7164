"""The connector packages this manager offers: the newest `ca-connector_<version>_<arch>.deb` (and
`caconnector-<version>-...whl`) in its downloads directory, and the newest connector version it serves,
against which connectors are marked `outdated`. Rules only; `manager/downloads.py` serves the files."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from caconnector.manager.settings import Settings

DEB_NAME = re.compile(r"ca-connector_(?P<version>[^_]+)_(?P<arch>[A-Za-z0-9]+)\.deb")
WHEEL_NAME = re.compile(r"caconnector-(?P<version>[^-]+)-[^-]+-[^-]+-[^-]+\.whl")
KINDS = {"deb": DEB_NAME, "wheel": WHEEL_NAME}


@dataclass(frozen=True)
class Package:
    path: Path
    version: Version
    kind: str

    @property
    def filename(self) -> str:
        return self.path.name


def parse_version(text: str | None) -> Version | None:
    if not text:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def downloads_dir(settings: Settings) -> Path:
    return settings.downloads_dir or settings.datadir / "downloads"


_cache_lock = threading.Lock()
_cache: dict[tuple[Path, str], tuple[float, Package | None]] = {}


def newest(settings: Settings, kind: str) -> Package | None:
    """The newest package of `kind` ("deb" or "wheel"), or None when the directory offers none.

    Cached until the directory changes (its mtime), because every connector view asks."""
    directory = downloads_dir(settings)
    try:
        mtime = directory.stat().st_mtime
    except OSError:
        return None
    key = (directory, kind)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None and cached[0] == mtime:
            return cached[1]
    found: Package | None = None
    pattern = KINDS[kind]
    for path in directory.iterdir():
        match = pattern.fullmatch(path.name)
        version = parse_version(match["version"]) if match else None
        if version is not None and path.is_file() and (found is None or version > found.version):
            found = Package(path, version, kind)
    with _cache_lock:
        _cache[key] = (mtime, found)
    return found


def newest_version(settings: Settings) -> Version | None:
    """The newest connector version served, package or wheel."""
    versions = [p.version for kind in KINDS if (p := newest(settings, kind)) is not None]
    return max(versions, default=None)


def is_outdated(connector_version: str | None, settings: Settings) -> bool | None:
    """True when the connector reported a version older than the newest served; None when unknown
    (never registered, no package served, or a version that does not parse)."""
    served = newest_version(settings)
    reported = parse_version(connector_version)
    if served is None or reported is None:
        return None
    return reported < served


def package_url(settings: Settings) -> str | None:
    """Where connectors download the package from this manager, when it serves one."""
    if newest(settings, "deb") is None:
        return None
    return f"{settings.public_url.rstrip('/')}/downloads/ca-connector.deb"
