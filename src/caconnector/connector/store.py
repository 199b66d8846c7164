"""The connector's data directory: its configuration, its encrypted secrets, and per-backend state.

Layout of a data directory D::

    D/config.toml       schema_version, [backends.<name>] and [sections.<name>] tables (no secret values)
    D/secrets.json      the secret values, each sealed with AES-256-GCM (see `secretbox`)
    D/secret.key        the 32-byte key, mode 0600 ($CA_CONNECTOR_KEY_FILE puts it elsewhere)
    D/.lock             serializes ca-connector commands that change the directory
    D/backends/<name>/  state a backend keeps for itself (a local CA's key, an ACME account, ...)
    D/logs/             rotating logs

Every change goes through `ConnectorStore.transaction()`: an exclusive lock, a full load, and on success
a write of both files through temporary files and `os.replace`, so readers and crashes only ever see a
complete old or a complete new file.

There is no OS key store on the Linux hosts the connector targets (no desktop keyring on a server), so
the key lives in a file only its owner can read, as the architecture allows; backing up the data
directory therefore means backing up the key file too.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import filelock
import tomli_w

from caconnector.pki.secretbox import KEY_SIZE, SecretBox, SecretBoxError, generate_key

__all__ = [
    "MIGRATIONS",
    "SECRETS_MIGRATIONS",
    "ConnectorStore",
    "StoreError",
    "StoreSnapshot",
    "StoreTransaction",
    "StoredBackend",
    "default_datadir",
]

HOME_ENV = "CA_CONNECTOR_HOME"
KEY_FILE_ENV = "CA_CONNECTOR_KEY_FILE"

CONFIG_FILE = "config.toml"
SECRETS_FILE = "secrets.json"
KEY_FILE = "secret.key"
LOCK_FILE = ".lock"
BACKENDS_DIR = "backends"

# Keys of a [backends.<name>] or [sections.<name>] table that are not option values. `secret_fields`
# lists the table's secrets held in secrets.json, so a config entry names every secret it relies on
# and a missing one is reported instead of silently reading as "not set".
_TYPE_KEY = "type"
_SECRET_FIELDS_KEY = "secret_fields"  # noqa: S105 - the name of a TOML key, not a password
_RESERVED_BACKEND_KEYS = frozenset({_TYPE_KEY, _SECRET_FIELDS_KEY})
_RESERVED_SECTION_KEYS = frozenset({_SECRET_FIELDS_KEY})

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CONFIG_HEADER = (
    "# ca-connector configuration. Secret values are not here: they are encrypted in secrets.json.\n"
    "# Change it with ca-connector commands; a hand edit is read back, comments are not kept.\n\n"
)
_TOML_SCALARS = (str, int, float, bool, datetime.date, datetime.time)  # datetime is a date


class StoreError(Exception):
    """The data directory cannot be used as it is; the message names the problem and the fix."""


def default_datadir() -> Path:
    """Where the data directory is when none is given on the command line."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    if os.name == "nt":  # where the Windows service keeps it, as the reference product does
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "ca-connector"
    if os.geteuid() == 0:
        return Path("/var/lib/ca-connector")
    return Path.home() / ".local" / "share" / "ca-connector"


# --- schema migrations -------------------------------------------------------------------------------


def _same_layout(document: dict[str, Any]) -> dict[str, Any]:
    # Version 0 is a file written before schema_version existed; its layout is version 1's. Keeping
    # the step in the table means the migration path runs (and is tested) from the first release on.
    return document


# Each function turns a document of version n into version n + 1; the loader sets schema_version
# after each step. Documents are migrated in memory on load and written back by the next commit.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _same_layout}
SECRETS_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _same_layout}


# --- the data model ----------------------------------------------------------------------------------


@dataclass
class StoredBackend:
    """One configured backend as stored: its type, its non-secret options and its secrets in clear."""

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict)
    # Decrypted values, in memory only; kept out of repr() so a log line or traceback cannot leak them.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        hidden = ", ".join(sorted(self.secrets))
        return (
            f"StoredBackend(name={self.name!r}, type={self.type!r}, options={self.options!r}, "
            f"secrets=<hidden: {hidden}>)"
        )


