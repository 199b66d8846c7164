"""What the CLI's handler modules share: the two error kinds and their exit codes, and the data directory
named by -datadir."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caconnector import cliexit
from caconnector.cliparse import CommandError, UsageError

if TYPE_CHECKING:
    from caconnector.connector.store import ConnectorStore

__all__ = ["PROG", "CommandError", "CommandFailed", "UsageError", "datadir_of", "store_of"]

PROG = "ca-connector"


class CommandFailed(CommandError):
    """A command that failed but still has a result to print (the steps of test-connection)."""

    def __init__(
        self, message: str, view: Any, text: str, *, code: str = "failed", exit_code: int = 1
    ) -> None:
        super().__init__(message, code=code)
        self.view = view
        self.text = text
        self.exit_code = exit_code


def datadir_of(args: argparse.Namespace) -> Path:
    from caconnector.connector.store import default_datadir  # noqa: PLC0415  (lazy: fast -h)

    datadir = getattr(args, "datadir", None)
    return Path(datadir).expanduser() if datadir else default_datadir()


def store_of(args: argparse.Namespace) -> ConnectorStore:
    from caconnector.connector.store import ConnectorStore  # noqa: PLC0415  (lazy: fast -h)

    return ConnectorStore(datadir_of(args))


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """An exception class, if its module is loaded: an error of a module never imported cannot have
    been raised, and importing it only to say so would slow every command down."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _is(exc: BaseException, module: str, *names: str) -> bool:
    return any((cls := _loaded(module, n)) is not None and isinstance(exc, cls) for n in names)


def error_code(exc: BaseException) -> str:
    """The machine name of an error, for the -json error document (see `cliexit`)."""
    if isinstance(exc, CommandError):
        return exc.code
    if _is(exc, "caconnector.connector.backend_admin", "BackendNotFound"):
        return cliexit.NOT_FOUND
    link = "caconnector.connector.link"
    refused = _is(exc, link, "Refused") and getattr(exc, "status", None) in (401, 403)
    if refused or _is(exc, "caconnector.backends.errors", "AuthError") or _is(exc, link, "ProxyAuthFailed"):
        return cliexit.AUTH
    if _is(exc, "caconnector.backends.errors", "Transient") or _is(exc, link, "ManagerUnreachable"):
        return cliexit.UNREACHABLE
    if _is(exc, "caconnector.backends.errors", "ConfigError") or _is(
        exc, "caconnector.connector.store", "StoreError"
    ):
        return cliexit.CONFIG
    return cliexit.FAILED


# The errors a command reports as one line and exit 1 (module, class): everything else is a bug.
COMMAND_ERRORS = (
    ("caconnector.backends.errors", "BackendError"),
    ("caconnector.connector.store", "StoreError"),
    ("caconnector.connector.registration", "RegistrationError"),
    ("caconnector.connector.agent", "AgentError"),
    ("caconnector.connector.journal", "JournalError"),
    ("caconnector.connector.link", "LinkError"),
)
USAGE_ERRORS = (("caconnector.connector.link_settings", "InvalidSetting"),)


def is_one_of(exc: BaseException, kinds: tuple[tuple[str, str], ...]) -> bool:
    return any(_is(exc, module, name) for module, name in kinds)
