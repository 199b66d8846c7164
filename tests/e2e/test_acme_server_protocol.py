"""The manager's ACME server at the protocol's edges, driven by certbot's own library (`acme`, ClientV2)
over TLS against a live manager, connector and local CA: EAB, nonces, keys, accounts, CSRs, finalize
retried, revocation by the certificate's key, key change, renewal information."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from acme import client, crypto_util, errors, messages
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from josepy.b64 import b64decode, b64encode
from josepy.jwa import ES256, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA
from tests.e2e.acme_lab import Binding, Lab, acme_lab

pytestmark = pytest.mark.slow

DEADLINE_SECONDS = 60


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with acme_lab(tmp_path_factory.mktemp("acme-protocol")) as made:
        yield made


def _ec_jwk() -> JWKEC:
    return JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def _network(
    lab: Lab, key: JWK, account: messages.RegistrationResource | None = None
) -> client.ClientNetwork:
    alg: JWASignature = ES256 if isinstance(key, JWKEC) else RS256
    # verify_ssl goes to requests' `verify`, which takes a CA bundle's path as well as a bool.
    ca_bundle: Any = str(lab.manager.tls.ca_pem)
    return client.ClientNetwork(key, account=account, alg=alg, verify_ssl=ca_bundle)


def _client(lab: Lab, binding: Binding, key: JWK | None = None) -> client.ClientV2:
    net = _network(lab, key or _ec_jwk())
    return client.ClientV2(client.ClientV2.get_directory(binding.directory, net), net)


def _register(
    acme: client.ClientV2, binding: Binding, hmac_key: str | None = None
) -> messages.RegistrationResource:
    assert acme.net.key is not None
    eab = messages.ExternalAccountBinding.from_data(
        account_public_key=acme.net.key.public_key(), kid=binding.kid, hmac_key=hmac_key or binding.hmac_key,
        directory=acme.directory,
    )  # fmt: skip
    registration = messages.NewRegistration.from_data(
        terms_of_service_agreed=True, external_account_binding=eab
    )
    account = acme.new_account(registration)
    acme.net.account = account
    return account


def _account(lab: Lab, binding: Binding | None = None) -> client.ClientV2:
    binding = binding or lab.bindings["web"]
    acme = _client(lab, binding)
    _register(acme, binding)
    return acme


def _csr(names: list[str]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, crypto_util.make_csr(pem, names)


def _deadline() -> dt.datetime:
    return dt.datetime.now() + dt.timedelta(seconds=DEADLINE_SECONDS)


def _problem(excinfo: pytest.ExceptionInfo[messages.Error]) -> str:
    return str(excinfo.value.typ)


def _issue(acme: client.ClientV2, names: list[str]) -> tuple[messages.OrderResource, bytes]:
    key_pem, csr = _csr(names)
    order = acme.new_order(csr)
    assert [a.body.status for a in order.authorizations] == [messages.STATUS_VALID] * len(
        names
    )  # pre-validated
    return acme.poll_and_finalize(order, _deadline()), key_pem


def test_eab_is_required_and_checked(lab: Lab) -> None:
    binding = lab.bindings["web"]
    acme = _client(lab, binding)
    assert acme.external_account_required()
    with pytest.raises(messages.Error) as missing:
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    assert _problem(missing) == "urn:ietf:params:acme:error:externalAccountRequired"

    wrong = b64encode(b"\x01" * 32).decode()
    with pytest.raises(messages.Error) as refused:
        _register(acme, binding, hmac_key=wrong)
    assert _problem(refused) == "urn:ietf:params:acme:error:unauthorized"
    assert "HMAC" in str(refused.value)
    assert binding.hmac_key not in str(refused.value)

    # Another profile's binding does not open an account in this directory.
    with pytest.raises(messages.Error) as elsewhere:
        _register(acme, Binding(**{**vars(binding), "kid": lab.bindings["validated"].kid,
                                   "hmac_key": lab.bindings["validated"].hmac_key}))  # fmt: skip
    assert _problem(elsewhere) == "urn:ietf:params:acme:error:unauthorized"

    account = _register(acme, binding)
    assert account.body.status == "valid"
    # The same key again: the existing account (200 and its Location), which the client reports as such.
    acme.net.account = None  # newAccount is signed with the key (jwk), not the account URL
    with pytest.raises(errors.ConflictError) as again:
        acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    assert again.value.location == account.uri


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_rs256_and_eddsa_account_keys(lab: Lab, kind: str) -> None:
    binding = lab.bindings["web"]
    if kind == "rsa":
        acme = _client(lab, binding, JWKRSA(key=rsa.generate_private_key(65537, 2048)))
        _register(acme, binding)
        order, _ = _issue(acme, [f"{kind}.example.test"])
        assert order.fullchain_pem
        return
    # josepy signs no EdDSA: the JWS is built here, the protocol is the same.
    key = ed25519.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64encode(raw).decode()}
    with RawSession(lab) as raw_client:
        directory = raw_client.get(binding.directory).json()
        response = raw_client.post_jws(
            directory["newAccount"], key, {"jwk": jwk}, _eab_payload(binding, jwk, directory["newAccount"])
        )
        assert response.status_code == 201, response.text
        account_url = response.headers["Location"]
        identifiers = [{"type": "dns", "value": "eddsa.example.test"}]
        placed = raw_client.post_jws(
            directory["newOrder"], key, {"kid": account_url}, {"identifiers": identifiers}
        )
        assert placed.status_code == 201, placed.text
        assert placed.json()["status"] == "ready"


class _RawClient:
    """JWS requests built by hand (for EdDSA, and for requests a well-behaved client never sends)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def get(self, url: str) -> httpx.Response:
        return self.http.get(url)

    def nonce(self, url: str) -> str:
        return self.http.head(url.rsplit("/", 1)[0] + "/new-nonce").headers["Replay-Nonce"]

    def post_jws(
        self, url: str, key: ed25519.Ed25519PrivateKey, header: dict[str, Any], payload: Any
    ) -> httpx.Response:
        protected = {"alg": "EdDSA", "nonce": self.nonce(url), "url": url, **header}
        body = _flattened(protected, payload, key.sign)
        return self.http.post(
            url, content=json.dumps(body), headers={"Content-Type": "application/jose+json"}
        )


