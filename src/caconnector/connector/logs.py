"""The agent's log: `<datadir>/logs/ca-connector.log` (rotating) and stderr, with secret values scrubbed.

Size, count, level and format (text, or one JSON object a line) come from `[sections.logging]`.

Callers log names, never secret values; the scrubber is the second line of defence for what callers do
not control: a traceback of an unexpected exception whose message happens to quote a credential. It
replaces every known secret (backend secrets, the proxy password, the connector's private key) in the
formatted line, traceback included.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caconnector.connector.link_settings import SECRET_MASK
from caconnector.connector.output import LOG_NAME

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


# The structured fields of the one line per job (workers.py), in the JSON format's key order.
JOB_FIELDS = ("connector", "backend", "job", "kind", "request", "outcome", "duration")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("text", "json")
LOG_SECTION = "logging"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


@dataclass(frozen=True)
class LogSettings:
    """`[sections.logging]` of config.toml: level, format (text or json), max_bytes, backup_count."""

    level: str = "INFO"
    format: str = "text"
    max_bytes: int = 5_000_000  # a file is rotated when it would grow past this
    backup_count: int = 5  # ca-connector.log.1 ... .N are kept

    @classmethod
    def from_section(cls, values: dict[str, Any]) -> tuple[LogSettings, list[str]]:
        """The settings, and a problem per value that could not be used (its default is used instead)."""
        problems: list[str] = []
        chosen: dict[str, Any] = {}
        level = str(values.get("level", cls.level)).upper()
        if level in LEVELS:
            chosen["level"] = level
        else:
            problems.append(f"logging level {values.get('level')!r} is not one of {', '.join(LEVELS)}")
        form = str(values.get("format", cls.format)).lower()
        if form in FORMATS:
            chosen["format"] = form
        else:
            problems.append(f"logging format {values.get('format')!r} is not one of {', '.join(FORMATS)}")
        for key, least in (("max_bytes", 1024), ("backup_count", 1)):
            value = values.get(key, getattr(cls, key))
            if isinstance(value, int) and not isinstance(value, bool) and value >= least:
                chosen[key] = value
            else:
                problems.append(f"logging {key} {value!r} must be a whole number of at least {least}")
        return cls(**chosen), problems


class LogContext(logging.Filter):
    """Adds the connector's name to every record (the agent sets it once it knows its registration)."""

    def __init__(self) -> None:
        super().__init__()
        self.connector = "-"

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "connector"):
            record.connector = self.connector
        return True


class ScrubbingFormatter(logging.Formatter):
    def __init__(self, scrubber: Scrubber, fmt: str) -> None:
        super().__init__(fmt)
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        return self.scrubber.scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a job line's fields as keys."""

    def __init__(self, scrubber: Scrubber) -> None:
        super().__init__()
        self.scrubber = scrubber

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in JOB_FIELDS:
            if hasattr(record, key):
                document[key] = getattr(record, key)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return self.scrubber.scrub(json.dumps(document, default=str))


def _formatter(scrubber: Scrubber, settings: LogSettings) -> logging.Formatter:
    return JsonFormatter(scrubber) if settings.format == "json" else ScrubbingFormatter(scrubber, TEXT_FORMAT)


@contextlib.contextmanager
def agent_logging(
    datadir: Path,
    scrubber: Scrubber,
    *,
    stderr: bool = True,
    settings: LogSettings | None = None,
    context: LogContext | None = None,
) -> Iterator[logging.Logger]:
    """Send the connector's loggers to the log file (and stderr) while the agent runs."""
    settings = settings or LogSettings()
    logger = logging.getLogger(AGENT_LOGGER)
    log_path = datadir / "logs" / LOG_NAME
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(
            log_path, maxBytes=settings.max_bytes, backupCount=settings.backup_count, encoding="utf-8"
        )
    ]
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(_formatter(scrubber, settings))
        if context is not None:
            handler.addFilter(context)
        logger.addHandler(handler)
    previous_level, previous_propagate = logger.level, logger.propagate
    logger.setLevel(settings.level)
    logger.propagate = False
    try:
        yield logger
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(previous_level)
        logger.propagate = previous_propagate
