"""Plain words for FastAPI's request validation errors: where the problem is (a body field's path, a
query or path parameter), what is wrong, and for a missing or non-JSON body what the body must hold.

Never echoes the input: a body may hold a CSR, a token or a password."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from caconnector.protocol.text import clip

_PLACES = {"query": "query parameter", "path": "path parameter", "header": "header", "cookie": "cookie"}
_NOT_AN_OBJECT = {"model_attributes_type", "dict_type", "model_type"}


def body_fields(model: Any) -> str:
    """`reason (optional), wait (optional)`: what a JSON body of `model` holds."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    names = [
        f"{name}{'' if info.is_required() else ' (optional)'}" for name, info in model.model_fields.items()
    ]
    return ", ".join(names)


def _shape(model: Any) -> str:
    fields = body_fields(model)
    return f"a JSON object with the fields {fields}" if fields else "a JSON object"


def _path(parts: Sequence[Any]) -> str:
    """('items', 0, 'name') -> items[0].name. A part can be a key the caller sent: clipped, so the
    answer stays printable, encodable and short."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f"{'.' if text else ''}{clip(str(part), 32)}"
    return text


def describe(error: dict[str, Any], model: Any) -> str:
    loc, kind, message = tuple(error.get("loc", ())), error.get("type", ""), error.get("msg", "invalid")
    where, rest = (loc[0], loc[1:]) if loc else ("body", ())
    if where != "body":
        return f"{_PLACES.get(str(where), str(where))} {_path(rest)}: {message}"
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        at = f" at character {rest[0]}" if rest and isinstance(rest[0], int) else ""
        return f"the body is not valid JSON ({reason}{at}); send {_shape(model)}"
    if not rest:
        return _whole_body(error, model)
    if kind == "extra_forbidden":
        return f"{_path(rest)}: unknown field; the body holds {body_fields(model) or 'no fields'}"
    return f"{_path(rest)}: {message}"


def _whole_body(error: dict[str, Any], model: Any) -> str:
    """A problem with the body as a whole rather than one of its fields."""
    kind = error.get("type", "")
    if kind == "missing":
        return f"a JSON body is required (Content-Type: application/json): {_shape(model)}"
    if kind not in _NOT_AN_OBJECT:
        return f"body: {error.get('msg', 'invalid')}"
    if isinstance(error.get("input"), bytes | str):  # not sent as JSON (no or another Content-Type)
        return f"the body is not JSON; send Content-Type: application/json and {_shape(model)}"
    return f"the body must be {_shape(model)}"


def summary(errors: Iterable[dict[str, Any]], model: Any) -> str:
    """Each problem once, in the order found."""
    return "; ".join(dict.fromkeys(describe(e, model) for e in errors))
