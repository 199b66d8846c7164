"""What the CLI's handler modules share: the two error kinds and their exit codes, and the data directory
named by -datadir."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from caconnector.cliparse import CommandError, UsageError
from caconnector.connector.store import ConnectorStore, default_datadir

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
    datadir = getattr(args, "datadir", None)
    return Path(datadir).expanduser() if datadir else default_datadir()


def store_of(args: argparse.Namespace) -> ConnectorStore:
    return ConnectorStore(datadir_of(args))
