"""Keeping each CA's latest CRL, as its connector sends it (`crl_der_b64`: in a CA's inventory report,
and in the result of a revoke job, so a revocation shows in the CRL at once)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from caconnector.manager.db.models import ManagedCA

log = logging.getLogger(__name__)

# A CRL of a few hundred thousand entries; anything bigger is not something the API should hand out.
MAX_CRL_BYTES = 16 * 1024 * 1024
# Keys that can sign a CRL (what CertificateRevocationList.is_signature_valid accepts).
_ISSUER_KEYS = (
    rsa.RSAPublicKey,
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    dsa.DSAPublicKey,
)


def apply_crl(ca: ManagedCA, crl_der_b64: str | None, now: dt.datetime) -> bool:
    """Store the CRL on `ca` when it is one, signed by the CA (when its certificate is known), and not
    older than the one stored (reports can arrive out of order). True when stored."""
    if not crl_der_b64:
        return False
    read = _read(ca, crl_der_b64)
    if read is None:
        return False
    der, crl = read
    if ca.crl_der is not None and _last_update(ca.crl_der) > crl.last_update_utc:
        return False
    ca.crl_der = der
    ca.crl_updated_at = now
    return True


def _read(ca: ManagedCA, crl_der_b64: str) -> tuple[bytes, x509.CertificateRevocationList] | None:
    """The CRL, or None (logged: the rest of the report is still good) when it is not a usable one."""
    # base64 is 4/3 of the DER: checked before decoding, so an oversized one costs nothing.
    if len(crl_der_b64) > MAX_CRL_BYTES * 4 // 3 + 4:
        log.warning("CA %s: the connector sent a CRL over %d bytes; ignored", ca.id, MAX_CRL_BYTES)
        return None
    try:
        der = base64.b64decode(crl_der_b64, validate=True)
        crl = x509.load_der_x509_crl(der)
    except (binascii.Error, ValueError) as exc:
        log.warning("CA %s: the connector sent an unusable CRL (%s); ignored", ca.id, exc)
        return None
    if not _signed_by_ca(ca, crl):
        log.warning("CA %s: the connector sent a CRL this CA did not sign; ignored", ca.id)
        return None
    return der, crl


def _signed_by_ca(ca: ManagedCA, crl: x509.CertificateRevocationList) -> bool:
    if ca.certificate_pem is None:
        return True  # nothing to check against; the connector that sent it is authenticated
    try:
        certificate = x509.load_pem_x509_certificate(ca.certificate_pem.encode())
    except ValueError:
        return False
    public_key = certificate.public_key()
    if not isinstance(public_key, _ISSUER_KEYS):
        return False
    return crl.issuer == certificate.subject and crl.is_signature_valid(public_key)


def _last_update(der: bytes) -> dt.datetime:
    try:
        return x509.load_der_x509_crl(der).last_update_utc
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
