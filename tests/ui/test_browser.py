"""Issue 16's acceptance in a real browser: headless Debian chromium (Playwright) against a live
`ca-manager serve` and a live `ca-connector run`. An administrator follows the reference document's
"Add a CA connector" steps literally, registers the connector on the command line and sees it turn
Connected without a reload; then CA Backends, CAs, a profile, an enrollment through the form (pasted and
uploaded CSRs), downloads, a revocation, the audit log and About. An auditor sees no changing buttons and is
refused when posting a form anyway; a form without its CSRF token is refused. Every page is checked with
axe-core and screenshotted at desktop and phone width under test-artifacts/ui/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect
from tests.e2e.processes import BIN, Process, clean_env, run
from tests.ui.conftest import DESKTOP, LiveManager, capture

from caconnector.testing import make_csr_pem

pytestmark = pytest.mark.slow

CONNECTOR = str(BIN / "ca-connector")
WAIT_MS = 30_000
# Assertions wait as long as actions do: a connector's first poll, a certificate's issuance.
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def agent(live: LiveManager) -> Iterator[dict[str, object]]:
    """Where the test's connector lives; its `ca-connector run` is started by the test once registered."""
    home = live.directory / "connector"
    state: dict[str, object] = {"env": clean_env(CA_CONNECTOR_HOME=str(home)), "process": None}
    yield state
    process = state["process"]
    if isinstance(process, Process):
        process.stop()


def _context(browser: Browser) -> BrowserContext:
    context = browser.new_context(
        ignore_https_errors=True,  # the manager's certificate is from the test's own CA
        viewport=DESKTOP,
        permissions=["clipboard-read", "clipboard-write"],
        accept_downloads=True,
    )
    context.set_default_timeout(WAIT_MS)
    return context


def _sign_in(page: Page, live: LiveManager, username: str) -> None:
    page.goto(f"{live.url}/ui/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(live.passwords[username])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="CA Connectors")).to_be_visible()


def _row(page: Page, name: str) -> Locator:
    return page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=re.compile(rf"^{name}\b")))


def _post_without_token(page: Page, path: str, fields: dict[str, str], with_token: bool) -> int:
    """A form post made by script, as a forged or replayed form would be: with the page's own CSRF
    token (read from its sign-out form) or without one."""
    status: int = page.evaluate(
        """async ([path, fields, withToken]) => {
            const body = new URLSearchParams(fields);
            if (withToken) body.set('csrf_token', document.querySelector('input[name=csrf_token]').value);
            const answer = await fetch(path, {method: 'POST', body, redirect: 'manual'});
            return answer.status;
        }""",
        [path, fields, with_token],
    )
    return status


def _choose_profile(page: Page, name: str) -> None:
    select = page.get_by_label("Certificate profile")
    value = select.locator("option", has_text=re.compile(rf"^{name} \(")).get_attribute("value")
    assert value
    select.select_option(value)


def _download(page: Page, link_name: str, into: Path) -> bytes:
    with page.expect_download() as info:
        page.get_by_role("link", name=link_name, exact=True).click()
    target = into / info.value.suggested_filename
    info.value.save_as(target)
    return target.read_bytes()


