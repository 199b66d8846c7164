"""A live lab for the ACME server's tests: `ca-manager serve` over TLS (a trustme CA), a connector with
a local CA, profiles, and an ACME binding made with the CLI; plus how to run certbot against it."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from tests.e2e.conftest import Manager
from tests.e2e.processes import BIN, clean_env, make_tls, run, serving_manager
from tests.e2e.test_lifecycle import Site
from tests.ports import free_port

CERTBOT = str(BIN / "certbot")
# Names the manager's http-01 validation looks up in its host map (CA_MANAGER_ACME_HOSTS), not DNS.
VALIDATED_NAMES = ("outside.validated.test",)


@dataclass
class Binding:
    profile: str
    directory: str
    kid: str
    hmac_key: str
    domains: list[str]


@dataclass
class Lab:
    manager: Manager
    site: Site
    http01_port: int
    ca_id: str
    bindings: dict[str, Binding]
    tmp: Path

    def api(self) -> httpx.Client:
        return self.manager.api()

    def certificates(self) -> list[dict[str, Any]]:
        with self.api() as api:
            items: list[dict[str, Any]] = api.get("/certificates", params={"limit": 500}).json()["items"]
            return items

    def certbot(self, home: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """certbot with its directories in `home`, trusting the manager's TLS CA only."""
        argv = [
            CERTBOT, *args, "--config-dir", str(home / "config"), "--work-dir", str(home / "work"),
            "--logs-dir", str(home / "logs"), "-n", "--no-random-sleep-on-renew",
        ]  # fmt: skip
        env = clean_env(REQUESTS_CA_BUNDLE=str(self.manager.tls.ca_pem))
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)

    def register_args(self, binding: Binding) -> list[str]:
        return [
            "--server", binding.directory, "--eab-kid", binding.kid, f"--eab-hmac-key={binding.hmac_key}",
            "--agree-tos", "--register-unsafely-without-email",
        ]  # fmt: skip

    def verify_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.manager.tls.ca_pem))


def _profile(api: httpx.Client, backend: dict[str, Any], name: str) -> None:
    response = api.post("/profiles", json={
        "name": name, "backend": backend["id"], "ca": backend["cas"][0]["id"], "cert_type": "server",
        "terms_days": [90], "key_types": ["ec-p256", "rsa-2048"],
    })  # fmt: skip
    assert response.status_code == 201, response.text


def _binding(manager: Manager, profile: str, domains: str) -> Binding:
    """Made with the CLI, as an administrator on the manager's host would."""
    made = manager.cli("acme", "binding", "add", "-profile", profile, "-domains", domains)
    return Binding(profile, made["directory_url"], made["kid"], made["hmac_key"], made["domains"])


def _api_binding(api: httpx.Client, profile: str, domains: list[str]) -> Binding:
    """Made through the REST API (each CLI process costs seconds on a busy machine)."""
    response = api.post("/acme-bindings", json={"profile": profile, "domains": domains})
    assert response.status_code == 201, response.text
    made = response.json()
    return Binding(profile, made["directory_url"], made["kid"], made["hmac_key"], made["domains"])


@contextmanager
def acme_lab(tmp: Path) -> Iterator[Lab]:
    tls = make_tls(tmp / "tls")
    port, http01_port = free_port(), free_port()
    url = f"https://127.0.0.1:{port}"
    datadir = tmp / "manager"
    env = clean_env(
        CA_MANAGER_HOME=str(datadir),
        CA_MANAGER_PUBLIC_URL=url,
        CA_MANAGER_POLL_WAIT_SECONDS="5",
        CA_MANAGER_HEARTBEAT_GRACE_SECONDS="2",
        CA_MANAGER_ACME_HTTP01_PORT=str(http01_port),
        CA_MANAGER_ACME_HOSTS=",".join(f"{name}=127.0.0.1" for name in VALIDATED_NAMES),
        CA_MANAGER_ACME_VALIDATION_TIMEOUT_SECONDS="5",
    )
    manager_bin = str(BIN / "ca-manager")
    assert run([manager_bin, "admin", "create", "-username", "admin"], env).returncode == 0
    key = json.loads(run([manager_bin, "apikey", "create", "-username", "admin", "-json"], env).stdout)
    site: Site | None = None
    with serving_manager(port, tls, env, tmp / "manager.log") as process:
        try:
            manager = Manager(url, env, tls, key["api_key"], process, datadir)
            site = Site(manager, tmp)
            with manager.api() as api:
                backend = site.backend(api)
                _profile(api, backend, "web")
                _profile(api, backend, "validated")
                enabled = api.put("/acme-profiles/validated", json={"real_validation": True})
                assert enabled.status_code == 200, enabled.text
                validated = _api_binding(api, "validated", ["inside.validated.test"])
            bindings = {
                "web": _binding(manager, "web", "example.test,*.example.test"),
                "validated": validated,
            }
            yield Lab(manager, site, http01_port, backend["cas"][0]["id"], bindings, tmp)
        finally:
            if site is not None:
                site.agent.stop()
