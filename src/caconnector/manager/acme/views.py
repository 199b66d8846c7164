"""The JSON objects of RFC 8555 §7.1 for accounts, orders, authorizations and challenges."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from caconnector.manager.acme.orders import PROCESSING, VALID
from caconnector.manager.acme.urls import Urls
from caconnector.manager.db.models import AcmeAccount, AcmeAuthorization, AcmeOrder


def when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def directory(urls: Urls) -> dict[str, Any]:
    return {
        "newNonce": urls.new_nonce,
        "newAccount": urls.new_account,
        "newOrder": urls.new_order,
        "revokeCert": urls.revoke_cert,
        "keyChange": urls.key_change,
        "renewalInfo": urls.renewal_info,
        "meta": {
            "externalAccountRequired": True,
            "website": urls.base.rsplit("/acme/", 1)[0] + "/",
        },
    }


def account(value: AcmeAccount, urls: Urls) -> dict[str, Any]:
    return {
        "status": value.status,
        "contact": list(value.contact),
        "orders": urls.orders(value.id),
        "externalAccountBinding": {"kid": value.binding.kid},
        "createdAt": when(value.created_at),
    }


def order_list(session: Session, value: AcmeAccount, urls: Urls) -> dict[str, Any]:
    rows = session.scalars(
        select(AcmeOrder.id).where(AcmeOrder.account_id == value.id).order_by(AcmeOrder.created_at.desc())
    )
    return {"orders": [urls.order(order_id) for order_id in rows]}


def order(value: AcmeOrder, urls: Urls) -> dict[str, Any]:
    document: dict[str, Any] = {
        "status": value.status,
        "expires": when(value.expires_at),
        "identifiers": list(value.identifiers),
        "authorizations": [urls.authz(a.id) for a in value.authorizations],
        "finalize": urls.finalize(value.id),
    }
    if value.replaces:
        document["replaces"] = value.replaces
    if value.status == VALID and value.certificate_id is not None:
        document["certificate"] = urls.certificate(value.certificate_id)
    if value.error is not None:
        document["error"] = value.error
    return document


def retry_after(value: AcmeOrder) -> dict[str, str]:
    return {"Retry-After": "1"} if value.status == PROCESSING else {}


def challenge(authz: AcmeAuthorization, item: dict[str, Any], urls: Urls) -> dict[str, Any]:
    document = {
        "type": item["type"],
        "url": urls.challenge(authz.id, str(item["type"])),
        "status": item["status"],
        "token": authz.token,
    }
    for key in ("validated", "error"):
        if key in item:
            document[key] = item[key]
    return document


def authorization(authz: AcmeAuthorization, urls: Urls) -> dict[str, Any]:
    document: dict[str, Any] = {
        "identifier": {"type": "dns", "value": authz.identifier},
        "status": authz.status,
        "expires": when(authz.expires_at),
        # Empty for a name inside the binding's domains: it was valid from the start, nothing to solve.
        "challenges": [challenge(authz, item, urls) for item in authz.challenges],
    }
    if authz.wildcard:
        document["wildcard"] = True
    return document