def _flattened(protected: dict[str, Any], payload: Any, sign: Any) -> dict[str, str]:
    protected_b64 = b64encode(json.dumps(protected).encode()).decode()
    payload_b64 = "" if payload == "" else b64encode(json.dumps(payload).encode()).decode()
    signature = sign(f"{protected_b64}.{payload_b64}".encode())
    return {
        "protected": protected_b64,
        "payload": payload_b64,
        "signature": b64encode(signature).decode(),
    }


def _eab_payload(binding: Binding, jwk: dict[str, Any], url: str) -> dict[str, Any]:
    key = b64decode(binding.hmac_key)
    eab = _flattened({"alg": "HS256", "kid": binding.kid, "url": url}, jwk,
                     lambda data: hmac.new(key, data, hashlib.sha256).digest())  # fmt: skip
    return {"termsOfServiceAgreed": True, "externalAccountBinding": eab}


class RawSession:
    def __init__(self, lab: Lab) -> None:
        self.http = httpx.Client(verify=lab.verify_context(), trust_env=False, timeout=30)

    def __enter__(self) -> _RawClient:
        return _RawClient(self.http)

    def __exit__(self, *_: object) -> None:
        self.http.close()


def test_bad_nonce_replay_and_every_answer_carries_a_nonce(lab: Lab) -> None:
    acme = _account(lab)
    net = acme.net
    assert net.account is not None
    new_order = acme.directory["newOrder"]
    order = messages.NewOrder(
        identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="n.example.test")]
    )
    net._nonces.clear()
    bogus: Any = b"not a nonce this server gave"  # the client keeps nonces decoded, as bytes
    net._nonces.add(bogus)
    with pytest.raises(messages.Error) as bad:
        net._post_once(new_order, order, new_nonce_url=acme.directory["newNonce"])
    assert _problem(bad) == "urn:ietf:params:acme:error:badNonce"
    # The client's own recovery: badNonce, then the request again with a fresh nonce.
    net._nonces.add(bogus + b" either")
    assert net.post(new_order, order, new_nonce_url=acme.directory["newNonce"]).status_code == 201

    # The very same JWS sent twice: the second is a replay, refused, and creates nothing.
    with RawSession(lab) as raw:
        nonce = raw.nonce(new_order)
        decoded: Any = b64decode(nonce)  # as the client keeps it
        signed = net._wrap_in_jws(order, decoded, new_order)
        headers = {"Content-Type": "application/jose+json"}
        first = raw.http.post(new_order, content=signed, headers=headers)
        assert first.status_code == 201, first.text
        replay = raw.http.post(new_order, content=signed, headers=headers)
        assert replay.status_code == 400
        assert replay.json()["type"] == "urn:ietf:params:acme:error:badNonce"
        assert replay.headers["Replay-Nonce"]
        assert replay.headers["Content-Type"].startswith("application/problem+json")
        assert 'rel="index"' in replay.headers["Link"]
        # Not JOSE: 415 with a problem document, never a 5xx.
        wrong_type = raw.http.post(new_order, content=signed, headers={"Content-Type": "application/json"})
        assert wrong_type.status_code == 415
        assert wrong_type.json()["type"] == "urn:ietf:params:acme:error:malformed"
        garbage = raw.http.post(new_order, content=b"{not json", headers=headers)
        assert garbage.status_code == 400
        unknown = raw.http.get(
            new_order.replace("/web/", "/no-such-profile/").replace("new-order", "directory")
        )
        assert unknown.status_code == 404
        assert unknown.json()["type"] == "urn:ietf:params:acme:error:malformed"


