"""The connector's data directory: real files in a temporary directory, real processes for locking."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from caconnector.connector.store import (
    MIGRATIONS,
    SECRETS_MIGRATIONS,
    ConnectorStore,
    StoredBackend,
    StoreError,
    default_datadir,
)

PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


@pytest.fixture(autouse=True)
def _no_key_file_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CA_CONNECTOR_KEY_FILE", raising=False)
    monkeypatch.delenv("CA_CONNECTOR_HOME", raising=False)


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(datadir: Path) -> ConnectorStore:
    return ConnectorStore(datadir)


def aws(name: str = "corp-aws", secret: str = "aws-secret-value-1") -> StoredBackend:
    return StoredBackend(
        name=name,
        type="acmpca",
        options={"accesskeyid": "AKIAEXAMPLE", "region": "eu-west-1", "endpoint": None, "port": 443},
        secrets={"secretaccesskey": secret},
    )


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def secrets_doc(datadir: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((datadir / "secrets.json").read_text())
    return document


# --- round trip and what lands on disk ---------------------------------------------------------------


def test_reading_a_missing_datadir_is_empty_and_creates_nothing(store: ConnectorStore, datadir: Path) -> None:
    snapshot = store.read()
    assert dict(snapshot.backends) == {}
    assert snapshot.section("manager") == {}
    assert snapshot.section_secrets("manager") == {}
    assert not datadir.exists()


def test_backends_and_sections_round_trip(store: ConnectorStore) -> None:
    local = StoredBackend(
        name="a.local_1",
        type="local",
        options={"cacert": PEM, "days": 3650, "crlf": "line1\r\nline2", "flag": True, "tags": ["x", "y"]},
        secrets={"cakey": "-----BEGIN PRIVATE KEY-----\nsecret-key-body\n-----END PRIVATE KEY-----\n"},
    )
    with store.transaction() as txn:
        txn.put_backend(aws())
        txn.put_backend(local)
        txn.set_section("proxy", {"url": "http://proxy:3128", "unset": None}, {"password": "proxy-pw"})
        txn.set_section("manager", {"url": "https://manager.example"})
        # A transaction sees its own changes before they are written.
        assert list(txn.backends) == ["a.local_1", "corp-aws"]

    snapshot = ConnectorStore(store.datadir).read()
    assert list(snapshot.backends) == ["a.local_1", "corp-aws"]
    assert snapshot.backends["a.local_1"] == local
    stored_aws = snapshot.backends["corp-aws"]
    assert stored_aws.options == {"accesskeyid": "AKIAEXAMPLE", "region": "eu-west-1", "port": 443}
    assert stored_aws.secrets == {"secretaccesskey": "aws-secret-value-1"}
    assert snapshot.section("proxy") == {"url": "http://proxy:3128"}
    assert snapshot.section_secrets("proxy") == {"password": "proxy-pw"}
    assert snapshot.section("manager") == {"url": "https://manager.example"}
    assert snapshot.section_secrets("manager") == {}

    # What a snapshot hands out are copies.
    snapshot.backends["corp-aws"].options["region"] = "changed"
    snapshot.section("proxy")["url"] = "changed"
    assert snapshot.backends["corp-aws"].options["region"] == "eu-west-1"
    assert snapshot.section("proxy")["url"] == "http://proxy:3128"


def test_config_toml_is_readable_and_names_its_secrets(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(StoredBackend("ca", "local", {"cacert": PEM}, {"cakey": "k"}))
    text = store.config_path.read_text()
    assert "-----BEGIN CERTIFICATE-----\nMIIB" in text  # PEM kept multi-line for the reader
    document = tomllib.loads(text)
    assert document == {
        "schema_version": 1,
        "backends": {"ca": {"type": "local", "cacert": PEM, "secret_fields": ["cakey"]}},
    }
    assert set(secrets_doc(store.datadir)["entries"]) == {"backends/ca/cakey"}


def test_secret_values_are_in_no_file_under_the_datadir(store: ConnectorStore) -> None:
    secrets = ["aws-secret-value-XYZZY", "proxy-password-PLUGH", "section-token-FROTZ"]
    with store.transaction() as txn:
        txn.put_backend(aws(secret=secrets[0]))
        txn.set_section("proxy", {"url": "http://p"}, {"password": secrets[1], "token": secrets[2]})
    with store.transaction() as txn:  # a second commit re-seals everything
        txn.put_backend(aws("other", secret=secrets[0]))

    contents = files_under(store.datadir)
    assert {"config.toml", "secrets.json", "secret.key"} <= contents.keys()
    for secret in secrets:
        for encoded in (secret.encode(), base64.b64encode(secret.encode())):
            assert not any(encoded in data for data in contents.values()), secret


def test_repr_of_a_backend_hides_its_secrets() -> None:
    backend = aws(secret="do-not-print-me")
    assert "do-not-print-me" not in repr(backend)
    assert "secretaccesskey" in repr(backend)  # the names are not secret, and help debugging
    assert "do-not-print-me" not in str(backend)


def test_file_modes(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws())
    assert mode_of(store.datadir) == 0o700
    assert mode_of(store.datadir / "secret.key") == 0o600
    assert len((store.datadir / "secret.key").read_bytes()) == 32
    assert mode_of(store.config_path) == 0o600
    assert mode_of(store.secrets_path) == 0o600
    # No temporary files are left behind.
    assert sorted(p.name for p in store.datadir.iterdir()) == [
        ".lock",
        "config.toml",
        "secret.key",
        "secrets.json",
    ]


def test_no_key_file_is_made_while_there_are_no_secrets(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(StoredBackend("plain", "local", {"days": 10}, {}))
    assert not (store.datadir / "secret.key").exists()
    assert store.read().backends["plain"].options == {"days": 10}


def test_key_file_elsewhere(tmp_path: Path, datadir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_dir = tmp_path / "keys"
    key_dir.mkdir()
    monkeypatch.setenv("CA_CONNECTOR_KEY_FILE", str(key_dir / "connector.key"))
    store = ConnectorStore(datadir)
    with store.transaction() as txn:
        txn.put_backend(aws())
    assert mode_of(key_dir / "connector.key") == 0o600
    assert not (datadir / "secret.key").exists()
    assert store.read().backends["corp-aws"].secrets == {"secretaccesskey": "aws-secret-value-1"}

    monkeypatch.delenv("CA_CONNECTOR_KEY_FILE")
    with pytest.raises(StoreError, match=r"key file .* is missing"):
        ConnectorStore(datadir).read()


# --- refusing what does not match --------------------------------------------------------------------


def test_tampered_ciphertext_is_refused(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws())
    document = secrets_doc(store.datadir)
    sealed = document["entries"]["backends/corp-aws/secretaccesskey"]
    raw = bytearray(base64.b64decode(sealed["ciphertext"]))
    raw[0] ^= 1
    sealed["ciphertext"] = base64.b64encode(bytes(raw)).decode()
    store.secrets_path.write_text(json.dumps(document))

    with pytest.raises(StoreError, match="does not match the secrets") as info:
        store.read()
    assert "secrets.json" in str(info.value)
    assert "aws-secret-value-1" not in str(info.value)


def test_a_ciphertext_moved_to_another_entry_is_refused(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws("one", secret="secret-of-one"))
        txn.put_backend(aws("two", secret="secret-of-two"))
    document = secrets_doc(store.datadir)
    entries = document["entries"]
    entries["backends/two/secretaccesskey"] = entries["backends/one/secretaccesskey"]
    store.secrets_path.write_text(json.dumps(document))
    with pytest.raises(StoreError, match="does not match the secrets"):
        store.read()


def test_a_wrong_key_is_refused(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws())
    key_file = store.datadir / "secret.key"
    key_file.write_bytes(os.urandom(32))
    with pytest.raises(StoreError, match="does not match the secrets") as info:
        store.read()
    assert str(key_file) in str(info.value)
    with pytest.raises(StoreError, match="does not match"), store.transaction():
        pass


def test_a_key_of_the_wrong_length_is_refused(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws())
    key_file = store.datadir / "secret.key"
    key_file.write_bytes(key_file.read_bytes()[:16])
    with pytest.raises(StoreError, match="not a 32-byte key, so the key does not match") as info:
        store.read()
    assert str(key_file) in str(info.value)


def test_a_key_readable_by_others_is_refused(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws())
    key_file = store.datadir / "secret.key"
    key_file.chmod(0o644)
    with pytest.raises(StoreError, match="chmod 600") as info:
        store.read()
    assert str(key_file) in str(info.value)
    key_file.chmod(0o600)
    assert store.read().backends["corp-aws"].secrets == {"secretaccesskey": "aws-secret-value-1"}


def test_a_secret_named_by_the_config_but_missing_is_refused(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws())
    store.secrets_path.write_text(json.dumps({"schema_version": 1, "entries": {}}))
    with pytest.raises(StoreError, match=r"refers to secret 'backends/corp-aws/secretaccesskey'"):
        store.read()


def test_corrupt_toml_names_the_file_and_the_problem(store: ConnectorStore, datadir: Path) -> None:
    datadir.mkdir(mode=0o700)
    (datadir / "config.toml").write_text("schema_version = 1\n[backends.x\ntype = 'local'\n")
    with pytest.raises(StoreError, match=r"config\.toml is not valid TOML") as info:
        store.read()
    assert "line 2" in str(info.value)
    with pytest.raises(StoreError, match="not valid TOML"), store.transaction():
        pass


def test_a_backend_table_without_type_is_refused(store: ConnectorStore, datadir: Path) -> None:
    datadir.mkdir(mode=0o700)
    (datadir / "config.toml").write_text("schema_version = 1\n[backends.x]\nregion = 'eu'\n")
    with pytest.raises(StoreError, match=r"\[backends.x\] has no type"):
        store.read()


@pytest.mark.parametrize("file_name", ["config.toml", "secrets.json"])
def test_a_newer_schema_is_refused(store: ConnectorStore, file_name: str) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws())
    path = store.datadir / file_name
    if file_name == "config.toml":
        path.write_text(path.read_text().replace("schema_version = 1", "schema_version = 7"))
    else:
        path.write_text(json.dumps({**secrets_doc(store.datadir), "schema_version": 7}))
    before = files_under(store.datadir)
    message = (
        f"data directory {store.datadir} was written by a newer ca-connector "
        "(schema 7, this version understands up to 1); upgrade ca-connector"
    )
    with pytest.raises(StoreError) as info:
        store.read()
    assert str(info.value) == message
    with pytest.raises(StoreError), store.transaction():
        pass
    assert files_under(store.datadir) == before


def test_a_version_0_config_migrates_and_is_written_back(store: ConnectorStore, datadir: Path) -> None:
    assert set(MIGRATIONS) == set(range(ConnectorStore.SCHEMA_VERSION))
    assert set(SECRETS_MIGRATIONS) == set(range(ConnectorStore.SCHEMA_VERSION))
    datadir.mkdir(mode=0o700)
    (datadir / "config.toml").write_text(
        '[backends.old]\ntype = "local"\ndays = 30\n\n[sections.manager]\nurl = "https://m"\n'
    )
    snapshot = store.read()
    assert snapshot.backends["old"] == StoredBackend("old", "local", {"days": 30}, {})
    assert snapshot.section("manager") == {"url": "https://m"}
    assert "schema_version" not in (datadir / "config.toml").read_text()  # reading writes nothing

    with store.transaction():
        pass
    document = tomllib.loads((datadir / "config.toml").read_text())
    assert document["schema_version"] == 1
    assert document["backends"] == {"old": {"type": "local", "days": 30}}
    assert secrets_doc(datadir) == {"schema_version": 1, "entries": {}}


# --- transactions ------------------------------------------------------------------------------------


def test_an_exception_inside_a_transaction_writes_nothing(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws())
        txn.set_section("proxy", {"url": "http://p"}, {"password": "pw"})
    before = files_under(store.datadir)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), store.transaction() as txn:
        txn.put_backend(aws("second"))
        txn.remove_backend("corp-aws")
        txn.set_section("proxy", {})
        raise Boom
    assert files_under(store.datadir) == before
    assert list(store.read().backends) == ["corp-aws"]


def test_an_exception_in_the_first_transaction_writes_no_files(store: ConnectorStore) -> None:
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as txn:
        txn.put_backend(aws())
        raise RuntimeError("boom")
    assert files_under(store.datadir).keys() <= {".lock"}
    assert dict(store.read().backends) == {}


def test_a_finished_transaction_cannot_be_changed(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        pass
    with pytest.raises(RuntimeError, match="has ended"):
        txn.put_backend(aws())


def test_remove_backend_deletes_its_state_dir_after_commit(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws("gone"))
        txn.put_backend(aws("kept"))
    for name in ("gone", "kept"):
        state_dir = store.backend_state_dir(name)
        assert state_dir == store.datadir / "backends" / name
        state_dir.mkdir(parents=True)
        (state_dir / "account.json").write_text("{}")

    with store.transaction() as txn:
        txn.remove_backend("gone")
        assert store.backend_state_dir("gone").exists()  # not before the commit
    assert not store.backend_state_dir("gone").exists()
    assert (store.backend_state_dir("kept") / "account.json").exists()
    assert list(store.read().backends) == ["kept"]
    # The removed backend's secret left secrets.json with it.
    assert set(secrets_doc(store.datadir)["entries"]) == {"backends/kept/secretaccesskey"}


def test_removing_an_unknown_backend_is_an_operator_error(store: ConnectorStore) -> None:
    with pytest.raises(StoreError, match="no backend named 'nope'"), store.transaction() as txn:
        txn.remove_backend("nope")


def test_setting_a_section_replaces_it(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.set_section("proxy", {"url": "http://a", "port": 1}, {"password": "pw"})
    with store.transaction() as txn:
        txn.set_section("proxy", {"url": "http://b"})
    snapshot = store.read()
    assert snapshot.section("proxy") == {"url": "http://b"}
    assert snapshot.section_secrets("proxy") == {}
    assert secrets_doc(store.datadir)["entries"] == {}


def test_orphaned_secrets_are_dropped_by_the_next_commit(store: ConnectorStore) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws("one"))
        txn.put_backend(aws("two"))
    with_both = store.secrets_path.read_bytes()
    with store.transaction() as txn:
        txn.remove_backend("two")
    # As if a crash had struck before the clean-up write: entries no config table names.
    store.secrets_path.write_bytes(with_both)
    assert list(store.read().backends) == ["one"]
    with store.transaction():
        pass
    assert set(secrets_doc(store.datadir)["entries"]) == {"backends/one/secretaccesskey"}


def _fail_replacing(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """Make the rename onto `target` fail, as a crash between the two file writes would."""
    real_replace = os.replace

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if Path(dst).name == target:
            raise OSError(5, "Input/output error")
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def test_a_failure_between_the_two_writes_keeps_the_old_config_complete(
    store: ConnectorStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws("old", secret="old-secret"))
    with monkeypatch.context() as patch:
        _fail_replacing(patch, "config.toml")
        with pytest.raises(StoreError, match=r"cannot write .*config\.toml"), store.transaction() as txn:
            txn.remove_backend("old")
            txn.put_backend(aws("new", secret="new-secret"))
    # secrets.json was already replaced, but the old config still finds every secret it names.
    snapshot = store.read()
    assert list(snapshot.backends) == ["old"]
    assert snapshot.backends["old"].secrets == {"secretaccesskey": "old-secret"}
    assert not list(store.datadir.glob("*.tmp")) and not list(store.datadir.glob(".*.tmp"))

    with store.transaction():
        pass
    assert set(secrets_doc(store.datadir)["entries"]) == {"backends/old/secretaccesskey"}


# --- validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "-lead", ".hidden", "a/b", "a b", "x" * 65, "ü", "../up"])
def test_bad_backend_names_are_refused(store: ConnectorStore, name: str) -> None:
    with pytest.raises(ValueError, match="1 to 64 letters"), store.transaction() as txn:
        txn.put_backend(aws(name))
    with pytest.raises(ValueError, match="1 to 64 letters"):
        store.backend_state_dir(name)


@pytest.mark.parametrize("name", ["a", "9", "corp-aws.eu_1", "x" * 64])
def test_good_backend_names_are_accepted(store: ConnectorStore, name: str) -> None:
    with store.transaction() as txn:
        txn.put_backend(aws(name))
    assert list(store.read().backends) == [name]


@pytest.mark.parametrize(
    ("options", "secrets", "message"),
    [
        ({"type": "x"}, {}, "'type' is reserved"),
        ({"path": Path("/x")}, {}, "a PosixPath cannot be stored"),
        ({"key": "v"}, {"key": "s"}, "'key' cannot be both an option and a secret"),
        ({}, {"a/b": "s"}, "without '/'"),
        ({}, {"n": 1}, "must be a string"),
    ],
)
def test_unstorable_options_are_refused(
    store: ConnectorStore, options: dict[str, Any], secrets: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message), store.transaction() as txn:
        txn.put_backend(StoredBackend("b", "local", options, secrets))


def test_default_datadir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CA_CONNECTOR_HOME", str(tmp_path / "home"))
    assert default_datadir() == tmp_path / "home"
    monkeypatch.delenv("CA_CONNECTOR_HOME")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_datadir() == Path("/var/lib/ca-connector")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_datadir() == tmp_path / "user" / ".local" / "share" / "ca-connector"


# --- several processes -------------------------------------------------------------------------------

_ADD_BACKEND = """
import sys, time
from pathlib import Path
from caconnector.connector.store import ConnectorStore, StoredBackend

