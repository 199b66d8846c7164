"""Files root writes into a data directory that belongs to another user are given to that user.

The package makes `/var/lib/ca-connector` the `ca-connector` user's, and the service runs the agent as
that user; the operator runs `install`, `backend add`, ... as root. Without this the agent could not read
the `secret.key` or `config.toml` those commands wrote (0600, root's).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def hand_over(datadir: Path) -> None:
    """chown to the data directory's owner everything under it that root owns (root only; else nothing)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    try:
        info = datadir.stat()
    except OSError:
        return
    if info.st_uid == 0:
        return
    for root, directories, files in os.walk(datadir):
        for name in [*directories, *files]:
            path = Path(root) / name
            with contextlib.suppress(OSError):
                if path.lstat().st_uid == 0:
                    os.chown(path, info.st_uid, info.st_gid, follow_symlinks=False)
