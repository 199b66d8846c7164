"""MS-ICPR CertServerRequest, MS-CSRA RevokeCertificate and MS-WCCE GetCACert: the structures we send
and read, round-tripped through impacket's NDR encoding (what goes on the wire), and what each answer
means to the backend."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID
from impacket.dcerpc.v5 import icpr

from caconnector.backends.errors import AuthError, Rejected, Transient
from caconnector.backends.msca.config import split_account
from caconnector.backends.msca.csra import RevokeCertificate, build_revoke, check_result
from caconnector.backends.msca.rpc import (
    CR_IN_FORMATANY,
    attributes_blob,
    build_request,
    ca_chain,
    parse_response,
)
from caconnector.backends.msca.transport import Outcome
from caconnector.backends.msca.wcce import (
    GETCERT_CASIGCERT,
    GetCACert,
    GetCACertResponse,
    build_get_ca_cert,
    read_ca_cert,
)
from caconnector.pki.revocation import RevocationReason


def _certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issued")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip


def _blob(data: bytes) -> icpr.CERTTRANSBLOB:
    blob = icpr.CERTTRANSBLOB()
    blob["cb"] = len(data)
    blob["pb"] = data
    return blob


def _response(
    request_id: int, disposition: int, *, cert: bytes = b"", chain: bytes = b"", message: str = ""
) -> icpr.CertServerRequestResponse:
    response = icpr.CertServerRequestResponse()
    response["pdwRequestId"] = request_id
    response["pdwDisposition"] = disposition
    response["pctbCert"] = _blob(chain)
    response["pctbEncodedCert"] = _blob(cert)
    response["pctbDispositionMessage"] = _blob((message + "\x00").encode("utf-16le") if message else b"")
    # What the server sends, read back as impacket reads an answer.
    return icpr.CertServerRequestResponse(response.getData())


def test_a_new_request_carries_the_ca_the_template_and_the_der_blob() -> None:
    wrapped = b"\x30\x82\x01\x00" + bytes(range(256))
    sent = icpr.CertServerRequest(build_request("corp-ISSUING-CA", wrapped, "WebServer").getData())
    assert sent["dwFlags"] == CR_IN_FORMATANY
    assert sent["pwszAuthority"] == "corp-ISSUING-CA\x00"
    assert sent["pdwRequestId"] == 0
    assert b"".join(sent["pctbRequest"]["pb"]) == wrapped
    attributes = b"".join(sent["pctbAttribs"]["pb"]).decode("utf-16le")
    assert attributes == "CertificateTemplate:WebServer\x00"
    assert sent["pctbAttribs"]["cb"] == len(attributes_blob("WebServer"))


def test_asking_again_sends_the_request_id_and_no_blob() -> None:
    sent = icpr.CertServerRequest(build_request("corp-ISSUING-CA", b"", None, 42).getData())
    assert (sent["pdwRequestId"], sent["dwFlags"], sent["pctbRequest"]["cb"]) == (42, 0, 0)


def test_dispositions_issued_pending_and_denied() -> None:
    certificate = _certificate()
    issued = parse_response(
        _response(17, 3, cert=certificate.public_bytes(serialization.Encoding.DER), message="Issued")
    )
    assert (issued.outcome, issued.request_id, issued.certificate) == (Outcome.ISSUED, 17, certificate)
    pending = parse_response(_response(18, 5, message="Taken Under Submission"))
    assert (pending.outcome, pending.request_id, pending.message) == (
        Outcome.PENDING,
        18,
        "Taken Under Submission",
    )
    message = (
        "Denied by Policy Module  0x80094012, The permissions on the certificate template do not allow it."
    )
    denied = parse_response(_response(19, 2, message=message))
    assert (denied.outcome, denied.request_id, denied.message) == (Outcome.DENIED, 19, message)
    # A failure code without a message is still named.
    assert "0x80094004" in parse_response(_response(0, 0x80094004)).message


def test_the_ca_chain_comes_as_pkcs7_in_pctbcert() -> None:
    certificate = _certificate()
    chain = pkcs7.serialize_certificates([certificate], serialization.Encoding.DER)
    assert ca_chain(_response(0, 0x80094004, chain=chain)) == [certificate]


def test_accounts_split_into_domain_and_user() -> None:
    assert split_account("CORP\\svc") == ("CORP", "svc")
    assert split_account("svc@corp.example") == ("corp.example", "svc")
    assert split_account("svc") == ("", "svc")
    assert split_account(None) == ("", "")


@pytest.mark.parametrize("reason", list(RevocationReason))
def test_revoke_certificate_carries_the_serial_and_the_rfc5280_reason(reason: RevocationReason) -> None:
    sent = RevokeCertificate(build_revoke("corp-ISSUING-CA", "61000000123abc", reason).getData())
    assert sent["pwszAuthority"] == "corp-ISSUING-CA\x00"
    assert sent["pwszSerialNumber"] == "61000000123abc\x00"
    assert sent["Reason"] == reason.code
    assert (sent["FileTime"]["dwLowDateTime"], sent["FileTime"]["dwHighDateTime"]) == (0, 0)  # now
    assert RevokeCertificate.opnum == 10


def test_reason_codes_are_rfc5280s() -> None:
    assert RevocationReason.KEY_COMPROMISE.code == 1
    assert RevocationReason.CERTIFICATE_HOLD.code == 6
    assert RevocationReason.PRIVILEGE_WITHDRAWN.code == 9
    assert RevocationReason.AA_COMPROMISE.code == 10


def test_revoke_results() -> None:
    check_result("b", 0, "1a")
    with pytest.raises(AuthError, match="Issue and Manage Certificates"):
        check_result("b", 0x80070005, "1a")
    with pytest.raises(Rejected, match="no certificate with serial 1a"):
        check_result("b", 0x80070002, "1a")


def test_an_issued_answer_carries_its_chain_from_pctbcert() -> None:
    issuer, leaf = _certificate(), _certificate()
    chain = pkcs7.serialize_certificates([leaf, issuer], serialization.Encoding.DER)
    issued = parse_response(_response(20, 3, cert=leaf.public_bytes(serialization.Encoding.DER), chain=chain))
    assert issued.chain == (issuer,)


def test_get_ca_cert_asks_for_the_signing_certificate_and_reads_it() -> None:
    sent = GetCACert(build_get_ca_cert("corp-ISSUING-CA").getData())
    assert (sent["fchain"], sent["pwszAuthority"]) == (GETCERT_CASIGCERT, "corp-ISSUING-CA\x00")
    assert GetCACert.opnum == 4
    certificate = _certificate()
    answer = GetCACertResponse()
    answer["pctbOut"] = _blob(certificate.public_bytes(serialization.Encoding.DER))
    answer["ErrorCode"] = 0
    assert read_ca_cert("b", GetCACertResponse(answer.getData())) == certificate
    answer["ErrorCode"] = 0x80094011
    with pytest.raises(Transient, match="0x80094011"):
        read_ca_cert("b", GetCACertResponse(answer.getData()))
