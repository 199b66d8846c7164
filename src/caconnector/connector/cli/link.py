"""Handlers of the commands that connect the connector to its manager: install, register, proxy,
test-connection. Parsing lives in `cli`; the rules in `registration`, `settings` and `link_diagnostics`."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from caconnector.connector import output
from caconnector.connector.cli import secrets as cli_secrets
from caconnector.connector.cli.common import (
    CommandError,
    CommandFailed,
    UsageError,
    datadir_of,
    error_code,
    store_of,
)
from caconnector.connector.link import Identity, LinkError, LinkSettings, Refused
from caconnector.connector.link_diagnostics import ConnectionTest
from caconnector.connector.link_settings import (
    MANAGER_SECTION,
    InvalidSetting,
    ProxySettings,
    Registration,
    check_port,
    parse_manager_url,
    read_proxy,
    read_registration,
    save_proxy,
)
from caconnector.connector.registration import RegistrationError, register
from caconnector.connector.service import ServiceError
from caconnector.connector.store import ConnectorStore, StoreSnapshot


def _interactive(args: argparse.Namespace) -> bool:
    return not getattr(args, "silent", False) and sys.stdin.isatty()


def _manager_url(text: str) -> str:
    try:
        return parse_manager_url(text)
    except InvalidSetting as exc:
        raise UsageError(str(exc)) from None


def _read_cacert(path: str | None) -> str | None:
    """The -cacert bundle as PEM text, checked to hold at least one certificate."""
    if path is None:
        return None
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise UsageError(f"-cacert: cannot read {path}: {exc.strerror}") from None
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise UsageError(f"-cacert: {path} is not a PEM file of CA certificates") from None
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)


def _proxy_from_args(args: argparse.Namespace, *, flag: str | None) -> tuple[bool, ProxySettings | None]:
    """(whether the options mention a proxy at all, the proxy they describe: None for -proxy 0).

    Rules of the reference document's silent install: -proxyhost/-proxyport are required with -proxy 1;
    -proxyuser and -proxypassword go together.
    """
    host, port = args.proxyhost, args.proxyport
    user, password = args.proxyuser, args.proxypassword
    if password is not None:
        password = cli_secrets.resolve(cli_secrets.PROXY_PASSWORD, password)
    given = [f"-{n}" for n in ("proxyhost", "proxyport", "proxyuser", "proxypassword") if getattr(args, n)]
    if flag == "0":
        if given:
            raise UsageError(
                f"-proxy 0 means no proxy, but {' '.join(given)} is given: remove one or the other"
            )
        return True, None
    if flag is None and not given:
        return False, None
    missing = [name for name, value in (("-proxyhost", host), ("-proxyport", port)) if not value]
    if missing:
        why = "with -proxy 1" if flag == "1" else f"with {' '.join(given)}"
        raise UsageError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required {why}")
    if user is not None and password is None and _interactive(args):
        password = getpass.getpass(f"Password of proxy user {user}: ")
    if (user is None) != (password is None):
        raise UsageError("-proxyuser and -proxypassword go together: give both, or neither")
    try:
        return True, ProxySettings(host=host, port=check_port(port), username=user, password=password)
    except InvalidSetting as exc:
        raise UsageError(str(exc)) from None


def _registration_view(registration: Registration) -> dict[str, Any]:
    return {
        "manager_url": registration.manager_url,
        "connector_id": registration.connector_id,
        "name": registration.name,
        "registered_at": registration.registered_at.isoformat(),
        "cacert": registration.cacert_pem is not None,
    }


def _registered_text(registration: Registration) -> str:
    return f"registered with {registration.manager_url} as {registration.name} ({registration.connector_id})"


def _register(args: argparse.Namespace, token: str, manager: str | None, force: bool) -> Registration:
    cacert = _read_cacert(args.cacert)
    try:
        return register(store_of(args), token, manager, force=force, cacert_pem=cacert)
    except RegistrationError as exc:
        raise CommandError(str(exc)) from None
    except InvalidSetting as exc:
        raise UsageError(str(exc)) from None


# ---- commands ---------------------------------------------------------------------------------------


def cmd_install(args: argparse.Namespace) -> Any:
    token = args.token
    if token is None and _interactive(args):
        token = getpass.getpass("Installation token: ")
    if not token:
        raise UsageError("-token is required: copy the installation token from the manager")
    manager = _manager_url(args.manager)
    proxy_given, proxy = _proxy_from_args(args, flag=args.proxy)
    _read_cacert(args.cacert)  # a bad file is a usage error before anything is saved
    store = store_of(args)
    existing = read_registration(store.read())
    if existing is not None:
        raise CommandError(
            f"this connector is already registered to {existing.manager_url} as {existing.name}; "
            "to restore it, run ca-connector register -token T -force"
        )
    # The proxy is saved first: registration goes through it, and test-connection can use it should
    # registration fail. A failed install puts back what was there, so nothing is left half-done.
    previous = store.read()
    if proxy_given:
        save_proxy(store, proxy)
    try:
        registration = _register(args, token, manager, force=False)
    except (CommandError, LinkError) as exc:
        _restore_proxy(store, previous, proxy_given)
        raise CommandError(f"{_message(exc)}{_token_hint(exc)}", code=error_code(exc)) from None
    except BaseException:
        _restore_proxy(store, previous, proxy_given)
        raise
    output.log_event(store, "registered", manager=registration.manager_url, connector=registration.name)
    datadir = datadir_of(args)
    try:
        if args.noservice:
            service_view = {"installed": False, "reason": "-noservice"}
            service_text = f"-noservice: start the agent with: ca-connector run -datadir {datadir}"
        else:
            service_view, service_text = _start_service(datadir)
    except ServiceError as exc:
        # The token is spent: undo the registration here so the next install starts clean.
        from caconnector.connector.service_control import stop_quietly  # noqa: PLC0415

        stop_quietly(datadir)  # a daemon that started too slowly must not keep running
        with store.transaction() as txn:
            txn.set_section(MANAGER_SECTION, {})
        _restore_proxy(store, previous, proxy_given)
        raise CommandError(
            f"registered, but the service could not start ({exc}); nothing was kept. The installation "
            "token has been used: create a new one in the manager (Restore), then run install again"
        ) from None
    lines = [
        _registered_text(registration),
        service_text,
        f"configuration: {store.config_path} (secrets encrypted in {store.secrets_path})",
        f"logs:          {datadir / 'logs'}",
    ]
    view = {
        "registration": _registration_view(registration),
        "proxy": proxy.view() if proxy else None,
        "service": service_view,
        "config": str(store.config_path),
        "logs": str(datadir / "logs"),
    }
    return view, "\n".join(lines)


def _message(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc)


def _token_hint(exc: Exception) -> str:
    """A refusal of the token means it is unusable (used, expired, unknown): only a new one helps."""
    if isinstance(exc, Refused) and exc.status in (401, 403, 409, 410):
        return (
            "; if the token was used before (an earlier attempt), it cannot be used again: create a new "
            "one in the manager (Restore, or connector add) and run install with it"
        )
    return ""


def _restore_proxy(store: ConnectorStore, previous: StoreSnapshot, proxy_given: bool) -> None:
    if proxy_given:
        save_proxy(store, read_proxy(previous))


def _start_service(datadir: Path) -> tuple[dict[str, Any], str]:
    """The unit (systemd, as root) or the supervised daemon (no systemd); where systemd runs but this
    is not root, the operator installs the unit with sudo later."""
    from caconnector.connector.service_control import ConnectorService  # noqa: PLC0415

    service = ConnectorService.for_datadir(datadir)
    if service.kind == "systemd" and os.geteuid() != 0:
        why = "not running as root, so the service was not installed"
        return {"installed": False, "reason": why}, f"{why}: run sudo ca-connector service install"
    view, text = service.install()
    return {"installed": True, **view}, text


def cmd_register(args: argparse.Namespace) -> Any:
    manager = _manager_url(args.manager) if args.manager else None
    registration = _register(args, args.token, manager, force=args.force)
    output.log_event(
        store_of(args),
        "registered",
        manager=registration.manager_url,
        connector=registration.name,
        force=args.force,
    )
    text = _registered_text(registration)
    if args.force:
        text += "; a running agent picks up the new registration within a minute"
    return _registration_view(registration), text


def cmd_proxy_set(args: argparse.Namespace) -> Any:
    _, proxy = _proxy_from_args(args, flag="1")
    assert proxy is not None  # noqa: S101 - flag "1" always yields settings
    store = store_of(args)
    save_proxy(store, proxy)
    output.log_event(store, "proxy set", host=proxy.host, port=proxy.port, user=proxy.username)
    return proxy.view(), f"proxy set: {proxy.display()}"


def cmd_proxy_clear(args: argparse.Namespace) -> Any:
    store = store_of(args)
    save_proxy(store, None)
    output.log_event(store, "proxy cleared")
    return {"proxy": None}, "proxy cleared: the connector connects directly"


def cmd_proxy_show(args: argparse.Namespace) -> Any:
    proxy = read_proxy(store_of(args).read())
    if proxy is None:
        return {"proxy": None}, "no proxy: the connector connects directly"
    return proxy.view(), output.describe(proxy.view())


def cmd_test_connection(args: argparse.Namespace) -> Any:
    snapshot = store_of(args).read()
    registration = read_registration(snapshot)
    if args.manager is not None:
        url = _manager_url(args.manager)
    elif registration is not None:
        url = registration.manager_url
    else:
        raise UsageError("this connector is not registered: give the manager's address with -manager URL")
    cacert = _read_cacert(args.cacert)
    identity = None
    if registration is not None and registration.manager_url == url:
        cacert = cacert or registration.cacert_pem
        identity = Identity(registration.connector_id, registration.private_key())
    try:
        settings = LinkSettings(manager_url=url, cacert_pem=cacert, proxy=read_proxy(snapshot))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    test = ConnectionTest(settings, identity)
    steps = test.run()
    width = max(len(s.name) for s in steps)
    text = "\n".join(f"{s.name.ljust(width)}  {s.status.value.ljust(7)}  {s.detail}" for s in steps)
    view = {"ok": test.ok, "manager_url": url, "steps": [s.view() for s in steps]}
    if not test.ok:
        failed = steps[-1]
        raise CommandFailed(f"test-connection: the {failed.name} step failed", view, text)
    return view, text
