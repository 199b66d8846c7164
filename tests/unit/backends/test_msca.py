"""The msca backend's rules, over an in-memory AD CS transport (the seam `backend.open_transport` builds):
what it refuses before anything is submitted, that a request id is submitted once, and the Enrollment Agent
enrollment's EKU check. The options' validation is here too."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from caconnector.backends.base import EnrollRequest, Issued, Pending
from caconnector.backends.errors import ConfigError, NotSupported, Rejected
from caconnector.backends.msca.backend import MscaBackend
from caconnector.backends.msca.cms import CERTIFICATE_REQUEST_AGENT, parse_on_behalf_of
from caconnector.backends.msca.config import MscaConfig
from caconnector.backends.msca.store import MscaStore
from caconnector.backends.msca.transport import Disposition, Outcome
from caconnector.pki.keys import private_key_pem
from caconnector.testing import make_csr

CA = "corp-ISSUING-CA"
NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)


class MemoryCA:
    """AD CS reduced to its request table: `outcome` decides each new request."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA)])
        self.certificate = self._sign(name, self.key.public_key(), ca=True)
        self.outcome = Outcome.ISSUED
        self.agent_eku = True
        self.submitted: list[tuple[bytes, str]] = []
        self.table: dict[int, Disposition] = {}

    def _sign(
        self,
        subject: x509.Name,
        public_key: Any,
        *,
        ca: bool = False,
        eku: list[x509.ObjectIdentifier] | None = None,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder().subject_name(subject)
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA)]))
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if eku:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def submit(self, request: bytes, template: str) -> Disposition:
        self.submitted.append((request, template))
        request_id = len(self.submitted)
        if self.outcome is Outcome.ISSUED:
            try:
                csr = parse_on_behalf_of(request).csr
            except ValueError:
                csr = x509.load_der_x509_csr(request)
            eku = [CERTIFICATE_REQUEST_AGENT] if self.agent_eku else [ExtendedKeyUsageOID.CLIENT_AUTH]
            answer = Disposition(
                Outcome.ISSUED, request_id, "Issued", self._sign(csr.subject, csr.public_key(), eku=eku)
            )
        else:
            answer = Disposition(self.outcome, request_id, "Taken Under Submission")
        self.table[request_id] = answer
        return Disposition(answer.outcome, request_id, answer.message)  # the certificate is fetched apart

    def retrieve(self, request_id: int) -> Disposition:
        return self.table[request_id]

    def ca_certificates(self) -> list[x509.Certificate]:
        return [self.certificate]


def _config(**values: Any) -> MscaConfig:
    base: dict[str, Any] = {
        "server": "ca01.corp.example",
        "ca": CA,
        "auth": "ntlm",
        "username": "CORP\\svc",
        "password": "pw",
    }
    return MscaConfig.model_validate({**base, **values})


def _backend(tmp_path: Path, ca: MemoryCA, config: MscaConfig) -> MscaBackend:
    return MscaBackend(
        config=config, name="MSCA1", store=MscaStore(tmp_path, "MSCA1"), transport=ca, now=lambda: NOW
    )


def _with_agent(tmp_path: Path, ca: MemoryCA, **values: Any) -> MscaBackend:
    certificate, key = _backend(tmp_path, ca, _config(**values)).enroll_agent(CA)
    return _backend(tmp_path, ca, _config(eacert=certificate, eakey=key, **values))


def test_enroll_without_an_agent_certificate_says_what_to_run(tmp_path: Path) -> None:
    ca = MemoryCA()
    with pytest.raises(ConfigError, match=f"backend msca enroll-agent-cert -name MSCA1 -ca {CA}"):
        _backend(tmp_path, ca, _config()).enroll(
            EnrollRequest(csr=make_csr(), request_id="r1", template="WebServer")
        )
    assert ca.submitted == []


