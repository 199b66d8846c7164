"""The ACME HTTP face: `/acme/{profile}/...`, one directory per profile.

Every answer carries a fresh Replay-Nonce and `Link: <directory>;rel="index"`; every refusal is a
problem document of RFC 8555's types. A POST is checked in this order: content type, a readable JWS,
its nonce (used up in its own transaction, so a refused request cannot be replayed either), then in
the work's transaction the `url`, the key (`jwk` or the account `kid`) and the signature.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from caconnector.manager.acme import accounts, nonces, orders, views
from caconnector.manager.acme import jws as jose
from caconnector.manager.acme.problems import PROBLEM_JSON, AcmeError, malformed, unauthorized
from caconnector.manager.acme.urls import PREFIX, Urls
from caconnector.manager.db.models import AcmeAccount, Profile
from caconnector.manager.runtime import Runtime, runtime_of
from caconnector.manager.services import certificates
from caconnector.manager.services.errors import Conflict, Invalid, NotFound
from caconnector.manager.services.profiles import find_profile
from caconnector.pki.revocation import RevocationReason

router = APIRouter(prefix=PREFIX, include_in_schema=False)

JOSE_JSON = "application/jose+json"
PEM_CHAIN = "application/pem-certificate-chain"
RENEWAL_RETRY_SECONDS = 6 * 3600
KeyFrom = Literal["kid", "jwk", "either"]


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"


@dataclass
class Signed:
    """A verified request: its payload, the account that signed it (None for a `jwk` request)."""

    jws: jose.Jws
    account: AcmeAccount | None
    jwk: dict[str, Any] | None
    key: jose.PublicKey

    @property
    def post_as_get(self) -> bool:
        return self.jws.payload == b""

    def payload(self) -> dict[str, Any]:
        return {} if self.post_as_get else self.jws.payload_json()

    def signer(self) -> AcmeAccount:
        if self.account is None:  # _verify refuses a jwk where a kid is needed; this is a safety net
            raise malformed("this request is signed by an account: give its URL as kid")
        return self.account


@dataclass
class Ctx:
    runtime: Runtime
    session: Session
    profile: Profile
    urls: Urls

    @property
    def now(self) -> dt.datetime:
        return self.runtime.now()


Handler = Callable[[Ctx, Signed], Reply]


def _origin(request: Request) -> tuple[str, str]:
    return f"{request.url.scheme}://{request.url.netloc}", str(request.scope.get("root_path", ""))


def _urls(request: Request, profile_name: str) -> Urls:
    origin, root = _origin(request)
    return Urls.of(origin, root, profile_name)


def _profile(session: Session, name: str) -> Profile:
    try:
        return find_profile(session, name)
    except Invalid:  # find_profile's refusal for a name that is in a body; here it is in the path
        raise malformed(f"no ACME directory here for profile {name!r}", 404) from None


def _render(runtime: Runtime, urls: Urls, reply: Reply) -> Response:
    with runtime.sessions.begin() as session:
        nonce = nonces.issue(session, runtime.now(), runtime.settings.acme_nonce_ttl_seconds)
    headers = {
        "Replay-Nonce": nonce,
        "Link": f'<{urls.directory}>;rel="index"',
        "Cache-Control": "no-store",
        **reply.headers,
    }
    if isinstance(reply.body, dict):
        content: bytes | str = json.dumps(reply.body, indent=2)
    else:
        content = reply.body or b""
    return Response(content, status_code=reply.status, headers=headers, media_type=reply.media_type)


def _problem(error: AcmeError) -> Reply:
    return Reply(error.status, error.body(), error.headers, PROBLEM_JSON)


async def _post(request: Request, profile_name: str, handler: Handler, key_from: KeyFrom = "kid") -> Response:
    body = await request.body()
    runtime = runtime_of(request)
    urls = _urls(request, profile_name)
    url = str(request.url).split("?", 1)[0]
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()

    def work() -> Response:
        try:
            reply = _signed(
                runtime, urls, profile_name, Incoming(url, content_type, body), handler, key_from=key_from
            )
        except AcmeError as error:
            reply = _problem(error)
        return _render(runtime, urls, reply)

    return await run_in_threadpool(work)


@dataclass(frozen=True)
class Incoming:
    url: str  # as the client asked for it, which the JWS `url` must name
    content_type: str
    body: bytes


def _signed(
    runtime: Runtime,
    urls: Urls,
    profile_name: str,
    incoming: Incoming,
    handler: Handler,
    *,
    key_from: KeyFrom,
) -> Reply:
    url, content_type, body = incoming.url, incoming.content_type, incoming.body
    if content_type != JOSE_JSON:
        raise malformed(f"send the JWS as Content-Type: {JOSE_JSON}", 415)
    try:
        document = json.loads(body)
    except ValueError:
        raise malformed("the request body is not JSON (a flattened JWS)") from None
    jws = jose.parse(document)
    with runtime.sessions.begin() as session:
        _profile(session, profile_name)  # an unknown directory is 404 before its nonce is spent
        fresh = nonces.consume(session, jws.protected.get("nonce"), runtime.now())
    if not fresh:
        raise AcmeError("badNonce", "the nonce is unknown, used or expired; retry with the Replay-Nonce sent")
    with runtime.sessions.begin() as session:
        profile = _profile(session, profile_name)
        ctx = Ctx(runtime, session, profile, urls)
        signed = _verify(ctx, jws, url, key_from)
        return handler(ctx, signed)


def _verify(ctx: Ctx, jws: jose.Jws, url: str, key_from: KeyFrom) -> Signed:
    protected = jws.protected
    if protected.get("url") != url:
        raise unauthorized(f"the JWS url {protected.get('url')!r} is not this request's URL {url}")
    has_jwk, has_kid = "jwk" in protected, "kid" in protected
    if has_jwk == has_kid:
        raise malformed("the protected header has exactly one of jwk and kid")
    if has_kid and key_from == "jwk":
        raise malformed("this request is signed with the new account's key, given as jwk")
    if has_jwk and key_from == "kid":
        raise malformed("this request is signed by an account: give its URL as kid, not jwk")
    account: AcmeAccount | None = None
    jwk: dict[str, Any] | None = None
    if has_kid:
        account = accounts.from_kid(ctx.session, protected["kid"], ctx.urls, ctx.profile)
        key = jose.public_key(account.jwk)
    else:
        key = jose.public_key(protected["jwk"])
        jwk = dict(protected["jwk"])
    jose.verify(jws, key)
    return Signed(jws, account, jwk, key)


# ---- unsigned ---------------------------------------------------------------------------------------------


@router.get("/{profile_name}/directory")
async def directory(profile_name: str, request: Request) -> Response:
    runtime, urls = runtime_of(request), _urls(request, profile_name)

    def work() -> Response:
        try:
            with runtime.sessions.begin() as session:
                _profile(session, profile_name)
                reply = Reply(body=views.directory(urls))
        except AcmeError as error:
            reply = _problem(error)
        return _render(runtime, urls, reply)

    return await run_in_threadpool(work)


@router.api_route("/{profile_name}/new-nonce", methods=["GET", "HEAD"])
async def new_nonce(profile_name: str, request: Request) -> Response:
    runtime, urls = runtime_of(request), _urls(request, profile_name)

    def work() -> Response:
        try:
            with runtime.sessions.begin() as session:
                _profile(session, profile_name)
            reply = Reply(200 if request.method == "HEAD" else 204, media_type="text/plain")
        except AcmeError as error:
            reply = _problem(error)
        return _render(runtime, urls, reply)

    return await run_in_threadpool(work)


@router.get("/{profile_name}/renewal-info/{cert_id}")
async def renewal_info(profile_name: str, cert_id: str, request: Request) -> Response:
    """RFC 9773: the window in which to renew, for anyone who has the certificate."""
    runtime, urls = runtime_of(request), _urls(request, profile_name)

    def work() -> Response:
        try:
            with runtime.sessions.begin() as session:
                _profile(session, profile_name)
                certificate = orders.certificate_for_cert_id(session, cert_id)
                if certificate is None:
                    raise malformed("this manager issued no certificate with that identifier", 404)
                window = orders.renewal_window(certificate, runtime.now())
                reply = Reply(
                    body={"suggestedWindow": window},
                    headers={"Retry-After": str(RENEWAL_RETRY_SECONDS)},
                )
        except AcmeError as error:
            reply = _problem(error)
        return _render(runtime, urls, reply)

    return await run_in_threadpool(work)


# ---- accounts ---------------------------------------------------------------------------------------------


@router.post("/{profile_name}/new-account")
async def new_account(profile_name: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        if signed.jwk is None:
            raise malformed("newAccount is signed with the new key, given as jwk")
        account, created = accounts.new_account(
            ctx.session, ctx.profile, signed.jws, signed.jwk, ctx.urls, box=ctx.runtime.box, now=ctx.now
        )
        headers = {"Location": ctx.urls.account(account.id)}
        return Reply(201 if created else 200, views.account(account, ctx.urls), headers)

    return await _post(request, profile_name, handle, key_from="jwk")


@router.post("/{profile_name}/acct/{account_id}")
async def account(profile_name: str, account_id: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        signer = signed.signer()
        if signer.id != account_id:
            raise unauthorized("an account can only read or change itself")
        if not signed.post_as_get:
            accounts.update(ctx.session, signer, signed.payload(), ctx.now)
        return Reply(body=views.account(signer, ctx.urls))

    return await _post(request, profile_name, handle)


@router.post("/{profile_name}/acct/{account_id}/orders")
async def account_orders(profile_name: str, account_id: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        signer = signed.signer()
        if signer.id != account_id:
            raise unauthorized("an account can only list its own orders")
        return Reply(body=views.order_list(ctx.session, signer, ctx.urls))

    return await _post(request, profile_name, handle)


@router.post("/{profile_name}/key-change")
async def key_change(profile_name: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        signer = signed.signer()
        accounts.change_key(ctx.session, signer, signed.jws, ctx.urls, ctx.now)
        return Reply(body=views.account(signer, ctx.urls))

    return await _post(request, profile_name, handle)


# ---- orders -----------------------------------------------------------------------------------------------


@router.post("/{profile_name}/new-order")
async def new_order(profile_name: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        order = orders.new_order(
            ctx.session, signed.signer(), ctx.profile, signed.payload(), settings=ctx.runtime.settings,
            now=ctx.now,
        )  # fmt: skip
        headers = {"Location": ctx.urls.order(order.id)}
        return Reply(201, views.order(order, ctx.urls), headers)

    return await _post(request, profile_name, handle)


@router.post("/{profile_name}/order/{order_id}")
async def order(profile_name: str, order_id: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        found = orders.order_of(ctx.session, signed.signer(), order_id)
        orders.refresh(found, ctx.now)
        return Reply(body=views.order(found, ctx.urls), headers=views.retry_after(found))

    return await _post(request, profile_name, handle)


@router.post("/{profile_name}/order/{order_id}/finalize")
async def finalize(profile_name: str, order_id: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        signer = signed.signer()
        # Locked (FOR UPDATE on PostgreSQL): two finalize requests at once make one request, not two.
        found = orders.order_of(ctx.session, signer, order_id)
        ctx.session.refresh(found, with_for_update=True)
        done = orders.finalize(ctx.session, signer, found, ctx.profile, signed.payload(), now=ctx.now)
        headers = {"Location": ctx.urls.order(done.id), **views.retry_after(done)}
        return Reply(body=views.order(done, ctx.urls), headers=headers)

    return await _post(request, profile_name, handle)


@router.post("/{profile_name}/authz/{authz_id}")
async def authorization(profile_name: str, authz_id: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        authz = orders.authorization_of(ctx.session, signed.signer(), authz_id)
        payload = signed.payload()
        if payload.get("status") == "deactivated":  # §7.5.2
            authz.status = "deactivated"
            orders.refresh(authz.order, ctx.now)
        elif payload:
            raise malformed("an authorization takes only {status: deactivated}")
        return Reply(body=views.authorization(authz, ctx.urls))

    return await _post(request, profile_name, handle)


@router.post("/{profile_name}/chall/{authz_id}/{kind}")
async def challenge(profile_name: str, authz_id: str, kind: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        signer = signed.signer()
        authz = orders.authorization_of(ctx.session, signer, authz_id)
        if signed.post_as_get:
            item = next((c for c in authz.challenges if c.get("type") == kind), None)
            if item is None:
                raise malformed(f"this authorization offers no {kind} challenge", 404)
        else:
            item = orders.respond_to_challenge(
                ctx.session, signer, authz, kind, settings=ctx.runtime.settings, now=ctx.now
            )
        headers = {"Link": f'<{ctx.urls.directory}>;rel="index", <{ctx.urls.authz(authz.id)}>;rel="up"'}
        return Reply(body=views.challenge(authz, item, ctx.urls), headers=headers)

    return await _post(request, profile_name, handle)


# ---- certificates -----------------------------------------------------------------------------------------


@router.post("/{profile_name}/cert/{certificate_id}")
async def certificate(profile_name: str, certificate_id: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        if not signed.post_as_get:
            raise malformed("download the certificate with POST-as-GET (an empty payload)")
        try:
            found = certificates.get_certificate(ctx.session, certificate_id)
        except NotFound:
            raise malformed("no such certificate", 404) from None
        if not orders.owns(ctx.session, signed.signer(), found):
            raise orders.unauthorized_for(signed.signer())
        return Reply(body=orders.pem_chain(found), media_type=PEM_CHAIN)

    return await _post(request, profile_name, handle)


@router.post("/{profile_name}/revoke-cert")
async def revoke_cert(profile_name: str, request: Request) -> Response:
    def handle(ctx: Ctx, signed: Signed) -> Reply:
        payload = signed.payload()
        found, leaf = orders.certificate_by_der(ctx.session, jose.b64decode(payload.get("certificate"),
                                                                            "certificate"))  # fmt: skip
        if signed.account is not None:
            if not orders.owns(ctx.session, signed.account, found):
                raise orders.unauthorized_for(signed.account)
            actor = accounts.actor(signed.account)
        else:
            # Signed with the certificate's own key (§7.6): proof enough, whoever holds it.
            if signed.key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ) != leaf.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ):
                raise unauthorized("the jwk is not the certificate's key; sign with it or with the account")
            actor = f"acme:certificate-key:{found.id}"
        code = payload.get("reason", 0)
        reason = _revocation_reason(code)
        try:
            certificates.request_revocation(ctx.session, found, reason.value, ctx.now, actor)
        except Conflict as exc:
            raise AcmeError("alreadyRevoked", exc.message) from None
        except Invalid as exc:
            raise malformed(exc.message) from None
        return Reply(200, media_type="text/plain")

    return await _post(request, profile_name, handle, key_from="either")


def _revocation_reason(code: object) -> RevocationReason:
    """RFC 8555 7.6: `reason` is an RFC 5280 CRLReason code (a JSON integer, not a boolean)."""
    if isinstance(code, int) and not isinstance(code, bool):
        with contextlib.suppress(ValueError):
            return RevocationReason.from_code(code)
    raise AcmeError("badRevocationReason", f"reason {code!r} is not an RFC 5280 code we revoke with")


def install(app: FastAPI) -> None:
    """Mount the ACME directories on the manager's app (outside /api/v1: ACME clients bring no API key)."""
    app.include_router(router)