def test_an_administrator_follows_the_reference_document(
    live: LiveManager, browser: Browser, agent: dict[str, object], tmp_path: Path
) -> None:
    context = _context(browser)
    page = context.new_page()
    page.goto(f"{live.url}/ui/connectors")
    capture(page, "signin")
    _sign_in(page, live, "admin")
    cookie = next(c for c in context.cookies() if c["name"] == "ca_manager_session")
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")

    # Integrations → CA Connectors → Add → name, comments → Next → copy the token → Save.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="CA Connectors").click()
    page.get_by_role("button", name="Add", exact=True).click()
    dialog = page.get_by_role("dialog", name="Add CA Connector")
    dialog.get_by_label("Name").fill("bad/name")
    dialog.get_by_role("button", name="Next").click()
    expect(page.get_by_role("dialog", name="Add CA Connector").get_by_role("alert")).to_contain_text(
        "invalid connector name 'bad/name'"
    )
    capture(page, "connector-add-error")
    dialog = page.get_by_role("dialog", name="Add CA Connector")
    dialog.get_by_label("Name").fill("dc1")
    dialog.get_by_label("Comments").fill("next to the lab CAs")
    capture(page, "connector-add")
    dialog.get_by_role("button", name="Next").click()
    dialog = page.get_by_role("dialog", name="Add CA Connector")
    dialog.get_by_role("button", name="Copy the installation token").click()
    expect(dialog.get_by_role("button", name="Copied the installation token")).to_be_visible()
    token: str = page.evaluate("() => navigator.clipboard.readText()")
    assert len(token) >= 22
    assert dialog.get_by_label("Installation token").input_value() == token
    expect(dialog.locator("#install-command")).to_have_text(
        f"ca-connector install -token {token} -manager {live.url}"
    )
    expect(dialog).to_contain_text("pip install")
    capture(page, "connector-token")
    dialog.get_by_role("button", name="Save").click()
    expect(_row(page, "dc1")).to_contain_text("Pending")
    # Edit shows the unused token while Pending.
    _row(page, "dc1").get_by_role("link", name="Edit").click()
    expect(
        page.get_by_role("dialog", name="Edit CA Connector").get_by_label("Installation token")
    ).to_have_value(token)
    capture(page, "connector-edit")
    page.get_by_role("dialog", name="Edit CA Connector").get_by_role("link", name="Cancel").click()

    # Register on the command line with that token; the row turns Connected without a reload.
    page.evaluate("() => { window.notReloaded = true; }")
    env = agent["env"]
    assert isinstance(env, dict)
    registered = run([CONNECTOR, "register", "-token", token, "-manager", live.url,
                      "-cacert", str(live.tls.ca_pem)], env)  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    added = run([CONNECTOR, "backend", "add", "-name", "LocalCA", "-type", "local"], env)
    assert added.returncode == 0, added.stderr
    agent["process"] = Process("agent", [CONNECTOR, "run"], live.directory / "agent.log", env).start()
    expect(_row(page, "dc1")).to_contain_text("Connected")
    assert page.evaluate("() => window.notReloaded === true")
    # A second connector, to show Pending beside Connected, and Restore/Delete on the first.
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_role("dialog", name="Add CA Connector").get_by_label("Name").fill("dc2-pending")
    page.get_by_role("dialog", name="Add CA Connector").get_by_role("button", name="Next").click()
    page.get_by_role("dialog", name="Add CA Connector").get_by_role("button", name="Save").click()
    expect(_row(page, "dc1")).to_contain_text("Connected")
    capture(page, "connectors")
    _row(page, "dc2-pending").get_by_role("link", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete CA Connector")
    expect(confirm).to_contain_text("Delete connector dc2-pending?")
    capture(page, "connector-delete")
    confirm.get_by_role("button", name="Delete").click()
    expect(page.get_by_role("rowheader", name=re.compile("dc2-pending"))).to_have_count(0)

    # A form without its CSRF token is refused, and changes nothing.
    assert _post_without_token(page, "/ui/connectors/add", {"name": "forged"}, with_token=False) == 403
    page.reload()
    expect(page.get_by_role("rowheader", name=re.compile("forged"))).to_have_count(0)

    # Issuers → CA Backends: the local CA backend appears by itself.
    page.get_by_role("link", name="CA Backends").click()
    backend = _row(page, "LocalCA")
    expect(backend).to_contain_text("Available")
    cells = backend.get_by_role("cell")
    expect(cells.nth(1)).to_have_text("1")  # Private CAs
    expect(cells.nth(2)).to_have_text("dc1")  # Connector
    expect(cells.nth(3)).to_have_text("LocalCA")  # Local CA Backend
    backend.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("status")).to_contain_text("Refresh requested")
    capture(page, "backends")

    # Issuers → CAs, and the CA certificate.
    page.get_by_role("link", name="CAs", exact=True).click()
    expect(page.get_by_role("rowheader").first).to_be_visible()
    capture(page, "cas")
    ca_pem = _download(
        page, page.get_by_role("link", name=re.compile("^Download")).first.inner_text(), tmp_path
    )
    ca = x509.load_pem_x509_certificate(ca_pem)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    # Enrollment → Certificate Profiles: create (an error first, shown next to the form), edit.
    page.get_by_role("link", name="Certificate Profiles").click()
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_label("Name").fill("web")
    page.get_by_label("CA backend").select_option(label="LocalCA (dc1)")
    page.get_by_label("Terms (days)").fill("ninety")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Terms: whole numbers of days")
    capture(page, "profile-form")
    page.get_by_label("Terms (days)").fill("90, 30")
    page.get_by_role("button", name="Save").click()
    expect(_row(page, "web")).to_contain_text("90, 30")
    _row(page, "web").get_by_role("link", name="Edit").click()
    page.get_by_label("Template").fill("server")
    page.get_by_role("button", name="Save").click()
    expect(_row(page, "web")).to_contain_text("server")
    capture(page, "profiles")
    # Delete asks first.
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_label("Name").fill("short-lived")
    page.get_by_label("CA backend").select_option(label="LocalCA (dc1)")
    page.get_by_role("button", name="Save").click()
    _row(page, "short-lived").get_by_role("link", name="Delete").click()
    page.get_by_role("dialog", name="Delete Certificate Profile").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("rowheader", name="short-lived")).to_have_count(0)
    expect(_row(page, "web")).to_be_visible()

    # Certificates → Enroll with a pasted CSR; the detail page follows it to Issued by itself.
    page.get_by_role("link", name="Certificates", exact=True).click()
    page.get_by_role("button", name="Enroll").click()
    _choose_profile(page, "web")
    page.get_by_label("CSR (PEM)").fill("not a certificate request")
    page.get_by_role("button", name="Enroll").click()
    expect(page.get_by_role("alert")).to_contain_text("not a PEM or DER certificate request")
    _choose_profile(page, "web")
    page.get_by_label("CSR (PEM)").fill(make_csr_pem("shop.example.test"))
    capture(page, "enroll")
    page.get_by_role("button", name="Enroll").click()
    expect(page.locator("#cert-status")).to_have_text("Issued")
    capture(page, "certificate")
    # Every format: the leaf and its issuer where the format carries a chain.
    assert len(x509.load_pem_x509_certificates(_download(page, "Certificate and chain (PEM)", tmp_path))) == 2
    assert len(x509.load_pem_x509_certificates(_download(page, "Chain only (PEM)", tmp_path))) == 1
    assert x509.load_der_x509_certificate(_download(page, "Certificate (DER)", tmp_path)).serial_number
    assert len(pkcs7.load_der_pkcs7_certificates(_download(page, "PKCS #7", tmp_path))) == 2
    leaf = x509.load_pem_x509_certificates(_download(page, "Certificate (PEM)", tmp_path))[0]
    assert leaf.subject.rfc4514_string() == "CN=shop.example.test"
    # Revoke, with a reason.
    page.get_by_label("Reason").select_option("superseded")
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("#cert-status")).to_have_text("Revoked")
    expect(page.get_by_text("(superseded)")).to_be_visible()
    # Enroll again with an uploaded CSR file, then renew it.
    csr_file = tmp_path / "api.csr"
    csr_file.write_text(make_csr_pem("api.example.test"))
    page.get_by_role("link", name="Certificates", exact=True).click()
    page.get_by_role("button", name="Enroll").click()
    _choose_profile(page, "web")
    page.get_by_label("CSR file").set_input_files(str(csr_file))
    page.get_by_role("button", name="Enroll").click()
    expect(page.locator("#cert-status")).to_have_text("Issued")
    page.get_by_role("button", name="Renew").click()
    expect(page.locator("#cert-status")).to_have_text("Issued")
    expect(page.get_by_role("link", name="the earlier certificate")).to_be_visible()
    # The list, filtered: Revoked, and expiring within 100 days (all of them: 90-day terms).
    page.get_by_role("link", name="Certificates", exact=True).click()
    expect(page.get_by_role("rowheader")).to_have_count(3)
    capture(page, "certificates")
    page.get_by_label("Status").select_option("Revoked")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("rowheader")).to_have_count(1)
    expect(page.get_by_role("rowheader")).to_contain_text("CN=shop.example.test")
    page.get_by_label("Status").select_option("")
    page.get_by_label("Expiring within (days)").fill("100")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("rowheader")).to_have_count(3)
    page.get_by_label("Expiring within (days)").fill("10")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("rowheader")).to_have_count(0)

    # Scan the backend: progress, then the number imported (all known already: 0 imported).
    page.get_by_role("link", name="CA Backends").click()
    _row(page, "LocalCA").get_by_role("button", name="Scan").click()
    expect(page.get_by_role("heading", name="Scan of LocalCA")).to_be_visible()
    expect(page.locator("#scan-progress")).to_contain_text("Scan finished: 0 imported, 3 already known")
    capture(page, "scan")

    # Restore the connector: a new token and the register -force command.
    page.get_by_role("link", name="CA Connectors").click()
    _row(page, "dc1").get_by_role("button", name="Restore").click()
    restore = page.get_by_role("dialog", name="Restore CA Connector")
    new_token = restore.get_by_label("Installation token").input_value()
    assert new_token and new_token != token
    expect(restore.locator("#install-command")).to_have_text(
        f"ca-connector register -token {new_token} -force"
    )
    capture(page, "connector-restore")
    restore.get_by_role("button", name="Close").click()

    # Audit: who did what, filtered; About.
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Action").fill("certificate.revoke")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("row").filter(has_text="user:admin")).to_have_count(1)
    page.get_by_label("Action").fill("")
    page.get_by_role("button", name="Filter").click()
    capture(page, "audit")
    page.get_by_role("link", name="About").click()
    expect(page.locator("#manager-version")).to_contain_text("ca-manager 0.")
    expect(page.locator("#connector-version")).to_contain_text("ca-connector 0.")
    capture(page, "about")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(f"{live.url}/ui/certificates")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    context.close()
    # Neither the password nor a token reached the manager's log.
    log = live.process.log()
    for secret in (live.passwords["admin"], token, new_token):
        assert secret not in log


