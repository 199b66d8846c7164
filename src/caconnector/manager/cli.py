"""`ca-manager`: the central service's command line. Only help and version exist in this version; the
commands below are the interface the next releases fill in (see cli.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from caconnector import __version__

PROG = "ca-manager"

PLANNED = {
    "quickstart": "manager + a connector + a local CA on embedded defaults, then a first certificate",
    "serve": "run the manager (REST API and UI)",
    "db": "database migrations (db upgrade)",
    "admin": "administrator accounts (admin create)",
    "apikey": "API keys (apikey create)",
    "connector": "connectors (add, list, show, restore, delete)",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The certificate manager's central service.",
        epilog="commands (not available in this version yet):\n"
        + "\n".join(f"  {name:<12} {text}" for name, text in PLANNED.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("command", nargs="?", metavar="COMMAND")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command in (None, "help"):
        parser.print_help()
        return 0
    if args.command == "version":
        print(f"{PROG} {__version__}")
        return 0
    if args.command in PLANNED:
        print(f"{PROG}: {args.command!r} is not available in this version of {PROG}", file=sys.stderr)
        return 1
    print(f"{PROG}: unknown command {args.command!r}; run {PROG} help", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
