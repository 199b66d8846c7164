"""How the CLI shows results and records what it changed: tables, key/value views, atomic file
writes, and the connector's log (which never receives secret values: callers pass names, not options)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from caconnector.connector.store import ConnectorStore

LOG_NAME = "ca-connector.log"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, headers)), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def describe(view: dict[str, Any], indent: int = 0) -> str:
    """A readable key/value rendering of a JSON-able view, nested one level per indent."""
    pad = "  " * indent
    lines = []
    for key, value in view.items():
        if isinstance(value, dict):
            lines.append(f"{pad}{key}:")
            lines.append(describe(value, indent + 1))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{pad}{key}:")
            for item in value:
                lines.append(describe(item, indent + 1))
                lines.append("")
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: {', '.join(map(str, value)) or '-'}")
        else:
            lines.append(f"{pad}{key}: {value}")
    return "\n".join(line for line in lines).rstrip("\n")


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a whole file or nothing: a crash never leaves a truncated certificate behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(mode)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def log_event(store: ConnectorStore, event: str, **fields: Any) -> None:
    """One structured line per change in <datadir>/logs/ca-connector.log (rotating)."""
    logger = logging.getLogger("caconnector.connector.events")
    log_path = store.datadir / "logs" / LOG_NAME
    # One process may work on several data directories (tests, the quickstart): follow the store.
    for old in list(logger.handlers):
        if getattr(old, "baseFilename", None) != str(log_path.absolute()):
            logger.removeHandler(old)
            old.close()
    if not logger.handlers:
        log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = logging.handlers.RotatingFileHandler(log_path, maxBytes=5_000_000, backupCount=5)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logger.info("%s %s", event, json.dumps(fields, sort_keys=True, default=str))
