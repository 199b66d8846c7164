"""The local CA end to end: real keys, real signatures, real SQLite in tmp_path, openssl as the verifier."""

from __future__ import annotations

import datetime as dt
import ipaddress
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from pydantic import SecretStr

from caconnector.backends.base import (
    BackendContext,
    Collector,
    CRLPublisher,
    EnrollRequest,
    RevokeRequest,
    Scanner,
)
from caconnector.backends.configs import LocalConfig
from caconnector.backends.errors import ConfigError, Rejected
from caconnector.backends.local import LocalBackendType
from caconnector.backends.local.backend import LocalCA, parse_subject
from caconnector.pki.keys import PrivateKey, generate_private_key, private_key_pem, signature_hash_for
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial
from caconnector.testing import Clock

CSR_KEY_TYPES = ("rsa-2048", "ec-p256", "ec-p384", "ed25519")


@pytest.fixture(scope="module")
def csr_keys() -> dict[str, PrivateKey]:
    return {key_type: generate_private_key(key_type) for key_type in CSR_KEY_TYPES}


@pytest.fixture
def clock() -> Clock:
    # Real time, so that openssl (which verifies against its own clock) agrees with the certificates.
    return Clock(dt.datetime.now(dt.UTC))


@pytest.fixture
def context(tmp_path: Path, clock: Clock) -> BackendContext:
    return BackendContext(name="lab", state_dir=tmp_path / "state" / "lab", now=clock)


@pytest.fixture
def factory() -> LocalBackendType:
    return LocalBackendType()


@pytest.fixture
def config(factory: LocalBackendType, context: BackendContext) -> LocalConfig:
    return factory.provision(LocalConfig(), context)


@pytest.fixture
def ca(factory: LocalBackendType, config: LocalConfig, context: BackendContext) -> LocalCA:
    return factory.open(config, context)


def make_csr(
    key: PrivateKey,
    *,
    common_name: str | None = "www.example.test",
    sans: Sequence[x509.GeneralName] = (x509.DNSName("www.example.test"),),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, signature_hash_for(key))


def enroll(
    ca: LocalCA,
    csr: x509.CertificateSigningRequest,
    request_id: str = "req-1",
    *,
    template: str | None = None,
    validity_days: int | None = None,
    ca_id: str | None = None,
) -> x509.Certificate:
    request = EnrollRequest(
        csr=csr, request_id=request_id, ca=ca_id, template=template, validity_days=validity_days
    )
    return ca.enroll(request).certificate


def ext(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(cls)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def openssl_verify(
    tmp_path: Path,
    leaf: x509.Certificate,
    trusted: x509.Certificate,
    untrusted: Sequence[x509.Certificate] = (),
    purpose: str | None = None,
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "trusted.pem").write_bytes(pem(trusted))
    (tmp_path / "leaf.pem").write_bytes(pem(leaf))
    args = ["openssl", "verify", "-x509_strict", "-CAfile", str(tmp_path / "trusted.pem")]
    if untrusted:
        (tmp_path / "untrusted.pem").write_bytes(pem(*untrusted))
        args += ["-untrusted", str(tmp_path / "untrusted.pem")]
    if purpose:
        args += ["-purpose", purpose]
    return subprocess.run([*args, str(tmp_path / "leaf.pem")], capture_output=True, text=True, check=False)


def rows(context: BackendContext) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(context.state_dir / "local-ca.sqlite")
    try:
        return connection.execute(
            "SELECT serial, request_id, revoked_at, reason FROM certificates"
        ).fetchall()
    finally:
        connection.close()


def ca_certificate(config: LocalConfig) -> x509.Certificate:
    assert config.cacert is not None
    return x509.load_pem_x509_certificates(config.cacert.encode())[0]


# -- provision --------------------------------------------------------------------------------------------


def test_provision_creates_a_ca_with_defaults(
    config: LocalConfig, context: BackendContext, clock: Clock
) -> None:
    assert config.subject == "CN=lab Local CA"
    assert config.keytype == "ec-p256"
    assert config.days == 3650
    assert config.cakey is not None
    assert config.cakey.get_secret_value().startswith("-----BEGIN PRIVATE KEY-----")
    cert = ca_certificate(config)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    assert cert.serial_number.bit_length() > 64
    assert cert.not_valid_after_utc - clock.now < dt.timedelta(days=3650, seconds=1)
    assert cert.not_valid_after_utc - clock.now > dt.timedelta(days=3650, seconds=-1)
    assert cert.not_valid_before_utc <= clock.now

    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=True, path_length=0)
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert usage.value.digital_signature
    assert not usage.value.key_encipherment
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ski.digest
    # provision is pure: the state directory appears only when the backend is opened.
    assert not context.state_dir.exists()


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        (
            "CN=Corp Local CA,O=Corp,C=DE",
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Corp Local CA"),
                ]
            ),
        ),
        (
            "/C=DE/O=Corp\\/Labs/CN=Corp Local CA",
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp/Labs"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "Corp Local CA"),
                ]
            ),
        ),
    ],
)
def test_provision_with_subject_keytype_and_days(
    factory: LocalBackendType, context: BackendContext, subject: str, expected: x509.Name
) -> None:
    config = factory.provision(LocalConfig(subject=subject, keytype="ed25519", days=30), context)
    cert = ca_certificate(config)
    assert cert.subject == expected
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    assert config.keytype == "ed25519"
    assert config.days == 30
    assert config.subject is not None
    assert parse_subject(config.subject) == expected


