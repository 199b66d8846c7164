"""`<datadir>/agent-state.json`: what the running agent last knew, for `ca-connector status`.

Written whole through a temporary file and a rename, so a reader never sees half a document. It holds
no secret: the state, the last contact, the last error (operator messages), the manager URL, the pid.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from caconnector.connector.output import write_atomic

STATE_FILE = "agent-state.json"


class AgentStatus(enum.StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    REFUSED = "refused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class AgentState:
    pid: int
    state: AgentStatus
    last_contact: dt.datetime | None = None
    last_error: str | None = None
    manager_url: str | None = None
    updated_at: dt.datetime | None = None

    def view(self) -> dict[str, Any]:
        document = asdict(self)
        for key in ("last_contact", "updated_at"):
            if document[key] is not None:
                document[key] = document[key].isoformat()
        document["state"] = self.state.value
        return document

    def process_alive(self) -> bool:
        """Whether the pid that wrote this state is still running (it may be a reused pid)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # it exists, owned by another user
        return True


def write_state(datadir: Path, state: AgentState) -> None:
    data = json.dumps(state.view(), indent=2).encode() + b"\n"
    write_atomic(datadir / STATE_FILE, data, mode=0o644)


def read_state(datadir: Path) -> AgentState | None:
    """The last state written, or None if the agent never ran here (or the file is unreadable)."""
    try:
        document = json.loads((datadir / STATE_FILE).read_text())
        return AgentState(
            pid=int(document["pid"]),
            state=AgentStatus(document["state"]),
            last_contact=_when(document.get("last_contact")),
            last_error=document.get("last_error"),
            manager_url=document.get("manager_url"),
            updated_at=_when(document.get("updated_at")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _when(text: object) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if isinstance(text, str) else None
