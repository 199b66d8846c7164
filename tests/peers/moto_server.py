"""moto's server as the AWS peer of the acmpca tests: real HTTP on a loopback port, started once per test
process, with helpers that set up CAs the way an AWS administrator would (through the API).

moto signs for real (it issues certificates from the CSR with its own CA key) but always uses an RSA key
for its CAs, ignores IdempotencyToken, Validity and SigningAlgorithm, issues synchronously, and has no
audit reports; those paths are covered with botocore's Stubber instead.
"""

from __future__ import annotations

import atexit
import logging
import threading
from dataclasses import dataclass
from typing import Any

import boto3
import botocore
import httpx
import moto
from cryptography import x509
from moto.acmpca.models import acmpca_backends
from moto.server import ThreadedMotoServer

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
# What a test gives as credentials; moto accepts any key.
ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ROOT_TEMPLATE = "arn:aws:acm-pca:::template/RootCACertificate/V1"


@dataclass(frozen=True)
class MotoCA:
    arn: str
    certificate: x509.Certificate


@dataclass
class MotoPeer:
    url: str
    server: ThreadedMotoServer

    def reset(self) -> None:
        """Forget every resource of every service, so each test starts from an empty account."""
        httpx.post(f"{self.url}/moto-api/reset", trust_env=False, timeout=10).raise_for_status()

    def client(self, service: str, region: str = REGION) -> Any:
        session = boto3.session.Session(
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY, region_name=region
        )
        return session.client(service, endpoint_url=self.url)

    def pending_ca(self, common_name: str = "Moto Pending CA", region: str = REGION) -> str:
        """A root CA (RSA_2048, as moto's keys always are) still PENDING_CERTIFICATE: its ARN."""
        arn: str = self.client("acm-pca", region).create_certificate_authority(
            CertificateAuthorityConfiguration={
                "KeyAlgorithm": "RSA_2048",
                "SigningAlgorithm": "SHA256WITHRSA",
                "Subject": {"CommonName": common_name, "Organization": "Test Org"},
            },
            CertificateAuthorityType="ROOT",
        )["CertificateAuthorityArn"]
        return arn

    def active_ca(self, common_name: str = "Moto Root CA", region: str = REGION) -> MotoCA:
        """A root CA made ACTIVE as an administrator would: its CSR issued with the root template by the
        CA itself, and the certificate imported."""
        arn = self.pending_ca(common_name, region)
        pca = self.client("acm-pca", region)
        csr = pca.get_certificate_authority_csr(CertificateAuthorityArn=arn)["Csr"]
        issued = pca.issue_certificate(
            CertificateAuthorityArn=arn,
            Csr=csr.encode(),
            SigningAlgorithm="SHA256WITHRSA",
            Validity={"Value": 3650, "Type": "DAYS"},
            TemplateArn=ROOT_TEMPLATE,
        )["CertificateArn"]
        pem = pca.get_certificate(CertificateAuthorityArn=arn, CertificateArn=issued)["Certificate"]
        pca.import_certificate_authority_certificate(CertificateAuthorityArn=arn, Certificate=pem.encode())
        return MotoCA(arn=arn, certificate=x509.load_pem_x509_certificate(pem.encode()))

    # -- moto's own state, read in-process: what the CA stored, not what our client was told --------

    def issued_arns(self, ca_arn: str, region: str = REGION) -> list[str]:
        """Certificate ARNs the CA issued, without the CA's own (self-issued) certificate."""
        authority = acmpca_backends[ACCOUNT][region].certificate_authorities[ca_arn]
        own = authority.certificate
        return [
            arn
            for arn, pem in authority.issued_certificates.items()
            if x509.load_pem_x509_certificate(pem) != own
        ]

    def revocations(self, ca_arn: str, region: str = REGION) -> dict[str, str]:
        """Serial as received -> RevocationReason, as moto recorded RevokeCertificate calls."""
        authority = acmpca_backends[ACCOUNT][region].certificate_authorities[ca_arn]
        return {serial: r["revocation_reason"] for serial, r in authority.revoked_certificates.items()}


_PEER: MotoPeer | None = None
_LOCK = threading.Lock()


def moto_peer() -> MotoPeer:
    """The process's moto server, started on first use on a free loopback port and stopped at exit
    (test modules share it: starting moto takes a second)."""
    global _PEER  # noqa: PLW0603  (one server per test process, by design)
    with _LOCK:
        if _PEER is None:
            _check_protocol()
            # moto logs every request through werkzeug; the tests read results, not that log.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            server.start()
            host, port = server.get_host_and_port()
            _PEER = MotoPeer(url=f"http://{host}:{port}", server=server)
            atexit.register(server.stop)
        return _PEER


def _check_protocol() -> None:
    """moto reads acm-pca requests as JSON; a botocore that speaks CBOR to acm-pca gets 500s back."""
    model = boto3.session.Session(region_name=REGION).client("acm-pca").meta.service_model
    protocol = getattr(model, "resolved_protocol", model.protocol)
    if protocol != "json":
        raise RuntimeError(
            f"botocore {botocore.__version__} talks {protocol} to acm-pca, which moto {moto.__version__} "
            "cannot read; install the boto3/moto pair pinned in pyproject.toml's dev extra"
        )