def test_provision_of_its_own_output_changes_nothing(
    factory: LocalBackendType, config: LocalConfig, context: BackendContext
) -> None:
    assert factory.provision(config, context) == config


@pytest.mark.parametrize(
    "subject", ["Corp Local CA", "CN=", "CN=a,,O=b", "/CN", "/CN=x/=y", "C=Germany", "   "]
)
def test_bad_subject_is_a_config_error(
    factory: LocalBackendType, context: BackendContext, subject: str
) -> None:
    with pytest.raises(ConfigError, match=r"-subject: .*CN=Corp Local CA,O=Corp") as caught:
        factory.provision(LocalConfig(subject=subject), context)
    assert "backend 'lab'" in caught.value.message


# -- open and check ---------------------------------------------------------------------------------------


def test_open_makes_a_private_state_directory(ca: LocalCA, context: BackendContext) -> None:
    assert stat.S_IMODE(context.state_dir.stat().st_mode) == 0o700
    assert (context.state_dir / "local-ca.sqlite").is_file()


def test_the_local_ca_has_scan_and_crl_but_never_pends(ca: LocalCA) -> None:
    assert isinstance(ca, Scanner)
    assert isinstance(ca, CRLPublisher)
    assert not isinstance(ca, Collector)


def test_check_describes_the_ca(ca: LocalCA, config: LocalConfig) -> None:
    result = ca.check()
    cert = ca_certificate(config)
    (info,) = result.cas
    assert info.id == canonical_serial(cert.serial_number) == ca.id
    assert info.serial == info.id
    assert info.name == "lab Local CA"
    assert info.subject == "CN=lab Local CA"
    assert info.key_type == "ec-p256"
    assert info.not_after == cert.not_valid_after_utc
    assert info.state == "active"
    assert info.certificate == cert
    assert result.templates == ("server", "client")


def test_check_reports_an_expired_ca(
    factory: LocalBackendType, context: BackendContext, clock: Clock
) -> None:
    ca = factory.open(factory.provision(LocalConfig(days=1), context), context)
    clock.advance(days=2)
    assert ca.check().cas[0].state == "expired"
    # An expired CA cannot issue; that is its configuration's fault, not the request's.
    with pytest.raises(ConfigError, match="expired"):
        enroll(ca, make_csr(generate_private_key("ec-p256")))


def test_a_state_directory_belongs_to_one_ca(factory: LocalBackendType, context: BackendContext) -> None:
    factory.open(factory.provision(LocalConfig(), context), context)
    other = factory.provision(LocalConfig(), context)
    with pytest.raises(ConfigError, match="own state directory"):
        factory.open(other, context)


