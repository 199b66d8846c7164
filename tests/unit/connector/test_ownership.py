"""As root, what commands write into a data directory owned by the service's user belongs to that user."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from caconnector.connector.ownership import hand_over
from caconnector.connector.store import ConnectorStore, StoredBackend

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
NOBODY = 65534


def test_store_writes_take_the_directory_owner_and_hand_over_catches_the_rest(tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    datadir.mkdir(mode=0o700)
    os.chown(datadir, NOBODY, NOBODY)
    store = ConnectorStore(datadir)
    with store.transaction() as txn:
        txn.put_backend(StoredBackend("b", "local", {}, {"cakey": "secret"}))
    for name in ("config.toml", "secrets.json", "secret.key"):
        assert (datadir / name).stat().st_uid == NOBODY, name
    stray = datadir / "logs" / "ca-connector.log"
    stray.parent.mkdir()
    stray.write_text("root wrote this\n")
    hand_over(datadir)
    assert stray.stat().st_uid == NOBODY and stray.parent.stat().st_uid == NOBODY


def test_a_root_owned_directory_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    hand_over(tmp_path)
    assert (tmp_path / "f").stat().st_uid == 0