@dataclass
class _State:
    backends: dict[str, StoredBackend] = field(default_factory=dict)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    section_secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    # The sealed entries the on-disk config.toml refers to, exactly as read. A commit keeps them in its
    # first write of secrets.json; see ConnectorStore._commit for why.
    sealed_on_disk: dict[str, dict[str, str]] = field(default_factory=dict)


class StoreSnapshot:
    """A read-only copy of the data directory's configuration and secrets."""

    def __init__(self, state: _State) -> None:
        self._state = state

    @property
    def backends(self) -> Mapping[str, StoredBackend]:
        """The configured backends by name, sorted; copies, so changing one changes nothing stored."""
        backends = self._state.backends
        return MappingProxyType({name: copy.deepcopy(backends[name]) for name in sorted(backends)})

    def section(self, name: str) -> dict[str, Any]:
        """The non-secret values of the top-level table `name` (empty if there is none); a copy."""
        return copy.deepcopy(self._state.sections.get(name, {}))

    def section_secrets(self, name: str) -> dict[str, str]:
        """The secret values of the top-level table `name`, decrypted (empty if there is none)."""
        return dict(self._state.section_secrets.get(name, {}))


class StoreTransaction(StoreSnapshot):
    """The data directory under an exclusive lock; changes are written when the transaction ends."""

    def __init__(self, state: _State, datadir: Path) -> None:
        super().__init__(state)
        self._datadir = datadir
        self._removed: set[str] = set()
        self._open = True

    def put_backend(self, backend: StoredBackend) -> None:
        """Add the backend, or replace the one of the same name. Options set to None are dropped."""
        self._check_open()
        _check_name(backend.name, "backend")
        if not isinstance(backend.type, str) or not backend.type:
            raise ValueError(f"backend {backend.name!r}: the type must be a non-empty string")
        where = f"backend {backend.name!r}"
        options = _clean_values(backend.options, where, _RESERVED_BACKEND_KEYS)
        secrets = _clean_secrets(backend.secrets, where, options)
        self._state.backends[backend.name] = StoredBackend(backend.name, backend.type, options, secrets)

    def remove_backend(self, name: str) -> None:
        """Remove the backend; its state directory is deleted once the transaction has been written."""
        self._check_open()
        if name not in self._state.backends:
            raise StoreError(f"no backend named {name!r} is configured in data directory {self._datadir}")
        del self._state.backends[name]
        self._removed.add(name)

    def set_section(self, name: str, values: dict[str, Any], secrets: dict[str, str] | None = None) -> None:
        """Replace the top-level table `name` with `values` and `secrets` (None: no secrets).

        None values are dropped; a section left with no values and no secrets is removed.
        """
        self._check_open()
        _check_name(name, "section")
        where = f"section {name!r}"
        clean = _clean_values(values, where, _RESERVED_SECTION_KEYS)
        clean_secrets = _clean_secrets(secrets or {}, where, clean)
        self._state.sections.pop(name, None)
        self._state.section_secrets.pop(name, None)
        if clean:
            self._state.sections[name] = clean
        if clean_secrets:
            self._state.section_secrets[name] = clean_secrets

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError("this store transaction has ended; start a new one")


# --- validation of what goes in ----------------------------------------------------------------------


def _check_name(name: object, kind: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"{kind} name {name!r} is not valid: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _clean_values(values: Mapping[str, Any], where: str, reserved: frozenset[str]) -> dict[str, Any]:
    """A deep copy of `values` without None values, after checking TOML can store it as it is."""
    clean: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where}: option names must be non-empty strings, not {key!r}")
        if key in reserved:
            raise ValueError(f"{where}: {key!r} is reserved by the store and cannot be an option name")
        if value is not None:
            clean[key] = _clean_value(value, f"{where}: option {key!r}")
    return clean


