"""The access log leaves out answered polls (the connectors' heartbeat) and keeps everything else."""

from __future__ import annotations

import logging

import pytest

from caconnector.manager.access_log import ACCESS_LOGGER, leave_out_answered_polls
from caconnector.protocol import messages


def _access(caplog: pytest.LogCaptureFixture, path: str, status: int) -> bool:
    """Log one line the way uvicorn's access logger does; True when it was written."""
    caplog.clear()
    logging.getLogger(ACCESS_LOGGER).info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "POST", path, "1.1", status
    )
    return any(record.name == ACCESS_LOGGER for record in caplog.records)


def test_answered_polls_are_left_out_and_refused_ones_and_other_requests_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    leave_out_answered_polls()
    leave_out_answered_polls()  # a second serve in one process installs nothing twice
    assert (
        sum(type(f).__name__ == "_WithoutAnsweredPolls" for f in logging.getLogger(ACCESS_LOGGER).filters)
        == 1
    )
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        assert not _access(caplog, messages.POLL_PATH, 200)
        assert not _access(caplog, f"{messages.POLL_PATH}?trace=1", 200)
        assert _access(caplog, messages.POLL_PATH, 401)  # a refusal is worth a line
        assert _access(caplog, messages.POLL_PATH, 503)
        assert _access(caplog, messages.INVENTORY_PATH, 204)
        assert _access(caplog, "/api/v1/certificates", 201)
