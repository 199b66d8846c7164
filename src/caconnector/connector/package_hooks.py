"""What the Debian package's maintainer scripts do, in Python so it is tested like the rest:

    python -m caconnector.connector.package_hooks before-upgrade DATADIR   (prerm upgrade)
    python -m caconnector.connector.package_hooks configure DATADIR        (postinst configure)
    python -m caconnector.connector.package_hooks before-remove DATADIR    (prerm remove)

An upgrade stops the service (remembering that it ran), the new version migrates the data directory to
its schema and gives it back to the service's user, then starts the service again. Removal stops and
removes the service; the data directory stays until purge (postrm deletes it).
"""

from __future__ import annotations

import sys
from pathlib import Path

from caconnector.connector.ownership import hand_over
from caconnector.connector.service import ServiceError
from caconnector.connector.service_control import ConnectorService
from caconnector.connector.store import ConnectorStore, StoreError

RESTART_MARKER = ".restart-after-upgrade"


def before_upgrade(datadir: Path) -> str:
    service = ConnectorService.for_datadir(datadir)
    if not service.running():
        return "the service is not running"
    service.control("stop")
    (datadir / RESTART_MARKER).touch()
    return "the service was stopped for the upgrade"


def migrate(datadir: Path) -> str:
    """Load the data directory with this version's store and write it back at its schema version."""
    store = ConnectorStore(datadir)
    if not store.config_path.exists():
        return "no configuration to migrate"
    with store.transaction():
        pass  # the load migrates in memory; the commit writes every file at the current schema
    return f"data directory at schema {ConnectorStore.SCHEMA_VERSION}"


def configure(datadir: Path) -> list[str]:
    lines = [migrate(datadir)]
    hand_over(datadir)
    marker = datadir / RESTART_MARKER
    if marker.exists():
        marker.unlink()
        ConnectorService.for_datadir(datadir).control("start")
        lines.append("the service was started again")
    return lines


def before_remove(datadir: Path) -> str:
    _, text = ConnectorService.for_datadir(datadir).uninstall()
    return text


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"before-upgrade", "configure", "before-remove"}:
        print("usage: package_hooks before-upgrade|configure|before-remove DATADIR", file=sys.stderr)
        return 2
    action, datadir = argv[0], Path(argv[1])
    try:
        if action == "before-upgrade":
            lines = [before_upgrade(datadir)]
        elif action == "configure":
            lines = configure(datadir)
        else:
            lines = [before_remove(datadir)]
    except (ServiceError, StoreError) as exc:
        print(f"ca-connector: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"ca-connector: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