def test_a_request_id_is_submitted_once_and_collected_after(tmp_path: Path) -> None:
    ca = MemoryCA()
    backend = _with_agent(tmp_path, ca)
    ca.outcome = Outcome.PENDING
    request = EnrollRequest(csr=make_csr(), request_id="r1", template="ManagerApproval")
    first = backend.enroll(request)
    assert isinstance(first, Pending)
    again = backend.enroll(request)
    assert isinstance(again, Pending) and again.order_ref == first.order_ref
    assert len(ca.submitted) == 2  # the agent's own request, then this one, once
    approved = ca._sign(make_csr().subject, ca.key.public_key())
    ca.table[int(first.order_ref)] = Disposition(Outcome.ISSUED, int(first.order_ref), "Issued", approved)
    collected = backend.collect(first.order_ref)
    assert isinstance(collected, Issued) and collected.certificate == approved
    assert collected.chain == (ca.certificate,)


def test_requests_need_a_template_and_a_requester(tmp_path: Path) -> None:
    ca = MemoryCA()
    with pytest.raises(Rejected, match="template"):
        _with_agent(tmp_path, ca).enroll(EnrollRequest(csr=make_csr(), request_id="r1"))
    kerberos = _with_agent(tmp_path / "k", ca, auth="kerberos", username=None, password=None)
    with pytest.raises(ConfigError, match="-requester"):
        kerberos.enroll(EnrollRequest(csr=make_csr(), request_id="r2", template="WebServer"))
    with pytest.raises(Rejected, match="reaches the CA"):
        kerberos.enroll(EnrollRequest(csr=make_csr(), request_id="r3", ca="other-CA", template="WebServer"))


def test_an_expired_agent_certificate_is_named(tmp_path: Path) -> None:
    ca = MemoryCA()
    backend = _with_agent(tmp_path, ca)
    later = NOW + dt.timedelta(days=60)
    store = MscaStore(tmp_path, "MSCA1")
    expired = MscaBackend(config=backend._config, name="MSCA1", store=store, transport=ca, now=lambda: later)
    with pytest.raises(ConfigError, match="Enrollment Agent certificate expired"):
        expired.enroll(EnrollRequest(csr=make_csr(), request_id="r1", template="WebServer"))


def test_the_agent_template_must_give_the_certificate_request_agent_eku(tmp_path: Path) -> None:
    ca = MemoryCA()
    ca.agent_eku = False
    with pytest.raises(
        ConfigError, match=r"without the Certificate Request Agent EKU \(1\.3\.6\.1\.4\.1\.311\.20\.2\.1\)"
    ):
        _backend(tmp_path, ca, _config()).enroll_agent(CA, "User")
    assert ca.submitted[0][1] == "User"


def test_scan_is_not_supported_and_show_describes_the_agent(tmp_path: Path) -> None:
    ca = MemoryCA()
    with pytest.raises(NotSupported, match="not supported by AD CS through this backend"):
        _backend(tmp_path, ca, _config()).scan()
    assert _backend(tmp_path, ca, _config()).describe()["enrollment_agent"]["present"] is False
    described = _with_agent(tmp_path, ca).describe()["enrollment_agent"]
    assert described["present"] is True and described["certificate_request_agent_eku"] is True


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"auth": "basic"}, "-auth basic works only with -transport web"),
        ({"auth": "ntlm", "password": None}, "-auth ntlm needs -username and -password"),
        ({"username": "CORP\\a\\b"}, "account name"),
        ({"server": "https://ca01/certsrv"}, "host name"),
        ({"endpoint": "http://ca01.corp.example/certsrv"}, "https://"),
        ({"eacert": "x"}, "-eacert and -eakey go together"),
    ],
)
def test_options_that_cannot_work_are_refused(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        _config(**values)


def test_the_reference_sample_command_validates() -> None:
    config = MscaConfig.model_validate({"server": "SectigoTestCA", "ca": "local-SectigoTestCA-CA"})
    assert (config.transport, config.auth, config.base_url) == (
        "rpc",
        "kerberos",
        "https://SectigoTestCA/certsrv",
    )


def test_an_agent_key_must_match_its_certificate() -> None:
    ca = MemoryCA()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = ca.certificate.public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(ValidationError, match="-eakey does not belong"):
        _config(eacert=pem, eakey=private_key_pem(other).decode())
