"""`ca-connector update`: install the newer package the manager serves.

The reference document updates by downloading the installer from the manager's About page and running
it over the old one. Here: GET `/downloads/ca-connector.deb` through the same route as the agent (the
stored proxy and CA bundle), read the version the manager names in `X-CA-Connector-Version` before the
body, and when it is newer than this one, check the file is that package (`dpkg-deb`), `dpkg -i` it (the
package's scripts stop the service, migrate the data directory and start the service again), and make
sure the service runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from packaging.version import InvalidVersion, Version

from caconnector import __version__
from caconnector.connector.link import LinkSettings, describe_network_error, manager_transport
from caconnector.connector.link_settings import read_proxy, read_registration
from caconnector.connector.store import ConnectorStore

DEB_PATH = "/downloads/ca-connector.deb"
VERSION_HEADER = "X-CA-Connector-Version"
PACKAGE = "ca-connector"
PACKAGE_PREFIX = Path("/opt/ca-connector")
PACKAGE_COMMAND = "/usr/bin/ca-connector"


class UpdateError(Exception):
    """The update cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Offer:
    version: Version
    url: str


def _version(text: str, where: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise UpdateError(f"{where} names version {text!r}, which is not a version number") from None


def current_version() -> Version:
    return _version(__version__, "this ca-connector")


def installed_from_package() -> bool:
    """Whether this program is the Debian package's (its venv under /opt/ca-connector)."""
    return Path(sys.prefix).resolve().is_relative_to(PACKAGE_PREFIX)


def _client(store: ConnectorStore) -> httpx.Client:
    snapshot = store.read()
    registration = read_registration(snapshot)
    if registration is None:
        raise UpdateError(
            "this connector is not registered, so it does not know its manager: give a package with -file"
        )
    settings = LinkSettings(
        manager_url=registration.manager_url, cacert_pem=registration.cacert_pem, proxy=read_proxy(snapshot)
    )
    return httpx.Client(
        base_url=settings.manager_url,
        transport=manager_transport(settings),
        trust_env=False,
        timeout=httpx.Timeout(120, connect=15),
        headers={"User-Agent": f"ca-connector/{__version__}"},
    )


def download(store: ConnectorStore, into: Path | None, *, newer_than: Version) -> tuple[Offer, Path | None]:
    """What the manager offers, and the package saved under `into` when it is newer (None otherwise)."""
    with _client(store) as client:
        url = f"{client.base_url}{DEB_PATH.lstrip('/')}"
        try:
            with client.stream("GET", DEB_PATH) as response:
                if response.status_code == 404:
                    raise UpdateError(
                        f"the manager offers no package at {url} (its downloads directory is empty)"
                    )
                if response.status_code != 200:
                    raise UpdateError(f"GET {url} answered {response.status_code}")
                header = response.headers.get(VERSION_HEADER)
                if not header:
                    raise UpdateError(f"GET {url} did not name the package's version ({VERSION_HEADER})")
                offer = Offer(_version(header, url), url)
                if offer.version <= newer_than or into is None:
                    return offer, None
                path = into / f"{PACKAGE}_{offer.version}.deb"
                with path.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
                return offer, path
        except httpx.HTTPError as exc:
            raise UpdateError(f"cannot download {url}: {describe_network_error(exc)}") from None


def package_version(path: Path) -> Version:
    """The version inside a .deb, checking it is the ca-connector package."""
    done = subprocess.run(
        ["dpkg-deb", "--field", str(path), "Package", "Version"],
        capture_output=True,
        text=True,
        check=False,
    )
    fields = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
    if done.returncode != 0 or fields.get("Package") != PACKAGE:
        raise UpdateError(f"{path} is not the {PACKAGE} package ({done.stderr.strip() or fields})")
    return _version(fields["Version"], str(path))


def install(path: Path) -> None:
    """dpkg -i; the package's maintainer scripts stop, migrate and start the service."""
    if shutil.which("dpkg") is None:
        raise UpdateError("dpkg is not on this host: the package is for Debian and its derivatives")
    if os.geteuid() != 0:
        raise UpdateError("installing the package needs root: run sudo ca-connector update")
    done = subprocess.run(
        ["dpkg", "-i", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise UpdateError(f"dpkg -i {path} failed: {(done.stderr or done.stdout).strip()}")


def ensure_running(datadir: Path) -> str:
    """Start the service with the new program (a new process: this one still runs the old code)."""
    command = PACKAGE_COMMAND if Path(PACKAGE_COMMAND).exists() else sys.argv[0]
    done = subprocess.run(
        [command, "service", "start", "-datadir", str(datadir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise UpdateError(f"the package is installed, but the service did not start: {done.stderr.strip()}")
    return done.stdout.strip()


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ca-connector-update-"))
