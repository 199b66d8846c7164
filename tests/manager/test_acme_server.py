"""The ACME server in process (SQLite and PostgreSQL), with JWS built here and the Lab connector's real
job runner behind it: the bindings API, per-account rate limits, nonce expiry, revoked bindings, and an
order following its certificate to `valid` or to `invalid` with the backend's reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests.manager.conftest import Caller, FakeClock, make_caller
from tests.manager.lifecycle_support import API, Lab, create_profile, error, make_lab

from caconnector.manager.acme.orders import cert_id
from caconnector.manager.cli import main
from caconnector.manager.db.models import AcmeBinding
from caconnector.manager.roles import Role
from caconnector.manager.runtime import Runtime
from caconnector.manager.services import acme_bindings
from caconnector.manager.settings import Settings

JOSE = {"Content-Type": "application/jose+json"}
URN = "urn:ietf:params:acme:error:"
ORDERS_PER_HOUR = 3


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class AcmeAccount:
    """An ES256 account key and the few requests these tests send, each a flattened JWS."""

    def __init__(self, client: TestClient, directory_url: str) -> None:
        self.client = client
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x.to_bytes(32, "big")),
                    "y": _b64(numbers.y.to_bytes(32, "big"))}  # fmt: skip
        self.directory: dict[str, Any] = client.get(directory_url).json()
        self.url: str | None = None

    def nonce(self) -> str:
        return str(self.client.head(self.directory["newNonce"]).headers["Replay-Nonce"])

    def jws(self, url: str, payload: Any, *, nonce: str | None = None) -> str:
        header: dict[str, Any] = {"alg": "ES256", "nonce": nonce or self.nonce(), "url": url}
        header.update({"kid": self.url} if self.url else {"jwk": self.jwk})
        protected = _b64(json.dumps(header).encode())
        body = "" if payload == "" else _b64(json.dumps(payload).encode())
        r, s = decode_dss_signature(self.key.sign(f"{protected}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
        signature = _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return json.dumps({"protected": protected, "payload": body, "signature": signature})

    def post(self, url: str, payload: Any, **kwargs: Any) -> Any:
        return self.client.post(url, content=self.jws(url, payload, **kwargs), headers=JOSE)

    def register(self, kid: str, hmac_key: str) -> Any:
        url = self.directory["newAccount"]
        protected = _b64(json.dumps({"alg": "HS256", "kid": kid, "url": url}).encode())
        payload = _b64(json.dumps(self.jwk).encode())
        key = base64.urlsafe_b64decode(hmac_key + "=" * (-len(hmac_key) % 4))
        mac = _b64(hmac.new(key, f"{protected}.{payload}".encode(), hashlib.sha256).digest())
        eab = {"protected": protected, "payload": payload, "signature": mac}
        response = self.post(url, {"termsOfServiceAgreed": True, "externalAccountBinding": eab})
        if response.status_code == 201:
            self.url = response.headers["Location"]
        return response

    def order(self, *names: str) -> Any:
        return self.post(
            self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names]}
        )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"acme_orders_per_hour": ORDERS_PER_HOUR})


@pytest.fixture
def lab(runtime: Runtime, client: TestClient, tmp_path: Path, admin: Caller) -> Lab:
    made = make_lab(runtime, client, tmp_path)
    create_profile(client, admin, made)
    return made


def _binding(client: TestClient, admin: Caller, domains: list[str]) -> dict[str, Any]:
    response = client.post(f"{API}/acme-bindings", json={"profile": "web", "domains": domains},
                           headers=admin.headers)  # fmt: skip
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def _problem(response: Any, kind: str, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.headers["Replay-Nonce"]
    body: dict[str, Any] = response.json()
    assert body["type"] == URN + kind, body
    return body


def _account(client: TestClient, binding: dict[str, Any]) -> AcmeAccount:
    # The TestClient's base URL: the directory's URLs are built from the address the client used.
    account = AcmeAccount(
        client, binding["directory_url"].replace("http://127.0.0.1:8443", "http://testserver")
    )
    assert account.register(binding["kid"], binding["hmac_key"]).status_code == 201
    return account


def test_bindings_api(
    client: TestClient, runtime: Runtime, admin: Caller, lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    made = _binding(client, admin, ["Example.TEST", "*.example.test"])
    assert made["domains"] == ["example.test", "*.example.test"]
    assert made["directory_url"] == "http://127.0.0.1:8443/acme/web/directory"
    with runtime.sessions.begin() as session:
        stored = session.scalars(select(AcmeBinding)).one()
        assert made["hmac_key"].encode() not in stored.hmac_sealed  # sealed, not in clear
    listed = client.get(f"{API}/acme-bindings", headers=admin.headers).json()["items"]
    assert [b["kid"] for b in listed] == [made["kid"]]
    assert made["hmac_key"] not in json.dumps(listed)
    operator = make_caller(runtime, "op", Role.OPERATOR)
    refused = client.post(f"{API}/acme-bindings", json={"profile": "web", "domains": ["a.test"]},
                          headers=operator.headers)  # fmt: skip
    assert refused.status_code == 403
    for domains in (["a.*.example.test"], ["not a name"], ["*"]):
        bad = client.post(f"{API}/acme-bindings", json={"profile": "web", "domains": domains},
                          headers=admin.headers)  # fmt: skip
        assert bad.status_code == 422, (domains, bad.text)
        assert bad.headers["content-type"].startswith("application/problem+json")
    revoked = client.post(f"{API}/acme-bindings/{made['kid']}/revoke", headers=admin.headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.post(f"{API}/acme-bindings/{made['kid']}/revoke", headers=admin.headers).status_code == 409
    assert made["hmac_key"] not in caplog.text


def test_rate_limit_nonce_expiry_and_revoked_binding(
    client: TestClient, clock: FakeClock, runtime: Runtime, admin: Caller, lab: Lab
) -> None:
    binding = _binding(client, admin, ["example.test"])
    account = _account(client, binding)
    for _ in range(ORDERS_PER_HOUR):
        assert account.order("example.test").status_code == 201
    limited = _problem(account.order("example.test"), "rateLimited", 429)
    assert "limit 3" in limited["detail"]
    assert 0 < int(client.post(account.directory["newOrder"], content=account.jws(
        account.directory["newOrder"], {"identifiers": [{"type": "dns", "value": "example.test"}]}),
        headers=JOSE).headers["Retry-After"]) <= 3601  # fmt: skip

    stale = account.nonce()
    clock.advance(seconds=runtime.settings.acme_nonce_ttl_seconds + 1)
    _problem(account.post(account.directory["newOrder"], {"identifiers": []}, nonce=stale), "badNonce", 400)
    clock.advance(seconds=3600)  # the hour is over: orders again
    assert account.order("example.test").status_code == 201

    assert (
        client.post(f"{API}/acme-bindings/{binding['kid']}/revoke", headers=admin.headers).status_code == 200
    )
    _problem(account.order("example.test"), "unauthorized", 403)
    newcomer = AcmeAccount(client, account.directory["newAccount"].replace("new-account", "directory"))
    _problem(newcomer.register(binding["kid"], binding["hmac_key"]), "unauthorized", 403)


def _csr_der(names: list[str]) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    sans = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(sans, critical=False)
    )
    return _b64(csr.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def _finalize(account: AcmeAccount, name: str) -> tuple[str, dict[str, Any]]:
    placed = account.order(name)
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "ready"
    finalized = account.post(placed.json()["finalize"], {"csr": _csr_der([name])})
    assert finalized.status_code == 200, finalized.text
    body: dict[str, Any] = finalized.json()
    assert body["status"] == "processing" and finalized.headers["Retry-After"] == "1"
    return placed.headers["Location"], body


def test_an_order_follows_its_certificate(client: TestClient, admin: Caller, lab: Lab) -> None:
    account = _account(client, _binding(client, admin, ["*.example.test"]))
    _problem(account.order("example.test"), "rejectedIdentifier", 400)  # *.x covers one label, not x

    order_url, _ = _finalize(account, "good.example.test")
    assert lab.work(client)  # the connector runs the enroll job against the local CA
    order = account.post(order_url, "").json()
    assert order["status"] == "valid", order
    chain = account.post(order["certificate"], "")
    assert chain.status_code == 200
    assert chain.headers["content-type"].startswith("application/pem-certificate-chain")
    leaf = x509.load_pem_x509_certificates(chain.content)[0]
    assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["good.example.test"]
    # Shown in the REST API: the certificate, and the order with its account.
    with_order = client.get(f"{API}/acme-orders", headers=admin.headers).json()["items"]
    assert [(o["status"], o["identifiers"], o["account"]) for o in with_order] == [
        ("valid", ["good.example.test"], account.url.rsplit("/", 1)[1] if account.url else None)
    ]
    certificate = client.get(
        f"{API}/certificates/{with_order[0]['certificate']}", headers=admin.headers
    ).json()
    assert (certificate["status"], certificate["sans"]) == ("Issued", ["DNS:good.example.test"])
    # RFC 9773: a renewal names the certificate it replaces; the new request is linked to it.
    renewal = account.post(account.directory["newOrder"], {
        "identifiers": [{"type": "dns", "value": "good.example.test"}], "replaces": cert_id(leaf),
    })  # fmt: skip
    assert renewal.status_code == 201, renewal.text
    account.post(renewal.json()["finalize"], {"csr": _csr_der(["good.example.test"])})
    assert lab.work(client)
    renewed = account.post(renewal.headers["Location"], "").json()
    assert renewed["status"] == "valid"
    renewed_id = renewed["certificate"].rsplit("/", 1)[1]
    linked = client.get(f"{API}/certificates/{renewed_id}", headers=admin.headers).json()
    assert linked["renewed_from"] == with_order[0]["certificate"]
    window = client.get(f"{account.directory['renewalInfo']}/{cert_id(leaf)}")
    assert window.status_code == 200 and window.headers["Retry-After"]
    assert set(window.json()["suggestedWindow"]) == {"start", "end"}
    unknown = account.post(account.directory["newOrder"], {
        "identifiers": [{"type": "dns", "value": "good.example.test"}], "replaces": "AAAA.AQ",
    })  # fmt: skip
    _problem(unknown, "malformed", 400)
    # Another account may not download it.
    other = _account(client, _binding(client, admin, ["*.example.test"]))
    _problem(other.post(order["certificate"], ""), "unauthorized", 403)

    order_url, _ = _finalize(account, "refused.example.test")
    assert lab.work(client, lambda job: error(job["id"], "rejected", "the CA refuses this name"))
    failed = account.post(order_url, "").json()
    assert failed["status"] == "invalid"
    assert "the CA refuses this name" in failed["error"]["detail"]


def test_the_cli_binding_commands(
    client: TestClient, runtime: Runtime, lab: Lab, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    settings = runtime.settings
    monkeypatch.delenv("CA_MANAGER_PUBLIC_URL", raising=False)
    monkeypatch.delenv("CA_MANAGER_KEY_FILE", raising=False)
    where = ["-datadir", str(settings.datadir), "-database", settings.effective_database_url]

    def cli(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main([*where, *args])
        out, err = capsys.readouterr()
        return code, out, err

    domains = "example.test,*.example.test"
    code, out, err = cli("acme", "binding", "add", "-profile", "web", "-domains", domains, "-json")
    assert code == 0, err
    made = json.loads(out)
    assert made["domains"] == ["example.test", "*.example.test"]
    assert made["directory_url"].endswith("/acme/web/directory")
    # The key the CLI sealed opens in the server (the same data directory, the same sealing key).
    account = _account(client, made)
    assert account.order("www.example.test").status_code == 201

    code, out, _ = cli("acme", "binding", "add", "-profile", "web", "-domains", "a.example.test")
    assert code == 0
    assert "hmac_key:" in out and "shown once" in out and "--eab-kid" in out
    code, out, _ = cli("acme", "binding", "list", "-json")
    listed = json.loads(out)
    assert len(listed) == 2 and made["kid"] in {b["kid"] for b in listed}
    assert made["hmac_key"] not in out

    code, out, _ = cli("acme", "validation", "-profile", "web", "-real-validation", "on", "-json")
    assert (code, json.loads(out)) == (0, {"profile": "web", "real_validation": True})

    code, _, err = cli("acme", "binding", "add", "-profile", "nope", "-domains", "x.test")
    assert code == 1 and "no profile 'nope'" in err
    code, _, err = cli("acme", "binding", "add", "-profile", "web", "-domains", "a.*.test")
    assert code == 1 and "is not a DNS name" in err
    assert cli("acme", "binding", "revoke", "-kid", made["kid"])[0] == 0
    code, out, _ = cli("acme", "binding", "revoke", "-kid", made["kid"], "-json")
    assert code == 1 and json.loads(out)["error"]["code"] == "conflict"
    _problem(account.order("www.example.test"), "unauthorized", 403)


def test_hmac_keys_never_start_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A key beginning with "-" would be read as an option after certbot's --eab-hmac-key.
    draws = iter([b"\xfb" + bytes(31), bytes(32)])  # base64url of 0xfb... begins with "-"
    monkeypatch.setattr(secrets, "token_bytes", lambda n: next(draws))
    key = acme_bindings._new_hmac_key()
    assert not key.startswith("-")
    assert key == base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
