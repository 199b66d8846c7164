"""Command-line parsing shared by `ca-connector` and `ca-manager`: the reference document's `-option value`
spelling next to `--option value`, exact option names only, and usage errors raised (exit 2) rather than
printed and exited by argparse. Imports nothing else of ours, so both programs may use it.

How the two programs end (errors as text and as a JSON document, a closed stdout) is in `cliexit`."""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

_OPTION_LIKE = re.compile(r"-[^\d.]")  # what argparse takes for an option rather than a value like -1


class UsageError(Exception):
    """A command line that cannot be run as written (exit 2)."""


class CommandError(Exception):
    """A command that ran and failed (exit 1). `code` is the machine name a -json error document
    carries (see `cliexit`): `failed` unless the command knows better."""

    def __init__(self, message: str, *, code: str = "failed") -> None:
        super().__init__(message)
        self.code = code


class Parser(argparse.ArgumentParser):
    """argparse with exact option names only; errors name the command's help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self._setup: Callable[[Parser], None] | None = None

    def defer(self, setup: Callable[[Parser], None]) -> None:
        """Declare this command's options only when it is parsed or its help shown: options derived
        from modules that are slow to import (the backends' config models) then cost nothing to the
        other commands and to `-h`."""
        self._setup = setup

    def _ready(self) -> None:
        setup, self._setup = self._setup, None
        if setup is not None:
            setup(self)

    def format_help(self) -> str:
        self._ready()
        return super().format_help()

    def format_usage(self) -> str:
        self._ready()
        return super().format_usage()

    def help_for(self, topic: Sequence[str]) -> str:
        """The help of the command `topic` names (`help backend add`): both programs' `help` command."""
        current: argparse.ArgumentParser = self
        for word in topic:
            subparsers = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
            if not subparsers or word not in subparsers[0].choices:
                raise UsageError(f"help: no command {' '.join(topic)!r}; run {self.prog} help for the list")
            current = subparsers[0].choices[word]
        return current.format_help()

    def error(self, message: str) -> NoReturn:
        program, *command = self.prog.split()
        raise UsageError(f"{self.prog}: {message} (see: {' '.join([program, 'help', *command])})")

    # Single-dash long options (`-name`) make argparse's prefix matching and short-flag grouping
    # surprising: `-na` would mean `-name`, `-hx` would mean `-h x`. Scripts need exact names.
    def _get_option_tuples(self, option_string: str) -> list[tuple[Any, ...]]:
        return []

    def _all_option_strings(self) -> Iterator[str]:
        """Every option of this parser and of the commands below it: what a typo may have meant."""
        self._ready()
        yield from self._option_string_actions
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in dict.fromkeys(action.choices.values()):
                    if isinstance(sub, Parser):
                        yield from sub._all_option_strings()

    def _unknown_option(self, unknown: list[str]) -> NoReturn:
        """Name the unknown option(s) and, where one is close to a real option, the likely meant one."""
        known = sorted(set(self._all_option_strings()))
        message = f"unrecognized arguments: {' '.join(unknown)}"
        name = unknown[0].split("=", 1)[0]
        if self._subparsers is not None and name in known:
            self.error(f"{name} goes after the command ({self.prog} COMMAND ... {name})")
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        if close and self._subparsers is not None:
            self.error(f"unknown option {name}; did you mean {close[0]}?")
        if close:
            self.error(f"{message} (did you mean {close[0]}?)")
        self.error(message)

    def _options_before_command(self, args: Sequence[str]) -> list[str]:
        """The unknown options in front of the command word. Without this, argparse skips `-nmae`
        and reports its value as an invalid command ("invalid choice: 'x'")."""
        unknown = []
        index = 0
        while index < len(args):
            arg = args[index]
            if arg == "--" or not _OPTION_LIKE.match(arg):
                break  # the command word: its own parser checks the rest
            action = self._option_string_actions.get(arg.split("=", 1)[0])
            if action is None:
                unknown.append(arg)
                break
            takes_value = action.nargs is None or action.nargs == 1
            index += 2 if takes_value and "=" not in arg else 1
        return unknown

    # typeshed declares overloads for namespace subclasses; these CLIs only ever pass None.
    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._ready()
        # argparse reports a missing required option before an unknown one, so a typo (`-nam`) would
        # read "-name is required"; name the typo first. Only a command's own parser knows its options.
        if args is not None:
            if self._subparsers is None:
                unknown = [
                    a
                    for a in args
                    if _OPTION_LIKE.match(a) and a.split("=", 1)[0] not in self._option_string_actions
                ]
            else:
                unknown = self._options_before_command(args)
            if unknown:
                self._unknown_option(unknown)
        return super().parse_known_args(args, namespace)


def opt(parser: argparse.ArgumentParser, name: str, **kwargs: Any) -> None:
    """Declare `-name` and `--name` as one option (dest with `_` for `-`)."""
    parser.add_argument(f"-{name}", f"--{name}", dest=name.replace("-", "_"), **kwargs)
