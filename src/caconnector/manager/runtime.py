"""Everything a request handler or CLI command needs, built once per app from the settings: the
database, the clock, the sealing key. Passed explicitly; there are no module-level singletons."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from caconnector.manager.db.engine import make_engine, make_sessionmaker
from caconnector.manager.keys import load_or_create_box
from caconnector.manager.settings import Settings
from caconnector.pki.secretbox import SecretBox

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    box: SecretBox
    clock: Clock = field(default=utcnow)

    def now(self) -> dt.datetime:
        return self.clock()


def build_runtime(settings: Settings, clock: Clock = utcnow) -> Runtime:
    engine = make_engine(settings)
    return Runtime(settings, engine, make_sessionmaker(engine), load_or_create_box(settings), clock)
