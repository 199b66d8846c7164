"""The agent's log: `<datadir>/logs/ca-connector.log` (rotating) and stderr, with secret values scrubbed.

Callers log names, never secret values; the scrubber is the second line of defence for what callers do
not control: a traceback of an unexpected exception whose message happens to quote a credential. It
replaces every known secret (backend secrets, the proxy password, the connector's private key) in the
formatted line, traceback included.
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

from caconnector.connector.output import LOG_NAME
from caconnector.connector.settings import SECRET_MASK

AGENT_LOGGER = "caconnector.connector"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words; no real credential is that short


class Scrubber:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def update(self, secrets: Iterable[str]) -> None:
        pieces: set[str] = set()
        for secret in secrets:
            # A PEM key is scrubbed line by line too: a traceback may quote a single line of it.
            pieces.add(secret)
            pieces.update(line for line in secret.splitlines() if not line.startswith("-----"))
        # Longest first, so a secret containing another is masked whole.
        ordered = sorted((p for p in pieces if len(p.strip()) >= MIN_SECRET_LENGTH), key=len, reverse=True)
        with self._lock:
            self._secrets = tuple(ordered)

    def scrub(self, text: str) -> str:
        with self._lock:
            secrets = self._secrets
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, SECRET_MASK)
        return text


class ScrubbingFormatter(logging.Formatter):
    def __init__(self, scrubber: Scrubber, fmt: str) -> None:
        super().__init__(fmt)
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        return self.scrubber.scrub(super().format(record))


@contextlib.contextmanager
def agent_logging(datadir: Path, scrubber: Scrubber, *, stderr: bool = True) -> Iterator[logging.Logger]:
    """Send the connector's loggers to the log file (and stderr) while the agent runs."""
    logger = logging.getLogger(AGENT_LOGGER)
    log_path = datadir / "logs" / LOG_NAME
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(log_path, maxBytes=5_000_000, backupCount=5, encoding="utf-8")
    ]
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(ScrubbingFormatter(scrubber, "%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate
