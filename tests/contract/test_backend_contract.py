"""The contract every backend type keeps, run through the connector's real `JobRunner` against each type's
peer (see conftest.py): what a job gives back, and what the CA then holds."""

from __future__ import annotations

import pytest
from cryptography import x509
from tests.contract.conftest import BACKEND, ContractPeer, job

from caconnector.backends import errors
from caconnector.backends.errors import BackendError
from caconnector.protocol.messages import JobKind, JobOutcome, JobResult, PendingBody

# The backend error tree: every class a backend raises (subclasses elsewhere refine one of these).
ERROR_CLASSES = sorted(
    (
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, BackendError) and value is not BackendError
    ),
    key=lambda cls: cls.__name__,
)


def _ok(result: JobResult) -> dict[str, object]:
    assert result.outcome is JobOutcome.OK, result.error
    assert result.result is not None
    return result.result


def _leaf_of(peer: ContractPeer, body: dict[str, object], name: str) -> x509.Certificate:
    """The issued certificate, checked: it names the host, and it chains up to a CA the backend reports."""
    leaf = x509.load_pem_x509_certificate(str(body["certificate_pem"]).encode())
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in body["chain_pem"]]  # type: ignore[attr-defined]  # a list of PEM strings on the wire
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]
    for child, parent in zip([leaf, *chain], chain, strict=False):
        child.verify_directly_issued_by(parent)  # raises unless signed by the next one up
    report = peer.runner.backend_report(BACKEND)
    assert report.status == "Available", report.error
    reported = {
        x509.load_pem_x509_certificate(ca.certificate_pem.encode()) for ca in report.cas if ca.certificate_pem
    }
    assert reported & set(chain), "the chain holds none of the CAs the backend reports"
    return leaf


def test_enroll_issues_a_certificate_that_chains_to_the_backends_ca(peer: ContractPeer) -> None:
    body = _ok(peer.runner.run(peer.enroll_job("req-issue", "issue.example.test")))
    _leaf_of(peer, body, "issue.example.test")
    assert peer.stored() == 1


def test_a_redelivered_enroll_gives_the_same_certificate_and_the_ca_holds_one(peer: ContractPeer) -> None:
    first = peer.enroll_job("req-redelivered")
    issued = _ok(peer.runner.run(first))
    # The result was lost on the way to the manager: after the lease ran out, the same job came again.
    again = _ok(peer.runner.run(first.model_copy(update={"attempt": 2})))
    assert again == issued
    assert peer.stored() == 1


def test_pending_then_collect_issues(peer: ContractPeer) -> None:
    if peer.can.pend is not None:
        pytest.skip(f"{peer.type_name}: {peer.can.pend}")
    assert peer.pending is not None, f"{peer.type_name} can pend: give its peer a PendingOrder"
    enroll = peer.pending.make()
    waiting = peer.runner.run(enroll)
    assert waiting.outcome is JobOutcome.PENDING, waiting
    body = PendingBody.model_validate(waiting.result)
    # Asked again before the CA finished, the same job still waits on the same order (no second order).
    again = peer.runner.run(enroll.model_copy(update={"attempt": 2}))
    assert again.outcome is JobOutcome.PENDING, again
    assert PendingBody.model_validate(again.result).order_ref == body.order_ref
    peer.pending.finish()
    request_id = str(enroll.payload["request_id"])
    collected = peer.runner.run(
        job(JobKind.COLLECT, {"order_ref": body.order_ref, "request_id": request_id}, "job-collect")
    )
    _leaf_of(peer, _ok(collected), "app.example.test")  # `make` enrolls the default name
    assert peer.stored() == 1


def test_revoke_puts_the_serial_on_the_cas_revoked_list(peer: ContractPeer) -> None:
    if peer.can.revoke is not None:
        pytest.skip(f"{peer.type_name}: {peer.can.revoke}")
    leaf = _leaf_of(peer, _ok(peer.runner.run(peer.enroll_job("req-revoke"))), "app.example.test")
    payload = {"serial": format(leaf.serial_number, "x"), "reason": "keyCompromise", "ca": peer.ca}
    _ok(peer.runner.run(job(JobKind.REVOKE, payload, "job-2")))
    assert peer.revoked() == {leaf.serial_number}


def test_scan_lists_what_the_ca_issued(peer: ContractPeer) -> None:
    if peer.can.scan is not None:
        pytest.skip(f"{peer.type_name}: {peer.can.scan}")
    serials = set()
    for index in range(2):
        body = _ok(
            peer.runner.run(peer.enroll_job(f"req-scan-{index}", f"h{index}.example.test", f"job-{index}"))
        )
        serials.add(x509.load_pem_x509_certificate(str(body["certificate_pem"]).encode()).serial_number)
    scanned = _ok(peer.runner.run(job(JobKind.SCAN, {}, "job-scan")))
    listed = {
        x509.load_pem_x509_certificate(item["certificate_pem"].encode()).serial_number
        for item in scanned["certificates"]  # type: ignore[attr-defined]  # a list of issued bodies on the wire
    }
    assert listed == serials


@pytest.mark.parametrize("error", ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_each_error_class_reaches_the_manager_as_its_wire_code(
    peer: ContractPeer, error: type[BackendError]
) -> None:
    if error in peer.cannot_provoke:
        pytest.skip(f"{peer.type_name}: {peer.cannot_provoke[error]}")
    result = peer.runner.run(peer.provoke[error]())
    assert result.outcome is JobOutcome.ERROR
    assert result.error is not None
    assert (result.error.code, result.error.retryable) == (error.code, error.retryable)
    assert result.error.message
    assert "Traceback" not in result.error.message


def test_every_error_class_is_provoked_or_excused(peer: ContractPeer) -> None:
    # A new error class, or a new backend type, must say how its peer shows each failure (or why it cannot).
    assert set(peer.provoke) | set(peer.cannot_provoke) == set(ERROR_CLASSES)
    assert not set(peer.provoke) & set(peer.cannot_provoke)
