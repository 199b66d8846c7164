"""Command-line parsing shared by `ca-connector` and `ca-manager`: the reference document's `-option value`
spelling next to `--option value`, exact option names only, and usage errors raised (exit 2) rather than
printed and exited by argparse. Imports nothing else of ours, so both programs may use it."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any, NoReturn

_OPTION_LIKE = re.compile(r"-[^\d.]")  # what argparse takes for an option rather than a value like -1


class UsageError(Exception):
    """A command line that cannot be run as written (exit 2)."""


class CommandError(Exception):
    """A command that ran and failed (exit 1)."""


class Parser(argparse.ArgumentParser):
    """argparse with exact option names only; errors name the command's help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        program, *command = self.prog.split()
        raise UsageError(f"{self.prog}: {message} (see: {' '.join([program, 'help', *command])})")

    # Single-dash long options (`-name`) make argparse's prefix matching and short-flag grouping
    # surprising: `-na` would mean `-name`, `-hx` would mean `-h x`. Scripts need exact names.
    def _get_option_tuples(self, option_string: str) -> list[tuple[Any, ...]]:
        return []

    # typeshed declares overloads for namespace subclasses; these CLIs only ever pass None.
    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        # argparse reports a missing required option before an unknown one, so a typo (`-nam`) would
        # read "-name is required"; name the typo first. Only a command's own parser knows its options.
        if self._subparsers is None and args is not None:
            unknown = [
                a
                for a in args
                if _OPTION_LIKE.match(a) and a.split("=", 1)[0] not in self._option_string_actions
            ]
            if unknown:
                self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return super().parse_known_args(args, namespace)


def opt(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """Declare `-name` and `--name` as one option (dest with `_` for `-`)."""
    parser.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), **kwargs)
