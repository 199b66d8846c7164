"""`ca-manager quickstart`: the whole product on embedded defaults, in one command.

It serves the manager (SQLite in the data directory, plain HTTP on loopback), creates the admin account,
an API key and a connector, starts `ca-connector run` as a child process registered with that connector
and holding a `local` CA backend, makes a default profile, and issues a first certificate through the
REST API, exactly as a user's scripts would. Running it again reuses what exists.

Why a child process and not a thread: the manager must never import backends or CA SDKs (the import
boundary keeps CA credentials out of the manager); the connector is a separate program in production,
and here it talks to the manager over the same outbound channel.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from caconnector.manager import public_url
from caconnector.manager.app import create_app
from caconnector.manager.db.models import Connector
from caconnector.manager.files import write_private
from caconnector.manager.roles import Role
from caconnector.manager.runtime import Runtime, build_runtime
from caconnector.manager.serve import ensure_schema
from caconnector.manager.services.connectors import (
    add_connector,
    find_connector,
    restore_connector,
)
from caconnector.manager.services.errors import NotFound
from caconnector.manager.services.users import (
    create_api_key,
    create_user,
    find_user,
    user_for_api_key,
    verify_password,
)
from caconnector.manager.settings import Settings
from caconnector.pki.chain import ensure_complete, load_certificates

log = logging.getLogger("caconnector.manager.quickstart")

CONNECTOR_NAME = "quickstart"
BACKEND_NAME = "LocalCA"
PROFILE_NAME = "default-server"
ADMIN = "admin"
ACTOR = "quickstart"
CREDENTIALS_FILE = "quickstart-credentials.json"  # in the data directory: the admin's password and API key
KEY_TYPES = ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"]


class QuickstartError(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    api_url: str
    docs_url: str
    username: str
    password: str | None  # None when the admin existed before this run (its password was shown then)
    api_key: str
    certificate_path: Path
    key_path: Path
    root_path: Path
    certificate_id: str
    serial: str
    connector_datadir: Path
    credentials_path: Path

    def view(self) -> dict[str, Any]:
        return {
            "api_url": self.api_url,
            "ui_url": self.docs_url,
            "admin": {"username": self.username, "password": self.password, "api_key": self.api_key},
            "certificate": {
                "id": self.certificate_id,
                "serial": self.serial,
                "pem_chain": str(self.certificate_path),
                "private_key": str(self.key_path),
                "root_ca": str(self.root_path),
            },
            "connector_datadir": str(self.connector_datadir),
            "credentials_file": str(self.credentials_path),
        }

    def text(self) -> str:
        password = self.password or "(changed since quickstart made it; not known here)"
        return "\n".join([
            "ca-manager quickstart is up.",
            f"  REST API:        {self.api_url}/api/v1   (OpenAPI: {self.api_url}/api/v1/openapi.json)",
            f"  UI (API docs):   {self.docs_url}",
            f"  admin user:      {self.username}",
            f"  admin password:  {password}",
            f"  API key:         {self.api_key}   (send as: Authorization: Bearer <key>)",
            f"  both, to read back: {self.credentials_path}   (jq -r .api_key FILE)",
            f"  first certificate: serial {self.serial}",
            f"    certificate and chain: {self.certificate_path}",
            f"    private key:           {self.key_path}",
            f"    check it: openssl verify -CAfile {self.root_path} -untrusted {self.certificate_path} "
            f"{self.certificate_path}",
        ])  # fmt: skip


@contextlib.contextmanager
def _serving(runtime: Runtime, settings: Settings, host: str, port: int) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise QuickstartError(
            f"cannot listen on {host}:{port} ({exc.strerror}); choose another with -port"
        ) from None
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, runtime=runtime), log_level="warning", timeout_graceful_shutdown=5
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="manager", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise QuickstartError("the manager did not start; see the messages above")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def credentials_path(settings: Settings) -> Path:
    return settings.datadir / CREDENTIALS_FILE


def _admin_and_key(runtime: Runtime, path: Path) -> tuple[str | None, str]:
    """The admin's password (None when not known) and an API key that works, kept in `path`.

    A re-run reuses the key in the file while it is valid, so the README's commands that read the file
    keep working; a new key is made only when there is none or it was revoked."""
    saved = _read_credentials(path)
    with runtime.sessions.begin() as session:
        user = find_user(session, ADMIN)
        password = None
        if user is None:
            user, password = create_user(session, ADMIN, Role.ADMIN, runtime.now(), actor=ACTOR)
        elif saved.get("password") and verify_password(user, saved["password"]):
            password = saved["password"]
        key = saved.get("api_key")
        if not key or user_for_api_key(session, key, runtime.now()) is not user:
            _, key = create_api_key(session, user, runtime.now(), actor=ACTOR)
    _write_credentials(path, {"username": ADMIN, "password": password, "api_key": key})
    return password, key


def _read_credentials(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in document.items() if isinstance(v, str)} if isinstance(document, dict) else {}


def _write_credentials(path: Path, document: dict[str, str | None]) -> None:
    write_private(path, (json.dumps(document, indent=2) + "\n").encode())


def _connector_cli(datadir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "caconnector.connector.cli", *args, "-datadir", str(datadir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _registered_to(datadir: Path) -> str | None:
    """The manager URL the connector data directory is registered with, if any."""
    status = _connector_cli(datadir, "status", "-json")
    if status.returncode != 0:
        return None
    document = json.loads(status.stdout or "{}")
    url = document.get("manager_url") if document.get("registered") else None
    return str(url) if url else None


def _ensure_connector(runtime: Runtime, url: str, datadir: Path) -> None:
    """A connector row, a registered connector data directory, and its local CA backend."""
    # Registered elsewhere (an earlier run on another port) counts as not registered: restore and re-register.
    if _registered_to(datadir) != url:
        with runtime.sessions.begin() as session:
            try:
                existing: Connector | None = find_connector(session, CONNECTOR_NAME)
            except NotFound:
                existing = None
            settings, box, now = runtime.settings, runtime.box, runtime.now()
            if existing is None:
                _, token = add_connector(
                    session, CONNECTOR_NAME, "made by ca-manager quickstart",
                    now=now, settings=settings, box=box, actor=ACTOR,
                )  # fmt: skip
            else:  # a connector row without a working registration on this host: restore it
                token = restore_connector(session, existing, now=now, settings=settings, box=box, actor=ACTOR)
        done = _connector_cli(datadir, "register", "-token", token, "-manager", url, "-force")
        if done.returncode != 0:
            raise QuickstartError(f"registering the connector failed: {done.stderr.strip()}")
    listed = _connector_cli(datadir, "backend", "list", "-json")
    if BACKEND_NAME not in {b["name"] for b in json.loads(listed.stdout or "[]")}:
        added = _connector_cli(
            datadir,
            "backend",
            "add",
            "-name",
            BACKEND_NAME,
            "-type",
            "local",
            "-subject",
            "CN=Quickstart Local CA",
        )
        if added.returncode != 0:
            raise QuickstartError(f"adding the local CA backend failed: {added.stderr.strip()}")


@contextlib.contextmanager
def _agent(datadir: Path) -> Iterator[subprocess.Popen[bytes]]:
    log_path = datadir / "logs" / "quickstart-agent.out"
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with log_path.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "caconnector.connector.cli", "run", "-datadir", str(datadir)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _wait_for_backend(api: httpx.Client, deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        for backend in api.get("/backends").raise_for_status().json()["items"]:
            ours = backend["local_backend"] == BACKEND_NAME and backend["connector_name"] == CONNECTOR_NAME
            if ours and backend["status"] == "Available" and backend["cas"]:
                found: dict[str, Any] = backend
                return found
        time.sleep(0.2)
    raise QuickstartError(
        "the connector did not report its local CA in time; see its log in the data directory"
    )


def _ensure_profile(api: httpx.Client, backend: dict[str, Any]) -> str:
    for profile in api.get("/profiles").raise_for_status().json()["items"]:
        if profile["name"] == PROFILE_NAME:
            return str(profile["id"])
    created = api.post(
        "/profiles",
        json={
            "name": PROFILE_NAME,
            "backend": backend["id"],
            "ca": backend["cas"][0]["id"],
            "cert_type": "server",
            "terms_days": [90, 30, 365],
            "key_types": KEY_TYPES,
        },
    )
    if created.status_code != 201:
        raise QuickstartError(f"creating the default profile failed: {created.text}")
    return str(created.json()["id"])


def _first_certificate(api: httpx.Client, profile_id: str, out: Path) -> tuple[str, str, Path, Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = socket.gethostname() or "quickstart.local"
    dns = name if "." in name else f"{name}.localdomain"
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns), x509.DNSName("localhost")]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    response = api.post(
        "/certificates",
        json={
            "profile": profile_id,
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
            "wait": 60,
        },
    )
    if response.status_code != 201:
        raise QuickstartError(f"the first certificate was not issued: {response.status_code} {response.text}")
    document = response.json()
    pem_chain = api.get(f"/certificates/{document['id']}/download", params={"format": "pem-chain"})
    pem_chain.raise_for_status()
    certificates = load_certificates(pem_chain.content)
    ensure_complete(certificates[0], certificates[1:])  # leaf to root, every link verified
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = out / "first-certificate.pem", out / "first-certificate.key"
    cert_path.write_bytes(pem_chain.content)
    root_path = out / "root-ca.pem"
    root_path.write_bytes(certificates[-1].public_bytes(serialization.Encoding.PEM))
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    serial = format(certificates[0].serial_number, "x")
    return str(document["id"]), serial, cert_path, key_path, root_path


def run_quickstart(settings: Settings, host: str, port: int, out: Path, stay: bool) -> Outcome:
    """Bring everything up and issue the first certificate; serve until SIGINT/SIGTERM when `stay`."""
    runtime = build_runtime(settings)
    try:
        ensure_schema(runtime.engine)
        credentials = credentials_path(settings)
        password, api_key = _admin_and_key(runtime, credentials)
        connector_home = settings.datadir / "connector"
        with _serving(runtime, settings, host, port) as url:
            public_url.record(settings.datadir, url)  # later `connector add` on this datadir prints it
            _ensure_connector(runtime, url, connector_home)
            with (
                _agent(connector_home),
                httpx.Client(
                    base_url=f"{url}/api/v1",
                    headers={"Authorization": f"Bearer {api_key}"},
                    timeout=90,
                    trust_env=False,
                ) as api,
            ):
                backend = _wait_for_backend(api, time.monotonic() + 60)
                profile_id = _ensure_profile(api, backend)
                certificate_id, serial, cert_path, key_path, root_path = _first_certificate(
                    api, profile_id, out
                )
                outcome = Outcome(
                    url, f"{url}/api/v1/docs", ADMIN, password, api_key, cert_path, key_path, root_path,
                    certificate_id, serial, connector_home, credentials,
                )  # fmt: skip
                if stay:
                    print(outcome.text(), flush=True)
                    print("Press Ctrl-C to stop.", flush=True)
                    _wait_for_signal()
                return outcome
    finally:
        runtime.wakeups.close()
        runtime.engine.dispose()


def _wait_for_signal() -> None:
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(1):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
