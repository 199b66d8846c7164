"""Every wire model, fed arbitrary JSON-ish input (surrogates, controls, huge numbers, NaN, wrong
types): the answer is a model or a pydantic ValidationError, nothing else, and a model that validates
survives a JSON round trip."""

from __future__ import annotations

import contextlib
import inspect
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from caconnector.protocol import messages

MODELS = sorted(
    (
        cls
        for _, cls in inspect.getmembers(messages, inspect.isclass)
        if issubclass(cls, messages.Message) and cls is not messages.Message
    ),
    key=lambda cls: cls.__name__,
)

# Any character at all, lone surrogates and controls included: what json.loads can hand the manager.
_text = st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | _text
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=20,
)


def _objects_for(model: type[messages.Message]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's field names (so validation gets past the first field) and any values."""
    names = list(model.model_fields)
    return st.fixed_dictionaries({}, optional=dict.fromkeys(names, _json)) | st.dictionaries(_text, _json)


def test_every_wire_model_is_covered() -> None:
    assert {m.__name__ for m in MODELS} >= {"RegisterRequest", "PollRequest", "InventoryReport", "JobResult"}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_arbitrary_input_gives_a_model_or_a_validation_error(
    model: type[messages.Message], data: st.DataObject
) -> None:
    value = data.draw(_json | _objects_for(model))
    try:
        parsed = model.model_validate(value)
    except ValidationError:
        return
    # What validates can be sent on: encodable as UTF-8 JSON and read back to the same model.
    wire = parsed.model_dump_json().encode("utf-8")
    assert model.model_validate_json(wire) == parsed
    json.loads(wire)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_give_a_model_or_a_validation_error(
    model: type[messages.Message], raw: bytes
) -> None:
    with contextlib.suppress(ValidationError):
        model.model_validate_json(raw)
