"""Backend types by name: config models for every known type, implementations found by entry point.

Implementations are loaded lazily, so a backend whose SDK is not installed only disables that type,
with a message naming the extra to install (certbot's plugin discovery works the same way).

Entry points and loaded factories are looked up once per process: `importlib.metadata.entry_points()`
reads every installed distribution's metadata (milliseconds, and hundreds of failing `openat` calls),
which the agent would otherwise pay for every job. Installing a plug-in takes a restart, as with
certbot; `clear_cache()` forgets what was found (tests that change the entry points call it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, cast

from caconnector.backends.errors import ConfigError, NotSupported
from caconnector.backends.type_names import BUILTIN_TYPES

if TYPE_CHECKING:
    from caconnector.backends.base import BackendType
    from caconnector.backends.options import BackendConfig

ENTRY_POINT_GROUP = "caconnector.backends"


class UnknownBackendType(ConfigError):
    """No backend type of that name exists at all."""


class BackendTypeUnavailable(NotSupported):
    """The type is known (its options validate) but cannot run here: not in this version, or SDK missing."""


@dataclass(frozen=True)
class BackendTypeInfo:
    name: str
    config_model: type[BackendConfig]
    entry_point: EntryPoint | None


_factories: dict[str, BackendType] = {}
_factories_lock = threading.Lock()


def clear_cache() -> None:
    """Forget the entry points and factories found so far: the next lookup reads the metadata again."""
    _entry_points.cache_clear()
    _known_types.cache_clear()
    with _factories_lock:
        _factories.clear()


@cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        earlier = found.get(ep.name)
        if earlier is not None and earlier.value != ep.value:
            raise ConfigError(
                f"backend type {ep.name!r} is provided twice ({earlier.value} and {ep.value}); "
                "uninstall one of the distributions"
            )
        found[ep.name] = ep
    return found


def availability() -> dict[str, bool]:
    """Every backend type name this installation knows and whether it can run here (has an entry point),
    without loading any config model or implementation."""
    points = _entry_points()
    return {**{name: name in points for name in BUILTIN_TYPES}, **dict.fromkeys(points, True)}


def known_types() -> dict[str, BackendTypeInfo]:
    """Every backend type name this installation knows, built-in or from a plug-in distribution."""
    return dict(_known_types())


@cache
def _known_types() -> dict[str, BackendTypeInfo]:
    from caconnector.backends.configs import BUILTIN_CONFIGS  # noqa: PLC0415  (pydantic: only when needed)

    points = _entry_points()
    infos = {name: BackendTypeInfo(name, model, points.get(name)) for name, model in BUILTIN_CONFIGS.items()}
    for name, ep in points.items():
        if name not in infos:
            # A third-party type brings its own config model on the factory class.
            infos[name] = BackendTypeInfo(name, _load(ep).config_model, ep)
    return infos


def type_info(type_name: str) -> BackendTypeInfo:
    infos = _known_types()
    info = infos.get(type_name)
    if info is None:
        raise UnknownBackendType(f"unknown backend type {type_name!r}; use one of: {', '.join(infos)}")
    return info


def load_type(type_name: str) -> BackendType:
    """The factory for a type, or BackendTypeUnavailable saying why it cannot run here."""
    info = type_info(type_name)
    if info.entry_point is None:
        raise BackendTypeUnavailable(
            f"backend type {type_name!r} is not available in this version of ca-connector; "
            f"available types: {', '.join(n for n, i in known_types().items() if i.entry_point)}"
        )
    with _factories_lock:
        factory = _factories.get(type_name)
    if factory is None:
        # Loaded outside the lock (an SDK import can take a while): two threads racing load it twice,
        # harmlessly, and keep the first.
        factory = _load(info.entry_point)
        with _factories_lock:
            factory = _factories.setdefault(type_name, factory)
    return factory


def _load(ep: EntryPoint) -> BackendType:
    try:
        factory = ep.load()
    except ImportError as exc:
        raise BackendTypeUnavailable(
            f"backend type {ep.name!r} needs optional dependencies that are not installed ({exc.name}); "
            f"install them with: pip install 'caconnector[{ep.name}]'"
        ) from None
    return cast("BackendType", factory() if isinstance(factory, type) else factory)