datadir, name, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
while not go.exists():
    time.sleep(0.005)
with ConnectorStore(datadir).transaction() as txn:
    time.sleep(0.05)  # widen the window in which an unlocked read-modify-write would lose updates
    txn.put_backend(StoredBackend(name, "local", {"index": int(name[1:])}, {"apikey": "key-of-" + name}))
"""

_HOLD_LOCK = """
import sys, time
from pathlib import Path
from caconnector.connector.store import ConnectorStore

with ConnectorStore(Path(sys.argv[1])).transaction():
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.mark.slow
def test_concurrent_processes_all_keep_their_backend(tmp_path: Path, store: ConnectorStore) -> None:
    go = tmp_path / "go"
    names = [f"b{i}" for i in range(8)]
    procs = [
        subprocess.Popen([sys.executable, "-c", _ADD_BACKEND, str(store.datadir), name, str(go)])
        for name in names
    ]
    try:
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    backends = store.read().backends
    assert list(backends) == names
    for name in names:
        assert backends[name].options == {"index": int(name[1:])}
        assert backends[name].secrets == {"apikey": f"key-of-{name}"}


@pytest.mark.slow
def test_a_lock_held_by_another_process_times_out(store: ConnectorStore) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(store.datadir)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "locked"
            impatient = ConnectorStore(store.datadir, lock_timeout=0.2)
            message = f"data directory {store.datadir} is locked by another ca-connector command; try again"
            started = time.monotonic()
            with pytest.raises(StoreError) as info, impatient.transaction():
                pass
            assert str(info.value) == message
            assert time.monotonic() - started < 5
            with pytest.raises(StoreError, match="is locked by another"):
                impatient.read()
        finally:
            holder.kill()
            holder.wait()
    # Killing the holder released its lock, and it wrote nothing.
    with store.transaction() as txn:
        txn.put_backend(aws())
    assert list(store.read().backends) == ["corp-aws"]