# -- enroll -----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("template", ["server", "client", None])
@pytest.mark.parametrize("key_type", CSR_KEY_TYPES)
def test_enroll_issues_a_verifiable_certificate(  # noqa: PLR0917 - fixtures and parameters
    ca: LocalCA,
    csr_keys: dict[str, PrivateKey],
    tmp_path: Path,
    clock: Clock,
    key_type: str,
    template: str | None,
) -> None:
    key = csr_keys[key_type]
    issued = ca.enroll(EnrollRequest(csr=make_csr(key), request_id="r", template=template))
    cert = issued.certificate
    server = template != "client"

    assert issued.chain == (ca.certificate,)
    assert issued.order_ref == canonical_serial(cert.serial_number)
    assert cert.issuer == ca.certificate.subject
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")])
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(ca.certificate)
    assert cert.not_valid_before_utc == (clock.now - dt.timedelta(minutes=5)).replace(microsecond=0)
    assert cert.not_valid_after_utc == (clock.now + dt.timedelta(days=90)).replace(microsecond=0)

    basic = ext(cert, x509.BasicConstraints)
    assert basic.critical
    assert basic.value == x509.BasicConstraints(ca=False, path_length=None)
    usage = ext(cert, x509.KeyUsage)
    assert usage.critical
    assert isinstance(usage.value, x509.KeyUsage)
    assert usage.value.digital_signature
    assert usage.value.key_encipherment == (server and key_type.startswith("rsa"))
    assert not (usage.value.key_cert_sign or usage.value.crl_sign or usage.value.key_agreement)
    eku = ext(cert, x509.ExtendedKeyUsage)
    assert not eku.critical
    expected_eku = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    assert list(eku.value) == [expected_eku]  # type: ignore[call-overload]
    ski = ext(cert, x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    ca_ski = ext(ca.certificate, x509.SubjectKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert isinstance(ca_ski, x509.SubjectKeyIdentifier)
    assert aki.key_identifier == ca_ski.digest
    san = ext(cert, x509.SubjectAlternativeName)
    assert not san.critical
    assert list(san.value) == [x509.DNSName("www.example.test")]  # type: ignore[call-overload]
    assert {e.oid for e in cert.extensions} == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }

    done = openssl_verify(tmp_path, cert, ca.certificate, purpose="sslserver" if server else "sslclient")
    assert done.returncode == 0, done.stdout + done.stderr


def test_serials_are_random_and_long(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    csr = make_csr(csr_keys["ec-p256"])
    serials = [enroll(ca, csr, f"req-{i}").serial_number for i in range(20)]
    assert len(set(serials)) == 20
    assert all(serial.bit_length() > 64 for serial in serials)


def test_the_same_request_id_is_issued_once(
    ca: LocalCA, config: LocalConfig, csr_keys: dict[str, PrivateKey], context: BackendContext, clock: Clock
) -> None:
    csr = make_csr(csr_keys["ec-p256"])
    first = enroll(ca, csr, "journal-42")
    clock.advance(minutes=3)
    again = ca.enroll(EnrollRequest(csr=csr, request_id="journal-42", validity_days=7))
    assert again.certificate == first
    assert again.chain == (ca.certificate,)
    assert len(rows(context)) == 1
    # Also across a reopen: the record is in the database, not in the object.
    reopened = LocalBackendType().open(config, context)
    assert enroll(reopened, csr, "journal-42") == first
    assert len(rows(context)) == 1


def test_concurrent_enrolls_of_one_request_sign_once(
    factory: LocalBackendType, config: LocalConfig, context: BackendContext, csr_keys: dict[str, PrivateKey]
) -> None:
    # Several workers, each with its own LocalCA on the same state, race on one journal entry: whoever
    # records first wins and everybody gets that certificate.
    workers = [factory.open(config, context) for _ in range(4)]
    csr = make_csr(csr_keys["ec-p256"])
    with ThreadPoolExecutor(max_workers=8) as pool:
        certs = list(pool.map(lambda i: enroll(workers[i % 4], csr, "raced"), range(32)))
    assert len({c.serial_number for c in certs}) == 1
    assert len(rows(context)) == 1


def test_sans_come_only_from_the_csr(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    names: list[x509.GeneralName] = [
        x509.DNSName("a.example.test"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.RFC822Name("ops@example.test"),
        x509.UniformResourceIdentifier("spiffe://example.test/app"),
    ]
    cert = enroll(ca, make_csr(csr_keys["ec-p256"], common_name="www.example.test", sans=names), "with-sans")
    assert list(ext(cert, x509.SubjectAlternativeName).value) == names  # type: ignore[call-overload]

    # A CN alone is not turned into a SAN.
    cert = enroll(ca, make_csr(csr_keys["ec-p256"], sans=()), "cn-only")
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.SubjectAlternativeName)

    # With an empty subject the SAN is the identity, and critical.
    cert = enroll(ca, make_csr(csr_keys["ec-p256"], common_name=None), "no-subject")
    assert cert.subject == x509.Name([])
    assert ext(cert, x509.SubjectAlternativeName).critical


def test_other_requested_extensions_are_ignored(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    csr = make_csr(
        csr_keys["ec-p256"],
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False),
        ],
    )
    cert = enroll(ca, csr)
    assert ext(cert, x509.BasicConstraints).value == x509.BasicConstraints(ca=False, path_length=None)
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]  # type: ignore[call-overload]


def test_unsupported_san_types_are_rejected(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    upn = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x03a@b")
    with pytest.raises(Rejected, match="OtherName"):
        enroll(ca, make_csr(csr_keys["ec-p256"], sans=[upn]))


@pytest.mark.parametrize(
    "host", ["bad host.example", "-x.example", "a..example", "example.", "*", "a.*.example"]
)
def test_malformed_dns_names_are_rejected(ca: LocalCA, csr_keys: dict[str, PrivateKey], host: str) -> None:
    with pytest.raises(Rejected, match="invalid DNS names"):
        enroll(ca, make_csr(csr_keys["ec-p256"], sans=[x509.DNSName("ok.example"), x509.DNSName(host)]))


def test_wildcard_and_punycode_names_are_issued(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    names: list[x509.GeneralName] = [
        x509.DNSName("*.apps.example.test"),
        x509.DNSName("xn--bcher-kva.example"),
    ]
    cert = enroll(ca, make_csr(csr_keys["ec-p256"], sans=names))
    assert list(ext(cert, x509.SubjectAlternativeName).value) == names  # type: ignore[call-overload]


def test_a_server_certificate_must_name_a_host(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    email_only = make_csr(csr_keys["ec-p256"], common_name=None, sans=[x509.RFC822Name("ops@example.test")])
    with pytest.raises(Rejected, match="names no host: add a subjectAltName DNS or IP entry"):
        enroll(ca, email_only)
    # A client certificate may identify a person by e-mail address.
    cert = enroll(ca, email_only, template="client")
    assert list(ext(cert, x509.SubjectAlternativeName).value) == [x509.RFC822Name("ops@example.test")]  # type: ignore[call-overload]


def test_a_csr_naming_nothing_is_rejected(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    with pytest.raises(Rejected, match="neither a subject nor a subjectAltName"):
        enroll(ca, make_csr(csr_keys["ec-p256"], common_name=None, sans=()), template="client")


def test_unknown_template_is_rejected(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    with pytest.raises(Rejected, match=r"'codesigning'.*server, client"):
        enroll(ca, make_csr(csr_keys["ec-p256"]), template="codesigning")


@pytest.mark.parametrize("days", [0, -1, 826, 10_000])
def test_validity_out_of_range_is_rejected(ca: LocalCA, csr_keys: dict[str, PrivateKey], days: int) -> None:
    with pytest.raises(Rejected, match="1 to 825 days"):
        enroll(ca, make_csr(csr_keys["ec-p256"]), validity_days=days)


def test_validity_is_honoured_and_capped_at_the_ca(
    factory: LocalBackendType, context: BackendContext, clock: Clock, csr_keys: dict[str, PrivateKey]
) -> None:
    ca = factory.open(factory.provision(LocalConfig(days=30), context), context)
    csr = make_csr(csr_keys["ec-p256"])
    cert = enroll(ca, csr, "short", validity_days=1)
    assert cert.not_valid_after_utc == (clock.now + dt.timedelta(days=1)).replace(microsecond=0)
    cert = enroll(ca, csr, "long", validity_days=825)
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_ca_must_be_this_ca(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    csr = make_csr(csr_keys["ec-p256"])
    with pytest.raises(Rejected, match=f"unknown CA 'ff'.*{ca.id}"):
        enroll(ca, csr, ca_id="ff")
    with pytest.raises(Rejected, match=ca.id):
        ca.revoke(RevokeRequest(serial="01", ca="other-ca"))
    with pytest.raises(Rejected, match=ca.id):
        ca.crl("ff")
    # Any spelling of the CA's serial names it.
    spelled = ":".join(
        f"{ca.certificate.serial_number:x}".zfill(40).upper()[i : i + 2] for i in range(0, 40, 2)
    )
    assert enroll(ca, csr, ca_id=spelled).issuer == ca.certificate.subject


def test_a_csr_with_a_bad_signature_is_rejected(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    der = bytearray(make_csr(csr_keys["ed25519"]).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of the Ed25519 signature
    tampered = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(Rejected, match="signature"):
        enroll(ca, tampered)


# -- revoke and CRL ---------------------------------------------------------------------------------------


def test_revoke_publishes_a_signed_crl(
    ca: LocalCA, csr_keys: dict[str, PrivateKey], context: BackendContext, clock: Clock
) -> None:
    csr = make_csr(csr_keys["ec-p256"])
    compromised = enroll(ca, csr, "a")
    plain = enroll(ca, csr, "b")
    kept = enroll(ca, csr, "c")
    ca.revoke(
        RevokeRequest(
            serial=canonical_serial(compromised.serial_number), reason=RevocationReason.KEY_COMPROMISE
        )
    )
    clock.advance(seconds=10)
    ca.revoke(RevokeRequest(serial=canonical_serial(plain.serial_number)))

    crl = ca.crl()
    ca_public = ca.certificate.public_key()
    assert isinstance(ca_public, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(ca_public)
    assert crl.issuer == ca.certificate.subject
    assert crl.last_update_utc == clock.now.replace(microsecond=0)
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=7)
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca.certificate, x509.SubjectKeyIdentifier).value.digest  # type: ignore[attr-defined]

    entry = crl.get_revoked_certificate_by_serial_number(compromised.serial_number)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        == x509.ReasonFlags.key_compromise
    )
    entry = crl.get_revoked_certificate_by_serial_number(plain.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc == clock.now.replace(microsecond=0)
    # RFC 5280: "unspecified" is expressed by leaving the reason out.
    assert len(entry.extensions) == 0
    assert crl.get_revoked_certificate_by_serial_number(kept.serial_number) is None
    assert len(crl) == 2

    # Each revocation published a CRL, so this is the third, and the file holds it.
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 3
    published = x509.load_der_x509_crl((context.state_dir / "crl.der").read_bytes())
    assert published == crl
    assert ca.crl().extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 4


def test_revoke_accepts_any_serial_spelling_and_is_idempotent(
    ca: LocalCA, csr_keys: dict[str, PrivateKey], context: BackendContext
) -> None:
    cert = enroll(ca, make_csr(csr_keys["ec-p256"]))
    hex_serial = f"{cert.serial_number:X}"
    if len(hex_serial) % 2:
        hex_serial = "0" + hex_serial
    spelled = ":".join(hex_serial[i : i + 2] for i in range(0, len(hex_serial), 2))
    ca.revoke(RevokeRequest(serial=spelled, reason=RevocationReason.SUPERSEDED))
    ca.revoke(RevokeRequest(serial=spelled.lower(), reason=RevocationReason.KEY_COMPROMISE))
    ((serial, _, revoked_at, reason),) = rows(context)
    assert serial == canonical_serial(cert.serial_number)
    assert revoked_at is not None
    assert reason == "superseded"  # the first revocation stands
    entry = ca.crl().get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert (
        entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.superseded
    )


@pytest.mark.parametrize("serial", ["0123456789abcdef", "not-hex", ""])
def test_revoking_an_unknown_serial_is_rejected(ca: LocalCA, serial: str) -> None:
    with pytest.raises(Rejected):
        ca.revoke(RevokeRequest(serial=serial))


def test_the_ca_itself_cannot_be_revoked_here(ca: LocalCA) -> None:
    with pytest.raises(Rejected, match="issued no certificate"):
        ca.revoke(RevokeRequest(serial=ca.id))


def test_crl_of_a_fresh_ca_is_empty_and_valid(ca: LocalCA, context: BackendContext) -> None:
    crl = ca.crl(ca.id)
    assert len(crl) == 0
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1
    assert (context.state_dir / "crl.der").is_file()


# -- scan -------------------------------------------------------------------------------------------------


def test_scan_lists_exactly_what_was_issued_oldest_first(
    ca: LocalCA, csr_keys: dict[str, PrivateKey], clock: Clock
) -> None:
    assert list(ca.scan()) == []
    csr = make_csr(csr_keys["ec-p256"])
    first = enroll(ca, csr, "1")
    clock.advance(hours=1)
    middle = clock.now
    second = enroll(ca, csr, "2")
    clock.advance(hours=1)
    third = enroll(ca, csr, "3")
    enroll(ca, csr, "3")  # a replay adds nothing

    issued = list(ca.scan())
    assert [i.certificate for i in issued] == [first, second, third]
    assert all(i.chain == (ca.certificate,) for i in issued)
    assert [i.order_ref for i in issued] == [
        canonical_serial(c.serial_number) for c in (first, second, third)
    ]
    assert [i.certificate for i in ca.scan(since=middle)] == [second, third]
    assert list(ca.scan(since=clock.now + dt.timedelta(seconds=1))) == []


def test_scan_pages_through_many_certificates(ca: LocalCA, csr_keys: dict[str, PrivateKey]) -> None:
    # More than one page of the store's keyset pagination, all at the same instant.
    csr = make_csr(csr_keys["ec-p256"])
    serials = {enroll(ca, csr, f"r{i}").serial_number for i in range(520)}
    assert {i.certificate.serial_number for i in ca.scan()} == serials
    assert len(list(ca.scan())) == 520


# -- import -----------------------------------------------------------------------------------------------


def _ca_cert(
    subject: str,
    key: PrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: PrivateKey,
    *,
    ca: bool = True,
    key_cert_sign: bool = True,
    crl_sign: bool = True,
    path_length: int | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=key_cert_sign,
                crl_sign=crl_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    return builder.sign(issuer_key, signature_hash_for(issuer_key))


@pytest.fixture(scope="module")
def hierarchy() -> tuple[x509.Certificate, x509.Certificate, PrivateKey, PrivateKey]:
    root_key = generate_private_key("ec-p384")
    root = _ca_cert("Test Root", root_key, None, root_key)
    intermediate_key = generate_private_key("rsa-2048")
    intermediate = _ca_cert("Test Issuing CA", intermediate_key, root, root_key, path_length=0)
    return root, intermediate, root_key, intermediate_key


def _imported(cacert: bytes, cakey: PrivateKey, **options: object) -> LocalConfig:
    return LocalConfig.model_validate(
        {"cacert": cacert.decode(), "cakey": SecretStr(private_key_pem(cakey).decode()), **options}
    )


@pytest.mark.slow
def test_import_an_intermediate_with_its_root(
    factory: LocalBackendType,
    context: BackendContext,
    hierarchy: tuple[x509.Certificate, x509.Certificate, PrivateKey, PrivateKey],
    csr_keys: dict[str, PrivateKey],
    tmp_path: Path,
) -> None:
    root, intermediate, _, intermediate_key = hierarchy
    # The key names which certificate is the CA, whatever the order of the file.
    config = factory.provision(_imported(pem(root, intermediate), intermediate_key), context)
    assert config.cacert == pem(intermediate, root).decode()
    assert config.subject is None
    ca = factory.open(config, context)
    assert ca.id == canonical_serial(intermediate.serial_number)
    assert ca.check().cas[0].key_type == "rsa-2048"

    issued = ca.enroll(EnrollRequest(csr=make_csr(csr_keys["ec-p256"]), request_id="imp"))
    assert issued.chain == (intermediate, root)
    aki = ext(issued.certificate, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(intermediate, x509.SubjectKeyIdentifier).value.digest  # type: ignore[attr-defined]
    done = openssl_verify(tmp_path, issued.certificate, root, untrusted=[intermediate], purpose="sslserver")
    assert done.returncode == 0, done.stdout + done.stderr

    ca.revoke(RevokeRequest(serial=issued.order_ref or ""))
    intermediate_public = intermediate.public_key()
    assert isinstance(intermediate_public, rsa.RSAPublicKey)
    assert ca.crl().is_signature_valid(intermediate_public)


def test_import_errors(
    factory: LocalBackendType,
    context: BackendContext,
    hierarchy: tuple[x509.Certificate, x509.Certificate, PrivateKey, PrivateKey],
) -> None:
    root, intermediate, root_key, intermediate_key = hierarchy
    cases: list[tuple[Callable[[], LocalConfig], str]] = [
        (
            lambda: _imported(pem(intermediate, root), generate_private_key("ec-p256")),
            "-cakey does not belong to any certificate in -cacert",
        ),
        (
            lambda: _imported(pem(intermediate, root), intermediate_key, subject="CN=Other"),
            "-subject describe a new CA",
        ),
        (
            lambda: _imported(pem(intermediate, root), intermediate_key, keytype="ec-p256", days=10),
            "-keytype, -days describe a new CA",
        ),
        (
            lambda: _imported(pem(intermediate), intermediate_key),
            "-cacert: chain ends at 'CN=Test Issuing CA'",
        ),
        (lambda: _imported(b"garbage", intermediate_key), "-cacert: "),
        (
            lambda: LocalConfig(cacert=pem(root).decode(), cakey=SecretStr("not a key")),
            "-cakey: private key is not",
        ),
    ]
    for make, message in cases:
        with pytest.raises(ConfigError, match=message) as caught:
            factory.provision(make(), context)
        assert "BEGIN" not in caught.value.message  # key material never ends up in a message
    leaf_key = generate_private_key("ec-p256")
    leaf = _ca_cert("Not A CA", leaf_key, root, root_key, ca=False)
    with pytest.raises(ConfigError, match="is not a CA certificate"):
        factory.provision(_imported(pem(leaf, root), leaf_key), context)
    no_sign = _ca_cert("No Sign", leaf_key, root, root_key, key_cert_sign=False)
    with pytest.raises(ConfigError, match="keyCertSign"):
        factory.provision(_imported(pem(no_sign, root), leaf_key), context)
    no_crl = _ca_cert("No CRL", leaf_key, root, root_key, crl_sign=False)
    with pytest.raises(ConfigError, match="cRLSign"):
        factory.provision(_imported(pem(no_crl, root), leaf_key), context)
    assert not context.state_dir.exists()


def test_an_expired_ca_is_not_imported(
    factory: LocalBackendType, context: BackendContext, clock: Clock
) -> None:
    key = generate_private_key("ec-p256")
    root = _ca_cert("Old Root", key, None, key, not_after=clock.now + dt.timedelta(days=1))
    config = factory.provision(_imported(pem(root), key), context)
    clock.advance(days=2)
    with pytest.raises(ConfigError, match="expired on"):
        factory.provision(config, context)
