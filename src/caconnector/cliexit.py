"""How `ca-connector` and `ca-manager` end: an error as one line on stderr and, with `-json`, as one JSON
document on stdout; and a quiet exit when stdout is closed early (`... -json | head -c 1`).

Imports nothing else of ours, so both programs may use it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

# 128 + SIGPIPE: what a shell reports for `cat big | head -c 1`, so `set -o pipefail` scripts see the
# same status from us as from coreutils, and a closed pipe is not mistaken for a command failure (1).
EXIT_BROKEN_PIPE = 141

# The stable machine names of the `code` member of an error document; scripts branch on these.
USAGE = "usage"  # the command line cannot be run as written (exit 2)
NOT_FOUND = "not_found"  # no such backend, connector, user
CONFLICT = "conflict"  # the name is taken, already registered
CONFIG = "config"  # a setting or the data directory is wrong: fix it and run again
AUTH = "auth"  # credentials were refused
UNREACHABLE = "unreachable"  # the CA or the manager could not be reached: try again later
FAILED = "failed"  # anything else that ran and failed
INTERRUPTED = "interrupted"  # Ctrl-C


def json_requested(argv: Sequence[str]) -> bool:
    """Whether the command line asks for JSON, read from the words themselves: a usage error happens
    before there is a parsed namespace to ask."""
    words = list(argv)
    if "--" in words:
        words = words[: words.index("--")]
    return "-json" in words or "--json" in words


def report_error(prog: str, message: str, *, code: str, json_output: bool) -> None:
    """The message on stderr (prefixed with the program's name once) and, with -json, exactly one
    document `{"error": {"code": ..., "message": ...}}` on stdout, so a script never parses prose."""
    text = message if message.startswith(prog) else f"{prog}: {message}"
    if json_output:
        document = {"error": {"code": code, "message": text.removeprefix(f"{prog}: ")}}
        print(json.dumps(document, indent=2))
    print(text, file=sys.stderr)


def quiet_on_closed_stdout(run: Callable[[], int]) -> int:
    """Run a CLI's body; if the reader of stdout went away, exit with 141 and no traceback.

    The recipe of the Python docs (signal.html, "Note on SIGPIPE"): stdout is pointed at /dev/null so
    the interpreter's final flush of what is still buffered cannot raise a second time at exit.
    """
    try:
        code = run()
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    return code


def _stdout_to_devnull() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        # stdout is not a file descriptor (an in-process capture): there is nothing left to flush to.
        pass
    finally:
        os.close(devnull)


# A command's outcome: (the JSON view, the text) to print and exit 0, or an exit code it already reported.
Outcome = tuple[Any, str] | int


def run_main(
    argv: Sequence[str],
    command: Callable[[list[str], bool], Outcome],
    errors: Callable[[Exception, bool], int | None],
    *,
    json_default: Callable[[Any], Any] = str,
) -> int:
    """The loop both programs' `main()` share: run the command (parse, find the handler, run it), print
    its view as one JSON document with -json or its text otherwise, and end with an exit code.

    `errors` reports an exception the user can act on (`report_error`) and returns its exit code, or
    None for a bug, which is raised: a traceback is the only honest report of one. Ctrl-C exits 130.
    """
    words = list(argv)
    json_output = json_requested(words)

    def body() -> int:
        try:
            outcome = command(words, json_output)
        except KeyboardInterrupt:
            return 130
        except Exception as exc:
            code = errors(exc, json_output)
            if code is None:
                raise
            return code
        if isinstance(outcome, int):
            return outcome
        view, text = outcome
        if json_output:
            print(json.dumps(view, indent=2, default=json_default))
        elif text:
            print(text)
        return 0

    return quiet_on_closed_stdout(body)
