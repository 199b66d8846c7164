"""Secret options without the secret on the command line, where shell history and /proc/PID/cmdline keep it.

A secret option takes its value as written, or:

- `-`: one line from standard input (the trailing newline dropped); only one option per command may;
- `@FILE`: the content of FILE (one trailing newline dropped);
- `@@...`: the literal value `@...` (a secret that starts with `@`; or pipe it in with `-`).

Which options are secret is read from the config models' markers (`backends.configs`) plus the proxy
password, here and nowhere else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from caconnector.backends.configs import BUILTIN_CONFIGS
from caconnector.connector.cli.common import UsageError

STDIN = "-"
PROXY_PASSWORD = "proxypassword"  # noqa: S105  (an option name, not a password)

HELP = (
    "secret options ({options}) take the value as written, '-' to read it from standard input (one "
    "line; one option per command), or @FILE to read it from a file; write a value that starts with @ "
    "as @@... (or give it on standard input). File options ({files}) take a path, or '-' to read the "
    "file from standard input"
)


def secret_options() -> list[str]:
    """Every option name a backend type marks secret, in declaration order, then the proxy password."""
    names: dict[str, None] = {}
    for model in BUILTIN_CONFIGS.values():
        # File options (-key, -cakey) take a path, or - for standard input; the file is the secret.
        names.update(
            dict.fromkeys(f for f in model.model_fields if model.is_secret(f) and not model.is_file(f))
        )
    names[PROXY_PASSWORD] = None
    return list(names)


def file_options() -> list[str]:
    names: dict[str, None] = {}
    for model in BUILTIN_CONFIGS.values():
        names.update(dict.fromkeys(f for f in model.model_fields if model.is_file(f)))
    return list(names)


def help_text(options: Iterable[str]) -> str:
    return HELP.format(
        options=" ".join(f"-{o}" for o in options), files=" ".join(f"-{o}" for o in file_options())
    )


def check_single_stdin(args: argparse.Namespace, options: Iterable[str]) -> None:
    """Standard input holds one value: refuse two options that both ask for it before reading any."""
    dashes = [f"-{o}" for o in options if getattr(args, o, None) == STDIN]
    if len(dashes) > 1:
        raise UsageError(
            f"{' and '.join(dashes)} both read standard input; give only one of them as '-' "
            "and the others as @FILE"
        )


def resolve(option: str, value: str, *, stdin: TextIO | None = None) -> str:
    """The secret an option's value stands for (see the module's doc)."""
    if value == STDIN:
        line = (stdin or sys.stdin).readline()
        secret = line.removesuffix("\n").removesuffix("\r")
        if not secret:
            raise UsageError(
                f"-{option} -: standard input is empty; pipe the secret in "
                f"(e.g. from a password manager), or use -{option} @FILE"
            )
        return secret
    if value.startswith("@@"):
        return value[1:]
    if value.startswith("@"):
        return _read(option, value[1:])
    return value


def _read(option: str, path: str) -> str:
    if not path:
        raise UsageError(f"-{option} @: give a file name after @ (@FILE), or write a literal @ as @@")
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-{option}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"-{option}: {path} is not a UTF-8 text file") from None
    secret = text.removesuffix("\n").removesuffix("\r")
    if not secret:
        raise UsageError(f"-{option}: {path} is empty; put the secret in it, on one line")
    return secret
