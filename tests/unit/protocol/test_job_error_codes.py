"""The job error codes are one contract: every backend error carries one, the connector maps every
failure to one in `error_body`, the manager's retry policy decides every one, and the wire strings are
today's exactly (a renamed member must not change what an older manager or connector reads)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import caconnector.backends
from caconnector.backends.errors import BackendError, Transient
from caconnector.connector.jobs import InvalidJob, error_body
from caconnector.connector.store import StoreError
from caconnector.manager.services.retry import ON_ERROR
from caconnector.pki.errors import PKIError
from caconnector.protocol.errors import JobErrorCode
from caconnector.protocol.messages import ErrorBody

# The strings on the wire before the enum existed; peers of other versions read exactly these.
WIRE_CODES = {
    "backend_error",
    "config_error",
    "auth_error",
    "rejected",
    "not_supported",
    "transient",
    "invalid_job",
    "internal_error",
    "invalid_result",
    "undeliverable",
}


def _backend_error_classes() -> list[type[BackendError]]:
    # Import every backend module, so a subclass defined in one of them is seen too.
    for module in pkgutil.walk_packages(caconnector.backends.__path__, "caconnector.backends."):
        importlib.import_module(module.name)
    found: list[type[BackendError]] = []
    todo: list[type[BackendError]] = [BackendError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_the_wire_strings_are_unchanged() -> None:
    assert {code.value for code in JobErrorCode} == WIRE_CODES


@pytest.mark.parametrize("cls", _backend_error_classes(), ids=lambda cls: cls.__name__)
def test_every_backend_error_class_has_a_code_and_error_body_sends_it(cls: type[BackendError]) -> None:
    assert isinstance(cls.code, JobErrorCode)
    # Built without its own __init__ (subclasses take other arguments): error_body reads only the
    # attributes every BackendError has.
    exc = cls.__new__(cls)
    BackendError.__init__(exc, "it went wrong")
    if isinstance(exc, Transient):
        exc.retry_after = None
    body = error_body(exc)
    assert body.code is cls.code
    assert body.retryable is cls.retryable
    assert body.message == "it went wrong"


def test_every_code_has_a_retry_decision() -> None:
    assert set(ON_ERROR) == set(JobErrorCode)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (InvalidJob("no such CA"), JobErrorCode.INVALID_JOB),
        (PKIError("not a CSR"), JobErrorCode.REJECTED),
        (StoreError("no such backend"), JobErrorCode.CONFIG_ERROR),
        (KeyError("secret-value"), JobErrorCode.INTERNAL_ERROR),
    ],
)
def test_error_body_maps_every_other_failure_to_a_code(exc: Exception, code: JobErrorCode) -> None:
    body = error_body(exc)
    assert body.code is code
    assert "secret-value" not in body.message  # a foreign exception is named by its type only


def test_transient_carries_retry_after() -> None:
    body = error_body(Transient("throttled", retry_after=30))
    assert (body.code, body.retryable, body.retry_after) == (JobErrorCode.TRANSIENT, True, 30)


def test_known_codes_read_as_members_and_unknown_codes_are_kept_as_sent() -> None:
    known = ErrorBody.model_validate_json('{"code": "rejected", "message": "m"}')
    assert known.code is JobErrorCode.REJECTED
    newer = ErrorBody.model_validate_json('{"code": "quota_exceeded", "message": "m", "retryable": true}')
    assert newer.code == "quota_exceeded"
    assert not isinstance(newer.code, JobErrorCode)
    # The JSON written is the JSON read, for both.
    assert known.model_dump_json() == '{"code":"rejected","message":"m","retryable":false,"retry_after":null}'
    assert newer.model_dump(mode="json")["code"] == "quota_exceeded"
