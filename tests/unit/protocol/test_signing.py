"""The connector channel's request signatures: what verifies, and every way a token is refused."""

from __future__ import annotations

import base64
import datetime as dt
import json

import jwt
import pytest

from caconnector.protocol.signing import (
    ALGORITHM,
    SignatureInvalid,
    generate_connector_key,
    sign_request,
    unverified_connector_id,
    verify_request,
)

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)


def _segment(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def test_a_signed_request_verifies_for_its_method_and_path() -> None:
    key = generate_connector_key()
    token = sign_request(key, "c1", "POST", "/connector/v1/poll", NOW)
    assert unverified_connector_id(token) == "c1"
    verified = verify_request(token, key.public_key(), "post", "/connector/v1/poll", NOW)
    assert verified.connector_id == "c1"
    assert verified.expires_at > NOW
    with pytest.raises(SignatureInvalid, match="another method or path"):
        verify_request(token, key.public_key(), "POST", "/connector/v1/hello", NOW)


def test_another_key_does_not_verify() -> None:
    token = sign_request(generate_connector_key(), "c1", "GET", "/x", NOW)
    with pytest.raises(SignatureInvalid, match="does not verify"):
        verify_request(token, generate_connector_key().public_key(), "GET", "/x", NOW)


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("", "not a JWT"),
        ("no-dots-at-all", "not a JWT"),
        ("!!!!.e30.sig", "not a JWT"),  # not base64url
        ("A.e30.sig", "not a JWT"),  # one character: no byte
        (_segment("a string") + ".e30.sig", "names no connector"),
        (_segment([1, 2]) + ".e30.sig", "names no connector"),
        (_segment({"alg": "EdDSA"}) + ".e30.sig", "names no connector"),
        (_segment({"kid": 7}) + ".e30.sig", "names no connector"),
        (_segment({"kid": ""}) + ".e30.sig", "names no connector"),
        (base64.urlsafe_b64encode(b"\xff\xfe{").decode().rstrip("=") + ".e30.sig", "not a JWT"),
        ("x" * 2000 + ".e30.sig", "not a JWT"),
    ],
)
def test_a_malformed_header_is_refused_before_any_lookup(token: str, words: str) -> None:
    with pytest.raises(SignatureInvalid, match=words):
        unverified_connector_id(token)


def test_a_key_id_other_than_the_issuer_is_refused() -> None:
    key = generate_connector_key()
    claims = {
        "iss": "c1",
        "htm": "GET",
        "htu": "/x",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 60,
        "jti": "j1",
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": "c2"})
    assert unverified_connector_id(token) == "c2"
    with pytest.raises(SignatureInvalid, match="issuer and key id differ"):
        verify_request(token, key.public_key(), "GET", "/x", NOW)
