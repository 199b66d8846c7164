"""The web UI's session and form guards, through the app in process (the browser tests in tests/ui/
cover the pages end to end): sign-in, the cookie's flags, CSRF, roles, the idle timeout, sign-out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.manager.conftest import Caller, FakeClock
from tests.manager.lifecycle_support import make_lab

from caconnector.manager.runtime import Runtime
from caconnector.manager.services import downloads
from caconnector.manager.ui.session import COOKIE

PAGES = ("/ui/connectors", "/ui/backends", "/ui/cas", "/ui/profiles", "/ui/certificates",
         "/ui/certificates?status=Issued&expiring_days=30", "/ui/audit", "/ui/about")  # fmt: skip


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: TestClient, caller: Caller) -> str:
    """Signs `caller` in; returns the CSRF token of the signed-in session."""
    page = client.get("/ui/signin")
    assert page.status_code == 200
    answer = client.post(
        "/ui/signin",
        data={"csrf_token": _csrf(page.text), "username": caller.username, "password": caller.password,
              "next": "/connectors"},
        follow_redirects=False,
    )  # fmt: skip
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui/connectors"
    return _csrf(client.get("/ui/connectors").text)


def test_pages_need_a_session_and_sign_in_works(client: TestClient, admin: Caller) -> None:
    first = client.get("/ui/certificates", follow_redirects=False)
    assert first.status_code == 303
    assert first.headers["location"] == "/ui/signin?next=/certificates"
    sign_in(client, admin)
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert "Sign out" in response.text
        assert response.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


def test_the_cookie_is_httponly_strict_and_scoped(client: TestClient, admin: Caller) -> None:
    response = client.get("/ui/signin")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for flag in ("HttpOnly", "SameSite=strict", "Path=/ui"):
        assert flag.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # plain HTTP here; Secure on HTTPS (the browser tests)


def test_a_wrong_password_is_refused_without_saying_which(client: TestClient, admin: Caller) -> None:
    page = client.get("/ui/signin")
    for username, password in ((admin.username, "wrong"), ("nobody", admin.password)):
        answer = client.post("/ui/signin", data={"csrf_token": _csrf(page.text), "username": username,
                                                 "password": password})  # fmt: skip
        assert answer.status_code == 401
        assert "The username or password is not right." in answer.text
        assert admin.password not in answer.text
    assert client.get("/ui/connectors", follow_redirects=False).status_code == 303


def test_sign_in_without_the_forms_token_is_refused(client: TestClient, admin: Caller) -> None:
    answer = client.post("/ui/signin", data={"username": admin.username, "password": admin.password})
    assert answer.status_code == 403
    assert client.get("/ui/connectors", follow_redirects=False).status_code == 303


def test_posts_need_the_csrf_token_and_the_role(client: TestClient, admin: Caller, auditor: Caller) -> None:
    token = sign_in(client, admin)
    assert client.post("/ui/connectors/add", data={"name": "no-token"}).status_code == 403
    assert client.post("/ui/connectors/add", data={"name": "bad", "csrf_token": "x" * 43}).status_code == 403
    added = client.post(
        "/ui/connectors/add", data={"name": "dc1", "csrf_token": token}, follow_redirects=False
    )
    assert added.status_code == 303
    rows = client.get("/ui/connectors/rows").text
    assert "dc1" in rows and "Pending" in rows and "no-token" not in rows
    # A service refusal is shown next to the form, readable.
    again = client.post("/ui/connectors/add", data={"name": "dc1", "csrf_token": token})
    assert again.status_code == 422
    assert "a connector named &#39;dc1&#39; already exists" in again.text
    client.cookies.clear()
    auditor_token = sign_in(client, auditor)
    page = client.get("/ui/connectors").text
    assert "dc1" in page
    assert not re.search(r">\s*(Add|Edit|Restore|Delete|Revoke)\b", page)
    refused = client.post("/ui/connectors/add", data={"name": "dc2", "csrf_token": auditor_token})
    assert refused.status_code == 403
    assert "may not do this" in refused.text


def test_an_idle_session_ends_and_sign_out_ends_it(
    client: TestClient, admin: Caller, clock: FakeClock
) -> None:
    sign_in(client, admin)
    clock.advance(minutes=29)
    assert client.get("/ui/about").status_code == 200
    clock.advance(minutes=29)  # 29 minutes after the last request: still in
    assert client.get("/ui/about").status_code == 200
    # Polling a table does not count as use.
    clock.advance(minutes=20)
    assert client.get("/ui/connectors/rows", headers={"X-UI-Poll": "1"}).status_code == 200
    clock.advance(minutes=11)
    assert client.get("/ui/about", follow_redirects=False).status_code == 303
    token = sign_in(client, admin)
    assert client.post("/ui/signout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    assert client.get("/ui/about", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("value", ["garbage", "", "eyJub25jZSI6ICIifQ=="])
def test_a_forged_cookie_is_no_session(client: TestClient, value: str) -> None:
    client.cookies.set(COOKIE, value, path="/ui")
    assert client.get("/ui/connectors", follow_redirects=False).status_code == 303


def test_failed_sign_ins_are_throttled(client: TestClient, admin: Caller) -> None:
    page = client.get("/ui/signin")
    fields = {"csrf_token": _csrf(page.text), "username": admin.username, "password": "wrong"}
    answers: list[int] = []
    while len(answers) < 20 and 429 not in answers:  # an attempt comes back every 6 s: argon2 takes time
        answers.append(client.post("/ui/signin", data=fields).status_code)
    assert answers[:10] == [401] * 10
    assert answers[-1] == 429
    # The right password is refused too until the address has earned another attempt.
    refused = client.post("/ui/signin", data={**fields, "password": admin.password})
    assert refused.status_code == 429
    assert "Too many failed sign-ins" in refused.text


def test_refusals_are_readable_pages(client: TestClient, admin: Caller) -> None:
    """Unknown ids, bad filters and refused actions: a page saying what is wrong, never a traceback."""
    token = sign_in(client, admin)
    cases = [
        ("get", "/ui/connectors/nope/edit", 404, "no connector with id &#39;nope&#39;"),
        ("get", "/ui/certificates/nope", 404, "no certificate with id &#39;nope&#39;"),
        ("get", "/ui/certificates/nope/download?format=pem", 409, "no certificate with id"),
        ("get", "/ui/certificates/nope/download?format=zip", 404, "no download format &#39;zip&#39;"),
        ("get", "/ui/backends/nope/scans/nope", 404, "no scan"),
        ("get", "/ui/cas/nope/certificate", 404, "no certificate is known for CA"),
        ("get", "/ui/profiles/nope/edit", 404, "no profile with id"),
        ("get", "/ui/certificates?status=Bogus", 422, "Not a filter this page knows"),
        ("get", "/ui/certificates?expiring_days=soon", 422, "Expiring within: a whole number of days"),
        ("get", "/ui/certificates?serial=xyz", 422, "serial:"),
        ("get", "/ui/certificates?cursor=garbage", 422, ""),
        ("get", "/ui/audit?since=yesterday", 422, "Since: a date as YYYY-MM-DD"),
        ("post", "/ui/connectors/nope/restore", 422, "no connector with id"),
        ("post", "/ui/connectors/nope/delete", 422, "no connector with id"),
        ("post", "/ui/certificates/nope/revoke", 404, "no certificate with id"),
        ("post", "/ui/certificates/nope/renew", 404, "no certificate with id"),
        ("post", "/ui/backends/nope/scan", 422, "no backend with id"),
        ("post", "/ui/profiles/new", 422, "Terms: give at least one term"),
        ("post", "/ui/certificates/enroll", 422, "CSR: paste the certificate request"),
    ]
    for method, path, status, text in cases:
        if method == "get":
            answer = client.get(path)
        else:
            answer = client.post(path, data={"csrf_token": token, "terms": "", "cert_type": "server"})
        assert answer.status_code == status, (path, answer.text)
        assert answer.headers["content-type"].startswith("text/html"), path
        assert text in answer.text, (path, answer.text)
        assert "Traceback" not in answer.text


def test_an_expired_token_is_not_shown(client: TestClient, admin: Caller, clock: FakeClock) -> None:
    token = sign_in(client, admin)
    added = client.post(
        "/ui/connectors/add", data={"name": "late", "csrf_token": token}, follow_redirects=False
    )
    path = added.headers["location"]
    shown = client.get(path).text
    installation_token = re.search(r'id="token" readonly value="([^"]+)"', shown)
    assert installation_token, shown
    assert (
        f"ca-connector install -token {installation_token.group(1)} -manager http://127.0.0.1:8443" in shown
    )
    clock.advance(hours=25)
    sign_in(client, admin)  # the session has been idle for a day
    later = client.get(path).text
    assert installation_token.group(1) not in later
    assert "No unused installation token" in later
    assert installation_token.group(1) not in client.get(path.replace("/token", "/edit")).text


def test_ca_backends_show_organizations_and_products(
    runtime: Runtime, client: TestClient, admin: Caller, tmp_path: Path
) -> None:
    lab = make_lab(runtime, client, tmp_path)
    lab.report(
        client,
        organizations=[
            {"id": "112233", "name": "Example Corp", "status": "validated"},
            {"id": "445566", "name": "Other Ltd", "status": "pending"},
        ],
        products=[{"id": "ssl_plus", "name": "Standard SSL", "type": "ssl_certificate", "ca_ids": []}],
    )
    sign_in(client, admin)
    rows = client.get("/ui/backends/rows")
    assert rows.status_code == 200, rows.text
    for shown in ("Example Corp: validated", "Other Ltd: pending", "Standard SSL", "server"):
        assert shown in rows.text


def test_the_add_dialog_links_the_package_the_manager_serves(
    client: TestClient, runtime: Runtime, admin: Caller
) -> None:
    token = sign_in(client, admin)
    added = client.post(
        "/ui/connectors/add", data={"name": "pkg", "csrf_token": token}, follow_redirects=False
    )
    path = added.headers["location"]
    assert "pip install" in client.get(path).text  # nothing in the downloads directory yet
    directory = downloads.downloads_dir(runtime.settings)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca-connector_9.9.9_amd64.deb").write_bytes(b"a package")
    shown = client.get(path).text
    assert 'href="http://127.0.0.1:8443/downloads/ca-connector.deb"' in shown
    assert "Download the connector package" in shown