def test_wrong_key_and_unknown_account(lab: Lab) -> None:
    acme = _account(lab)
    account = acme.net.account
    assert account is not None
    _, csr = _csr(["k.example.test"])
    # Account A's URL, signed with another key.
    impostor = client.ClientV2(acme.directory, _network(lab, _ec_jwk(), account))
    with pytest.raises(messages.Error) as wrong:
        impostor.new_order(csr)
    assert _problem(wrong) == "urn:ietf:params:acme:error:malformed"
    assert "signature" in str(wrong.value)
    # An account URL this directory never gave.
    missing = messages.RegistrationResource(
        body=account.body, uri=account.uri.rsplit("/", 1)[0] + "/" + "0" * 32
    )
    assert acme.net.key is not None
    stranger = client.ClientV2(acme.directory, _network(lab, acme.net.key, missing))
    with pytest.raises(messages.Error) as unknown:
        stranger.new_order(csr)
    assert _problem(unknown) == "urn:ietf:params:acme:error:accountDoesNotExist"


def test_csr_names_outside_the_order_and_finalize_retried(lab: Lab) -> None:
    acme = _account(lab)
    _, csr = _csr(["order.example.test"])
    order = acme.new_order(csr)
    before = len(lab.certificates())
    _, other = _csr(["order.example.test", "extra.example.test"])
    finalize = order.body.finalize
    with pytest.raises(messages.Error) as bad:
        acme._post(finalize, messages.CertificateRequest(csr=x509.load_pem_x509_csr(other)))
    assert _problem(bad) == "urn:ietf:params:acme:error:badCSR"
    assert "extra.example.test" in str(bad.value)
    assert len(lab.certificates()) == before

    request = messages.CertificateRequest(csr=x509.load_pem_x509_csr(csr))
    first = acme._post(finalize, request).json()
    assert first["status"] in ("processing", "valid")
    # The client retries (it lost the answer): the same order back, and no second request.
    again = acme._post(finalize, request).json()
    assert again["finalize"] == first["finalize"]
    assert len(lab.certificates()) == before + 1
    # A different CSR for a finalized order is refused.
    _, late = _csr(["order.example.test"])
    with pytest.raises(messages.Error) as not_ready:
        acme._post(finalize, messages.CertificateRequest(csr=x509.load_pem_x509_csr(late)))
    assert _problem(not_ready) == "urn:ietf:params:acme:error:orderNotReady"
    done = acme.poll_finalization(messages.OrderResource(body=order.body, uri=order.uri), _deadline())
    assert done.fullchain_pem
    assert len(lab.certificates()) == before + 1