def _clean_value(value: Any, where: str) -> Any:
    # Only what TOML represents natively, so what is read back equals what was put.
    if isinstance(value, _TOML_SCALARS):
        return value
    if isinstance(value, list | tuple):
        if any(item is None for item in value):
            raise ValueError(f"{where}: a list cannot hold None (TOML has no null)")
        return [_clean_value(item, where) for item in value]
    if isinstance(value, Mapping):
        return _clean_values(value, where, frozenset())
    raise ValueError(
        f"{where}: a {type(value).__name__} cannot be stored; use a string, number, bool or list"
    )


def _clean_secrets(secrets: Mapping[str, str], where: str, options: Mapping[str, Any]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in secrets.items():
        # The field name becomes part of the entry name "backends/<name>/<field>".
        if not isinstance(key, str) or not key or "/" in key:
            raise ValueError(f"{where}: secret names must be non-empty strings without '/', not {key!r}")
        if not isinstance(value, str):
            # ValueError like every other refusal here, so callers catch one exception type.
            raise ValueError(  # noqa: TRY004
                f"{where}: secret {key!r} must be a string, not a {type(value).__name__}"
            )
        if key in _RESERVED_BACKEND_KEYS:
            raise ValueError(f"{where}: {key!r} is reserved by the store and cannot be a secret name")
        if key in options:
            raise ValueError(f"{where}: {key!r} cannot be both an option and a secret")
        clean[key] = value
    return clean


# --- the store ---------------------------------------------------------------------------------------


class ConnectorStore:
    """The connector's data directory. Creating one does not touch the disk."""

    SCHEMA_VERSION: ClassVar[int] = 1

    def __init__(self, datadir: Path, *, lock_timeout: float = 30.0, key_file: Path | None = None) -> None:
        self.datadir = datadir
        self.lock_timeout = lock_timeout
        env_key = os.environ.get(KEY_FILE_ENV)
        if key_file is None:
            key_file = Path(env_key).expanduser() if env_key else datadir / KEY_FILE
        self.key_file = key_file

    @property
    def config_path(self) -> Path:
        return self.datadir / CONFIG_FILE

    @property
    def secrets_path(self) -> Path:
        return self.datadir / SECRETS_FILE

    def backend_state_dir(self, name: str) -> Path:
        """Where backend `name` keeps its own state (not created here)."""
        # Checked so that a name can never point outside backends/ (this path is deleted on removal).
        _check_name(name, "backend")
        return self.datadir / BACKENDS_DIR / name

    def read(self) -> StoreSnapshot:
        """Load the configuration and secrets under the lock and return a read-only copy."""
        if not self.datadir.is_dir():
            # A fresh installation: nothing configured, and reading must not create anything.
            return StoreSnapshot(_State())
        # The lock is needed even to read: a commit replaces two files one after the other, and reading
        # them in between could pair a config with the secrets of another moment.
        with self._locked():
            return StoreSnapshot(self._load())

    def transaction(self) -> contextlib.AbstractContextManager[StoreTransaction]:
        """Lock the data directory, load it, and yield a transaction to change it.

        On normal exit everything is written; if the block raises, nothing is.
        """
        return self._transaction()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[StoreTransaction]:
        self._make_datadir()
        with self._locked():
            self._remove_stale_temp_files()
            txn = StoreTransaction(self._load(), self.datadir)
            try:
                yield txn
            finally:
                txn._open = False
            self._commit(txn._state)
            self._remove_state_dirs(name for name in sorted(txn._removed) if name not in txn._state.backends)

    # --- locking and directories ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = filelock.FileLock(self.datadir / LOCK_FILE, timeout=self.lock_timeout, mode=0o600)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise StoreError(
                f"data directory {self.datadir} is locked by another ca-connector command; try again"
            ) from None
        except OSError as exc:
            raise _os_error("cannot lock", self.datadir / LOCK_FILE, exc) from None
        try:
            yield
        finally:
            lock.release()

    def _make_datadir(self) -> None:
        if self.datadir.is_dir():
            return
        try:
            self.datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkdir's mode passes through the umask, which could leave the owner without access.
            self.datadir.chmod(0o700)
        except OSError as exc:
            raise _os_error("cannot create the data directory", self.datadir, exc) from None

    def _remove_stale_temp_files(self) -> None:
        # Under the lock no other writer exists, so a temporary file is what a killed command left.
        for name in (CONFIG_FILE, SECRETS_FILE, KEY_FILE):
            for stale in self.datadir.glob(f".{name}.*.tmp"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def _remove_state_dirs(self, names: Iterable[str]) -> None:
        for name in names:
            path = self.backend_state_dir(name)
            try:
                shutil.rmtree(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(
                    f"backend {name!r} was removed, but its state directory {path} could not be deleted "
                    f"({exc.strerror or exc}); delete it by hand"
                ) from None

    # --- loading -------------------------------------------------------------------------------------

    def _load(self) -> _State:
        config = self._read_config()
        entries = self._read_secret_entries()
        state = _State()
        wanted: dict[str, tuple[str, str, str]] = {}  # entry name -> (kind, owner, field)

        for name, table in config.get("backends", {}).items():
            options = dict(table)
            backend_type = options.pop(_TYPE_KEY)
            fields = options.pop(_SECRET_FIELDS_KEY, [])
            state.backends[name] = StoredBackend(name, backend_type, options, {})
            wanted.update({f"backends/{name}/{f}": ("backends", name, f) for f in fields})
        for name, table in config.get("sections", {}).items():
            values = dict(table)
            fields = values.pop(_SECRET_FIELDS_KEY, [])
            if values:
                state.sections[name] = values
            wanted.update({f"sections/{name}/{f}": ("sections", name, f) for f in fields})

        missing = sorted(set(wanted) - set(entries))
        if missing:
            raise StoreError(
                f"{self.config_path} refers to secret {missing[0]!r}, "
                f"which {self.secrets_path} does not hold; "
                "restore both files (and the key file) from the same backup"
            )
        if not wanted:
            return state  # no secrets in use: the key file is not needed, and need not exist yet

        box = SecretBox(self._read_key())
        for entry, (kind, owner, secret_field) in sorted(wanted.items()):
            sealed = entries[entry]
            try:
                value = box.open(entry, sealed)
            except SecretBoxError as exc:
                raise StoreError(
                    f"cannot decrypt {entry!r} in {self.secrets_path} ({exc}): the key file {self.key_file} "
                    "does not match the secrets, or the file was altered; restore the matching key file"
                ) from None
            state.sealed_on_disk[entry] = sealed
            if kind == "backends":
                state.backends[owner].secrets[secret_field] = value
            else:
                state.section_secrets.setdefault(owner, {})[secret_field] = value
        return state

    def _read_config(self) -> dict[str, Any]:
        path = self.config_path
        raw = self._read_file(path)
        if raw is None:
            return {}
        try:
            document = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise StoreError(
                f"{path} is not valid TOML (not UTF-8: {exc}); fix it or restore it from a backup"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise StoreError(
                f"{path} is not valid TOML ({exc}); fix it or restore it from a backup"
            ) from None
        document = self._migrate(path, document, MIGRATIONS)
        _check_config(path, document)
        return document

    def _read_secret_entries(self) -> dict[str, dict[str, str]]:
        path = self.secrets_path
        raw = self._read_file(path)
        if raw is None:
            return {}
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path} is not valid JSON ({exc}); restore it from a backup") from None
        if not isinstance(document, dict):
            raise StoreError(f"{path} is not a secrets file (no top-level object); restore it from a backup")
        document = self._migrate(path, document, SECRETS_MIGRATIONS)
        entries = document.get("entries", {})
        if not isinstance(entries, dict) or not all(
            isinstance(sealed, dict) and all(isinstance(v, str) for v in sealed.values())
            for sealed in entries.values()
        ):
            raise StoreError(f"{path} has malformed entries; restore it from a backup")
        return entries

    def _migrate(
        self,
        path: Path,
        document: dict[str, Any],
        migrations: Mapping[int, Callable[[dict[str, Any]], dict[str, Any]]],
    ) -> dict[str, Any]:
        version = document.get("schema_version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise StoreError(f"{path} has an invalid schema_version {version!r}; restore it from a backup")
        if version > self.SCHEMA_VERSION:
            raise StoreError(
                f"data directory {self.datadir} was written by a newer ca-connector (schema {version}, "
                f"this version understands up to {self.SCHEMA_VERSION}); upgrade ca-connector"
            )
        while version < self.SCHEMA_VERSION:
            document = migrations[version](document)
            version += 1
            document["schema_version"] = version
        return document

    def _read_file(self, path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _os_error("cannot read", path, exc) from None

    def _read_key(self) -> bytes:
        path = self.key_file
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise StoreError(
                f"the key file {path} is missing, so the secrets in {self.secrets_path} cannot be decrypted; "
                f"restore it from a backup, or set {KEY_FILE_ENV} if it is kept elsewhere"
            ) from None
        except OSError as exc:
            raise _os_error("cannot read the key file", path, exc) from None
        try:
            # fstat on the open descriptor, so the mode checked is that of the file actually read.
            mode = os.fstat(fd).st_mode & 0o777
            if mode & 0o077:
                raise StoreError(
                    f"the key file {path} can be read by other users (mode {mode:04o}); "
                    f"run `chmod 600 {path}` and check who may have copied it"
                )
            key = os.read(fd, KEY_SIZE + 1)
        finally:
            os.close(fd)
        if len(key) != KEY_SIZE:
            raise StoreError(
                f"the key file {path} is not a {KEY_SIZE}-byte key, so the key does not match the secrets "
                f"in {self.secrets_path}; restore the matching key file"
            )
        return key

    def _read_or_create_key(self) -> bytes:
        if self.key_file.exists():
            return self._read_key()
        path = self.key_file
        key = generate_key()
        # Written complete under a temporary name, then hard-linked into place: link() fails if the
        # name exists, so of two processes creating the key only one wins (the other then reads the
        # winner's key), and no reader ever sees a half-written key. Both files are made with os.open
        # and mode 0600, never a plain open() that would leave the key readable under a loose umask.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                _owned_like_directory(fd, path.parent)
                os.write(fd, key)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return self._read_key()
            _fsync_dir(path.parent)
        except OSError as exc:
            raise _os_error("cannot create the key file", path, exc) from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return key

    # --- committing ----------------------------------------------------------------------------------

    def _commit(self, state: _State) -> None:
        plain: dict[str, str] = {}
        for name, backend in state.backends.items():
            plain.update({f"backends/{name}/{f}": v for f, v in backend.secrets.items()})
        for name, secrets in state.section_secrets.items():
            plain.update({f"sections/{name}/{f}": v for f, v in secrets.items()})
        sealed: dict[str, dict[str, str]] = {}
        if plain:
            box = SecretBox(self._read_or_create_key())
            sealed = {entry: box.seal(entry, value) for entry, value in sorted(plain.items())}

        # Two files cannot be replaced at once, so the order is chosen so that the config.toml on disk
        # never names a secret that secrets.json lacks, whenever a crash strikes:
        #  1. secrets.json := the new entries plus the entries the *old* config.toml names. Both the old
        #     and the new config.toml find all their secrets in it.
        #  2. config.toml := the new config. From here on the new config is in force.
        #  3. secrets.json := the new entries only, dropping what only the old config needed (a removed
        #     backend's credentials) and any orphans an earlier crash left.
        # A crash before 2 leaves the old config, complete; a crash between 2 and 3 leaves unreferenced
        # entries, which the next commit drops. The one blur: a secret changed in this commit may pair
        # with the old options if the crash falls between 1 and 2; re-running the command fixes that.
        superset = {**state.sealed_on_disk, **sealed}
        self._write(self.secrets_path, _secrets_document(superset))
        self._write(self.config_path, _config_document(state))
        if superset.keys() != sealed.keys():
            try:
                self._write(self.secrets_path, _secrets_document(sealed))
            except StoreError as exc:
                raise StoreError(
                    f"the changes were saved, but old secrets stay in {self.secrets_path} until the next "
                    f"change ({exc})"
                ) from None
        state.sealed_on_disk = sealed

    def _write(self, path: Path, data: bytes) -> None:
        try:
            _write_atomic(path, data)
        except OSError as exc:
            raise _os_error("cannot write", path, exc) from None


# --- file formats and helpers ------------------------------------------------------------------------


def _check_config(path: Path, document: dict[str, Any]) -> None:
    """Refuse a config.toml whose shape this version cannot load faithfully (usually a hand edit)."""

    def bad(problem: str) -> StoreError:
        return StoreError(f"{path}: {problem}; fix it or restore it from a backup")

    for key in document:
        if key not in {"schema_version", "backends", "sections"}:
            raise bad(f"unknown top-level key {key!r} (other settings belong under [sections.<name>])")
    for kind, reserved in (("backends", _RESERVED_BACKEND_KEYS), ("sections", _RESERVED_SECTION_KEYS)):
        tables = document.get(kind, {})
        if not isinstance(tables, dict):
            raise bad(f"{kind!r} must be a table")
        for name, table in tables.items():
            if not isinstance(table, dict) or not _NAME_RE.fullmatch(name):
                raise bad(f"[{kind}.{name}] is not a table with a valid name")
            if _TYPE_KEY in reserved and not (isinstance(table.get(_TYPE_KEY), str) and table[_TYPE_KEY]):
                raise bad(f"[{kind}.{name}] has no type")
            fields = table.get(_SECRET_FIELDS_KEY, [])
            if not isinstance(fields, list) or not all(
                isinstance(f, str) and f and "/" not in f for f in fields
            ):
                raise bad(f"[{kind}.{name}] {_SECRET_FIELDS_KEY} must be a list of names")


def _config_document(state: _State) -> bytes:
    document: dict[str, Any] = {"schema_version": ConnectorStore.SCHEMA_VERSION}
    backends: dict[str, Any] = {}
    for name in sorted(state.backends):
        backend = state.backends[name]
        table: dict[str, Any] = {_TYPE_KEY: backend.type}
        table.update(sorted(backend.options.items()))
        if backend.secrets:
            table[_SECRET_FIELDS_KEY] = sorted(backend.secrets)
        backends[name] = table
    sections: dict[str, Any] = {}
    for name in sorted(state.sections.keys() | state.section_secrets.keys()):
        table = dict(sorted(state.sections.get(name, {}).items()))
        if state.section_secrets.get(name):
            table[_SECRET_FIELDS_KEY] = sorted(state.section_secrets[name])
        sections[name] = table
    if backends:
        document["backends"] = backends
    if sections:
        document["sections"] = sections
    # Multi-line strings keep PEM certificates readable, but TOML readers turn a CR LF inside them into
    # LF; a document holding a CR is written with escaped strings instead, so values read back exactly.
    multiline = not _contains_cr(document)
    return (_CONFIG_HEADER + tomli_w.dumps(document, multiline_strings=multiline)).encode("utf-8")


def _contains_cr(value: Any) -> bool:
    if isinstance(value, str):
        return "\r" in value
    if isinstance(value, dict):
        return any(_contains_cr(k) or _contains_cr(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_cr(v) for v in value)
    return False


def _secrets_document(entries: Mapping[str, dict[str, str]]) -> bytes:
    document = {"schema_version": ConnectorStore.SCHEMA_VERSION, "entries": dict(sorted(entries.items()))}
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a reader or a crash sees either the old or the new file."""
    # mkstemp creates the file with O_EXCL and mode 0600, in the same directory so os.replace is a rename.
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        _owned_like_directory(fd, path.parent)
        with os.fdopen(fd, "wb") as tmp_file:
            tmp_file.write(data)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    # The rename is durable only once the directory entry is on disk.
    _fsync_dir(path.parent)


def _owned_like_directory(fd: int, directory: Path) -> None:
    """Root writing into a directory another user owns (the package's service user) gives the new file
    to that user before it takes its name, so the agent never meets a file it cannot read."""
    if os.name == "nt" or os.geteuid() != 0:
        return
    info = directory.stat()
    if info.st_uid != 0:
        os.fchown(fd, info.st_uid, info.st_gid)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_error(action: str, path: Path, exc: OSError) -> StoreError:
    reason = exc.strerror or str(exc)
    return StoreError(f"{action} {path}: {reason}; check its owner, permissions and free disk space")