CHANGING = re.compile(r"^(Add|Edit|Restore|Delete|Revoke|Renew|Enroll|Refresh|Scan)\b")


def test_an_auditor_sees_everything_and_changes_nothing(live: LiveManager, browser: Browser) -> None:
    live.cli("connector", "add", "-name", "seen-by-auditor")  # so the table has a row either way
    context = _context(browser)
    page = context.new_page()
    _sign_in(page, live, "audrey")
    expect(_row(page, "seen-by-auditor")).to_contain_text("Pending")
    for link in ("CA Connectors", "CA Backends", "Certificate Profiles", "Certificates"):
        page.get_by_role("navigation", name="Main").get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        expect(page.get_by_role("button", name=CHANGING)).to_have_count(0)
        expect(page.get_by_role("link", name=CHANGING)).to_have_count(0)
    capture(page, "auditor-certificates")
    # Posting a form anyway, with a valid session and CSRF token, is refused by role.
    page.get_by_role("link", name="CA Connectors").click()
    assert _post_without_token(page, "/ui/connectors/add", {"name": "by-auditor"}, with_token=True) == 403
    assert _post_without_token(page, "/ui/profiles/new", {"name": "by-auditor"}, with_token=True) == 403
    page.goto(f"{live.url}/ui/connectors/add")
    expect(page.get_by_role("alert")).to_contain_text("Your role (auditor) may not change connectors.")
    page.goto(f"{live.url}/ui/connectors")
    expect(page.get_by_role("rowheader", name=re.compile("^by-auditor"))).to_have_count(0)
    context.close()
