"""Handler of `ca-connector update`; the rules are in `updater`."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from caconnector.connector import output, updater
from caconnector.connector.cli.common import CommandError, UsageError, datadir_of, store_of


def cmd_update(args: argparse.Namespace) -> Any:
    scratch: list[Path] = []
    try:
        return _update(args, scratch)
    except updater.UpdateError as exc:
        raise CommandError(str(exc)) from None
    finally:
        for directory in scratch:
            shutil.rmtree(directory, ignore_errors=True)


def _update(args: argparse.Namespace, scratch: list[Path]) -> Any:
    current = updater.current_version()
    store = store_of(args)
    if args.file:
        package = Path(args.file)
        if not package.is_file():
            raise UsageError(f"-file: {package} is not a file")
        offered = updater.package_version(package)
        source = str(package)
    else:
        if not args.check and not updater.installed_from_package():
            raise CommandError(
                "this ca-connector was not installed from the Debian package (it runs from "
                f"{sys.prefix}); update it the way it was installed (pip install -U caconnector)"
            )
        into = None if args.check else updater.scratch_dir()
        scratch.extend([into] if into else [])
        offer, downloaded = updater.download(store, into, newer_than=current)
        offered, source = offer.version, offer.url
        package = downloaded if downloaded is not None else Path()
    view: dict[str, Any] = {"current": str(current), "offered": str(offered), "source": source}
    if offered <= current:
        return {**view, "updated": False}, f"up to date: this is {current}, {source} offers {offered}"
    if args.check:
        return {**view, "updated": False}, f"a newer version is offered: {offered} (this is {current})"
    updater.package_version(package)  # the file is the package it claims to be
    updater.install(package)
    started = updater.ensure_running(datadir_of(args))
    output.log_event(store, "updated", previous=str(current), version=str(offered), source=source)
    return {**view, "updated": True}, f"updated {current} -> {offered}\n{started}"