def test_revoke_by_certificate_key_renewal_info_and_key_change(lab: Lab) -> None:
    acme = _account(lab)
    order, key_pem = _issue(acme, ["r.example.test"])
    leaf = x509.load_pem_x509_certificates(order.fullchain_pem.encode())[0]
    start, _ = acme.renewal_time(order.fullchain_pem.encode())
    assert start is not None

    # Another account did not order it: refused.
    stranger = _account(lab)
    with pytest.raises(messages.Error) as refused:
        stranger.revoke(leaf, 0)
    assert _problem(refused) == "urn:ietf:params:acme:error:unauthorized"
    # Anyone holding the certificate's key may revoke it (a jwk request, no account).
    private = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    by_key = client.ClientV2(acme.directory, _network(lab, JWKEC(key=private)))
    by_key.revoke(leaf, 1)
    with pytest.raises(messages.Error) as twice:
        by_key.revoke(leaf, 1)
    assert _problem(twice) == "urn:ietf:params:acme:error:alreadyRevoked"

    # keyChange: the inner JWS signed by the new key; afterwards only the new key works.
    account = acme.net.account
    assert account is not None
    new_key = _ec_jwk()
    url = acme.directory["keyChange"]
    assert acme.net.key is not None
    old_key = acme.net.key.public_key().to_partial_json()
    inner = acme_jws.JWS.sign(
        json.dumps({"account": account.uri, "oldKey": old_key}).encode(),
        key=new_key, alg=ES256, nonce=None, url=url,
    )  # fmt: skip
    assert acme._post(url, inner).status_code == 200
    _, csr = _csr(["kc.example.test"])
    with pytest.raises(messages.Error):
        acme.new_order(csr)  # the old key
    moved = client.ClientV2(acme.directory, _network(lab, new_key, account))
    assert moved.new_order(csr).body.status == messages.STATUS_READY


def test_orders_and_accounts_are_shown_with_the_account_in_the_api(lab: Lab, tmp_path: Path) -> None:
    acme = _account(lab)
    order, _ = _issue(acme, ["*.example.test"])
    leaf = x509.load_pem_x509_certificates(order.fullchain_pem.encode())[0]
    account = acme.net.account
    assert account is not None
    with lab.api() as api:
        serial = format(leaf.serial_number, "x")
        found = api.get("/certificates", params={"serial": serial}).json()["items"]
        assert [c["sans"] for c in found] == [["DNS:*.example.test"]]
        events = api.get("/audit", params={"actor": f"acme:{account.uri.rsplit('/', 1)[1]}"}).json()["items"]
        assert {e["action"] for e in events} >= {"acme_account.create", "certificate.enroll"}
        placed = api.get("/acme-orders", params={"certificate": found[0]["id"]}).json()["items"]
        assert [(o["account"], o["status"], o["identifiers"]) for o in placed] == [
            (account.uri.rsplit("/", 1)[1], "valid", ["*.example.test"])
        ]
        listed = api.get("/acme-bindings").json()["items"]
        assert {b["kid"] for b in listed} >= {lab.bindings["web"].kid}
        assert all("hmac" not in json.dumps(b) for b in listed)
