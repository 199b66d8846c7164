"""Adding, changing, removing and opening configured backends: the rules, without any CLI parsing.

The CLI reads files and prints; this module validates, provisions and stores. A backend reaches the
store only complete and valid, in one transaction, so a failed `backend add` leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from caconnector.backends.base import Backend, BackendContext, CheckResult
from caconnector.backends.configs import BackendConfig
from caconnector.backends.errors import AuthError, BackendError, ConfigError
from caconnector.backends.registry import load_type, type_info
from caconnector.connector.store import ConnectorStore, StoredBackend


class InvalidOptions(ConfigError):
    """The options given for a backend do not validate; `problems` lists one line per option."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"backend {name!r}: {p}" for p in problems))


class BackendNotFound(ConfigError):
    pass


@dataclass(frozen=True)
class OpenedBackend:
    stored: StoredBackend
    config: BackendConfig
    backend: Backend


def describe_validation_error(model: type[BackendConfig], error: ValidationError) -> list[str]:
    """Turn pydantic's errors into operator lines that name the CLI option and what it expects."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        field = str(item["loc"][0]) if item["loc"] else None
        message = str(item["msg"]).removeprefix("Value error, ")
        if field is None:
            problems.append(message)
        elif item["type"] == "missing":
            description = model.model_fields[field].description or ""
            problems.append(f"-{field} is required for -type {model.type_name} ({description})")
        else:
            problems.append(f"-{field}: {message}")
    return problems


def validate_config(name: str, type_name: str, values: dict[str, Any]) -> BackendConfig:
    model = type_info(type_name).config_model
    unknown = sorted(set(values) - set(model.model_fields))
    if unknown:
        accepted = " ".join(f"-{f}" for f in model.model_fields)
        raise InvalidOptions(
            name, [f"-{f} is not an option of -type {type_name} (its options: {accepted})" for f in unknown]
        )
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidOptions(name, describe_validation_error(model, exc)) from None


def _context(store: ConnectorStore, name: str) -> BackendContext:
    return BackendContext(name=name, state_dir=store.backend_state_dir(name))


def _stored(name: str, config: BackendConfig) -> StoredBackend:
    return StoredBackend(
        name=name, type=config.type_name, options=config.public_values(), secrets=config.secret_values()
    )


def add_backend(store: ConnectorStore, name: str, type_name: str, values: dict[str, Any]) -> StoredBackend:
    """Validate, check the type can run here, provision (the local CA makes its key), then store at once."""
    config = validate_config(name, type_name, values)
    factory = load_type(type_name)
    if name in store.read().backends:
        raise ConfigError(
            f"backend {name!r} already exists; change it with backend update, or remove it first"
        )
    config = factory.provision(config, _context(store, name))
    stored = _stored(name, config)
    with store.transaction() as txn:
        # Checked again under the lock: another command may have added the same name meanwhile.
        if name in txn.backends:
            raise ConfigError(
                f"backend {name!r} already exists; change it with backend update, or remove it first"
            )
        txn.put_backend(stored)
    return stored


def config_of(stored: StoredBackend) -> BackendConfig:
    model = type_info(stored.type).config_model
    try:
        return model.model_validate({**stored.options, **stored.secrets})
    except ValidationError as exc:
        problems = describe_validation_error(model, exc)
        raise ConfigError(
            f"backend {stored.name!r}: its stored configuration is no longer valid ({'; '.join(problems)}); "
            "fix it with backend update"
        ) from None


def _merged_config(current: StoredBackend, values: dict[str, Any]) -> BackendConfig:
    """The config `backend update` would store: the current one with `values` changed, validated."""
    model = type_info(current.type).config_model
    merged = {**current.options, **current.secrets}
    fixed = [
        f
        for f, v in values.items()
        if f in model.model_fields and model.is_immutable(f) and merged.get(f) != v
    ]
    if fixed:
        raise InvalidOptions(
            current.name,
            [f"-{f} cannot be changed after backend add; remove the backend and add it again" for f in fixed],
        )
    return validate_config(current.name, current.type, {**merged, **values})


def open_updated(store: ConnectorStore, name: str, values: dict[str, Any]) -> OpenedBackend:
    """The backend as `backend update` would leave it, opened but not stored, so it can be checked
    before the working configuration is replaced."""
    current = get_backend(store, name)
    config = _merged_config(current, values)
    backend = load_type(current.type).open(config, _context(store, name))
    return OpenedBackend(current, config, backend)


def update_backend(store: ConnectorStore, name: str, values: dict[str, Any]) -> StoredBackend:
    with store.transaction() as txn:
        current = txn.backends.get(name)
        if current is None:
            raise BackendNotFound(_not_found(name, list(txn.backends)))
        config = _merged_config(current, values)
        load_type(current.type)
        stored = _stored(name, config)
        txn.put_backend(stored)
    return stored


@dataclass(frozen=True)
class CheckOutcome:
    """What `check()` said: the result when Available, the typed error when not."""

    result: CheckResult | None
    error: BackendError | None

    @property
    def status(self) -> Literal["Available", "Offline"]:
        # The wire's words (protocol.messages.BackendReport.status), shown as they are sent.
        return "Available" if self.error is None else "Offline"

    @property
    def refused(self) -> bool:
        """The CA refused the credentials or the configuration: retrying the same settings cannot help
        (unlike a CA that is unreachable or busy now)."""
        return isinstance(self.error, AuthError | ConfigError)


def check(backend: Backend) -> CheckOutcome:
    try:
        return CheckOutcome(backend.check(), None)
    except BackendError as exc:
        return CheckOutcome(None, exc)


def remove_backend(store: ConnectorStore, name: str) -> None:
    with store.transaction() as txn:
        if name not in txn.backends:
            raise BackendNotFound(_not_found(name, list(txn.backends)))
        txn.remove_backend(name)


def get_backend(store: ConnectorStore, name: str) -> StoredBackend:
    backends = store.read().backends
    stored = backends.get(name)
    if stored is None:
        raise BackendNotFound(_not_found(name, list(backends)))
    return stored


def open_backend(store: ConnectorStore, name: str) -> OpenedBackend:
    return open_stored(store, get_backend(store, name))


def open_stored(store: ConnectorStore, stored: StoredBackend) -> OpenedBackend:
    """Open a backend from its stored entry (read by the caller, as the agent's BackendCache does)."""
    name = stored.name
    config = config_of(stored)
    backend = load_type(stored.type).open(config, _context(store, name))
    return OpenedBackend(stored, config, backend)


def _not_found(name: str, existing: list[str]) -> str:
    known = f"configured backends: {', '.join(existing)}" if existing else "no backend is configured yet"
    return f"no backend named {name!r} ({known}); add one with backend add -name {name} -type TYPE"
