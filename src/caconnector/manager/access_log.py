"""uvicorn's access log without the connectors' successful polls.

A poll is the channel's heartbeat: every connector sends one per wait (30 s), so 5,000 connectors
would write 167 access lines a second that say only "still there". Those lines are left out; a poll
refused or failed (status 400 and up) is still logged, and every poll is counted in /metrics
(`ca_manager_http_requests_total{route="/connector/v1/poll"}`).
"""

from __future__ import annotations

import logging

from caconnector.protocol import messages

ACCESS_LOGGER = "uvicorn.access"
# uvicorn's access record: (client address, method, path with query, HTTP version, status).
_FIELDS = 5
_LOGGED_FROM_STATUS = 400


class _WithoutAnsweredPolls(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or len(args) != _FIELDS:
            return True
        path, status = args[2], args[4]
        if not isinstance(path, str) or not isinstance(status, int):
            return True
        return not (path.partition("?")[0] == messages.POLL_PATH and status < _LOGGED_FROM_STATUS)


def leave_out_answered_polls() -> None:
    """Install the filter on uvicorn's access logger (once; after uvicorn configured its logging)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(existing, _WithoutAnsweredPolls) for existing in logger.filters):
        logger.addFilter(_WithoutAnsweredPolls())
