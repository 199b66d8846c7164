"""`ca-connector`: the agent's command line, accepting the reference document's `-option value` spelling
as well as `--option value`.

Errors go to stderr: exit 2 for usage errors (an option missing, unknown or malformed), 1 for the rest.
Every command that prints a result takes `-json` and then prints exactly one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from caconnector import __version__, cliexit
from caconnector.backends.base import CRLPublisher, EnrollRequest, Issued, RevokeRequest
from caconnector.backends.configs import BUILTIN_CONFIGS, BackendConfig
from caconnector.backends.errors import AuthError, BackendError, ConfigError, Transient
from caconnector.backends.registry import UnknownBackendType, known_types, type_info
from caconnector.cliparse import Parser, opt
from caconnector.connector import backend_admin, cli_agent, cli_link, cli_secrets, output
from caconnector.connector.agent import AgentError
from caconnector.connector.backend_admin import BackendNotFound, InvalidOptions
from caconnector.connector.cli_common import PROG, CommandError, CommandFailed, UsageError
from caconnector.connector.journal import JournalError
from caconnector.connector.link import LinkError, ManagerUnreachable, ProxyAuthFailed, Refused
from caconnector.connector.registration import RegistrationError
from caconnector.connector.settings import InvalidSetting
from caconnector.connector.store import ConnectorStore, StoreError, default_datadir
from caconnector.pki.chain import load_certificates
from caconnector.pki.csr import describe_csr, load_csr
from caconnector.pki.errors import PKIError
from caconnector.pki.formats import OutputFormat, encode_certificate
from caconnector.pki.keys import load_private_key, private_key_pem
from caconnector.pki.revocation import RevocationReason
from caconnector.pki.serial import canonical_serial

EXIT_STORED_OFFLINE = 3  # backend add/update: stored, but the check could not reach the CA
SECRET_MASK = "********"  # noqa: S105  (what is shown instead of a secret)
__all__ = ["PROG", "CommandError", "UsageError", "build_parser", "main"]


def _common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    # SUPPRESS so a subcommand's default does not overwrite a -datadir given before the subcommand.
    opt(
        parser,
        "datadir",
        metavar="D",
        default=argparse.SUPPRESS,
        help="the data directory (default: $CA_CONNECTOR_HOME, /var/lib/ca-connector as root, "
        "else ~/.local/share/ca-connector)",
    )
    if json_flag:
        opt(
            parser,
            "json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print exactly one JSON document on stdout",
        )


NOT_AVAILABLE = "not available in this version"


def _available_types() -> dict[str, bool]:
    """Each known backend type and whether this installation can run it (it has an entry point)."""
    return {name: info.entry_point is not None for name, info in known_types().items()}


def _type_choices() -> str:
    return ", ".join(
        name if available else f"{name} ({NOT_AVAILABLE})" for name, available in _available_types().items()
    )


def _type_options_epilog() -> str:
    available = _available_types()
    lines = ["type options:"]
    for name, model in BUILTIN_CONFIGS.items():
        lines.append(f"  -type {name}" + ("" if available.get(name) else f"  ({NOT_AVAILABLE})"))
        for field_name, field in model.model_fields.items():
            required = "" if not field.is_required() else " (required)"
            lines.append(f"      -{field_name} {model.metavar(field_name)}{required}: {field.description}")
    secrets = [o for o in cli_secrets.secret_options() if o != cli_secrets.PROXY_PASSWORD]
    lines += ["", textwrap.fill(cli_secrets.help_text(secrets), width=100)]
    lines += ["", textwrap.fill(_CHECK_HELP, width=100)]
    return "\n".join(lines)


_CHECK_HELP = (
    "The backend's check (credentials, reachability, CAs) runs before the command ends, unless -nocheck. "
    "Exit status: 0 stored and Available; 3 stored but Offline (the CA could not be reached; the reason "
    "is printed, and the agent keeps trying); 1 nothing stored or changed (the CA refused the "
    "credentials or the options: fix them, or give -nocheck to store them unchecked); 2 a usage error."
)


def _type_option_names() -> list[str]:
    names: dict[str, None] = {}
    for model in BUILTIN_CONFIGS.values():
        names.update(dict.fromkeys(model.model_fields))
    return list(names)


def build_parser() -> Parser:
    root = Parser(
        prog=PROG, description="The CA connector: runs jobs from the manager against local CA backends."
    )
    _common(root, json_flag=False)
    root.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = root.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    helper = commands.add_parser("help", help="print help for a command")
    helper.add_argument("topic", nargs="*", metavar="COMMAND")
    version = commands.add_parser("version", help="print the version")
    _common(version)

    backend = commands.add_parser("backend", help="configure and use CA backends")
    backend_commands = backend.add_subparsers(
        dest="backend_command", metavar="SUBCOMMAND", parser_class=Parser
    )

    _config_commands(backend_commands)

    for command, text in (
        ("list", "list the configured backends"),
        ("show", "show a backend: settings with secrets masked, status, CAs found"),
        ("remove", "remove a backend and its stored secrets"),
        ("test", "test credentials and reachability; list the CAs found"),
        ("cas", "list the CAs behind a backend"),
    ):
        sub = backend_commands.add_parser(command, help=text, description=text)
        _common(sub)
        if command != "list":
            opt(sub, "name", required=True, help="the backend's name")

    enroll = backend_commands.add_parser(
        "enroll",
        help="issue a certificate directly through one backend",
        description="Issue a certificate through one backend (diagnostics).",
    )
    _common(enroll)
    opt(enroll, "name", required=True, help="the backend's name")
    opt(enroll, "csr", required=True, metavar="FILE", help="the PKCS#10 request, PEM or DER")
    opt(enroll, "ca", metavar="ID", help="the CA to use (see backend cas)")
    opt(enroll, "template", metavar="T", help="the template or product (local: server or client)")
    opt(enroll, "days", metavar="D", type=_positive_int("-days"), help="the validity in days")
    opt(
        enroll,
        "out",
        metavar="FILE",
        help="write the certificate followed by its chain up to the root (PEM) here instead of stdout",
    )

    revoke = backend_commands.add_parser("revoke", help="revoke a certificate by serial number")
    _common(revoke)
    opt(revoke, "name", required=True, help="the backend's name")
    opt(revoke, "serial", required=True, metavar="HEX", type=_serial, help="the serial number in hex")
    opt(
        revoke,
        "reason",
        metavar="R",
        type=_reason,
        default=RevocationReason.UNSPECIFIED,
        help=f"an RFC 5280 reason: {', '.join(r.value for r in RevocationReason)}",
    )
    opt(revoke, "ca", metavar="ID", help="the CA that issued it")

    crl = backend_commands.add_parser("crl", help="write the CRL of a backend that publishes one (local)")
    _common(crl)
    opt(crl, "name", required=True, help="the backend's name")
    opt(crl, "ca", metavar="ID", help="the CA whose CRL to write")
    opt(crl, "out", metavar="FILE", help="write the CRL (DER) here; PEM on stdout otherwise")

    msca = backend_commands.add_parser("msca", help="Microsoft CA specific commands")
    msca_commands = msca.add_subparsers(dest="msca_command", metavar="SUBCOMMAND", parser_class=Parser)
    agent_cert = msca_commands.add_parser(
        "enroll-agent-cert", help="make the Enrollment Agent key pair and enroll its certificate"
    )
    _common(agent_cert)
    opt(agent_cert, "name", required=True, help="the msca backend's name")
    opt(agent_cert, "ca", required=True, metavar="CN", help="the CA's common name")
    opt(
        agent_cert,
        "template",
        metavar="T",
        default="MachineEnrollmentAgent",
        help="the Enrollment Agent template (default MachineEnrollmentAgent)",
    )

    _link_commands(commands)
    _agent_commands(commands)
    return root


def _config_commands(backend_commands: Any) -> None:
    """backend add and backend update: the type options, with help derived from the config models."""
    raw = argparse.RawDescriptionHelpFormatter
    add = backend_commands.add_parser(
        "add", help="add a backend", epilog=_type_options_epilog(), formatter_class=raw
    )
    update = backend_commands.add_parser(
        "update", help="change a backend's options", epilog=_type_options_epilog(), formatter_class=raw
    )
    for parser in (add, update):
        _common(parser)
        opt(parser, "name", required=True, help="the backend's name")
        if parser is add:
            opt(parser, "type", required=True, metavar="TYPE", help=f"one of: {_type_choices()}")
        opt(parser, "nocheck", action="store_true", help="store without checking the backend against its CA")
        for option in _type_option_names():
            opt(parser, option, metavar="VALUE", default=None, help=argparse.SUPPRESS)


def _proxy_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    opt(parser, "proxyhost", metavar="H", required=required, help="the proxy's host name or IP address")
    opt(parser, "proxyport", metavar="P", required=required, help="the proxy's port (1-65535)")
    opt(parser, "proxyuser", metavar="U", help="the user name for the proxy (with -proxypassword)")
    opt(
        parser,
        "proxypassword",
        metavar="W",
        help="the password for the proxy (with -proxyuser; never shown): - reads it from standard input, "
        "@FILE from a file, @@... is a literal starting with @",
    )


def _link_commands(commands: Any) -> None:
    """install, register, proxy, test-connection: connecting to the manager."""
    install = commands.add_parser(
        "install",
        help="register with the manager, save the proxy, install and start the service",
        description="The silent install of the reference document: save the proxy, register with the "
        "token, then install and start the service (when systemd runs this host).",
    )
    _common(install)
    opt(install, "token", metavar="T", help="the installation token (asked for when omitted, unless -silent)")
    opt(install, "manager", metavar="URL", required=True, help="the manager's https:// address")
    opt(install, "silent", action="store_true", help="never prompt")
    opt(install, "proxy", metavar="0|1", choices=["0", "1"], help="1: use the proxy given; 0: no proxy")
    _proxy_options(install, required=False)
    opt(install, "cacert", metavar="FILE", help="CA certificates (PEM) to trust for the manager's TLS")

    register = commands.add_parser(
        "register",
        help="register with the manager using an installation token",
        description="Register with the manager. -force replaces an existing registration (the restore "
        "flow: Restore in the manager gives the token).",
    )
    _common(register)
    opt(register, "token", metavar="T", required=True, help="the installation or restore token")
    opt(
        register,
        "manager",
        metavar="URL",
        help="the manager's https:// address (default: the registered one)",
    )
    opt(register, "force", action="store_true", help="replace an existing registration")
    opt(register, "cacert", metavar="FILE", help="CA certificates (PEM) to trust for the manager's TLS")

    proxy = commands.add_parser("proxy", help="set, clear or show the HTTP proxy to the manager")
    proxy_commands = proxy.add_subparsers(dest="proxy_command", metavar="SUBCOMMAND", parser_class=Parser)
    proxy_set = proxy_commands.add_parser("set", help="use an HTTP proxy (CONNECT) to reach the manager")
    _common(proxy_set)
    _proxy_options(proxy_set, required=True)
    for name, text in (("clear", "connect directly"), ("show", "show the proxy, password masked")):
        _common(proxy_commands.add_parser(name, help=text))

    test = commands.add_parser(
        "test-connection",
        help="reach the manager step by step: DNS, TCP, proxy authentication, TLS, health, registration",
    )
    _common(test)
    opt(test, "manager", metavar="URL", help="test this address instead of the registered one")
    opt(test, "cacert", metavar="FILE", help="CA certificates (PEM) to trust instead of the stored ones")


def _agent_commands(commands: Any) -> None:
    """run, status, service, uninstall: running the agent."""
    run = commands.add_parser("run", help="run the agent in the foreground (what the service runs)")
    _common(run)
    opt(run, "once", action="store_true", help="one cycle: inventory, one poll, its jobs, their results")
    opt(
        run, "pollwait", metavar="S", type=_seconds, help="long-poll wait in seconds (default: the manager's)"
    )
    opt(
        run,
        "workers",
        metavar="N",
        type=_positive_int("-workers", "jobs"),
        default=4,
        help="jobs run at once (4)",
    )

    status = commands.add_parser("status", help="registration, manager, proxy, backends, agent and service")
    _common(status)

    service = commands.add_parser("service", help="the systemd service ca-connector.service")
    service_commands = service.add_subparsers(
        dest="service_command", metavar="SUBCOMMAND", parser_class=Parser
    )
    for name, text in (
        ("install", "write, enable and start the unit (root)"),
        ("uninstall", "stop, disable and remove the unit (root)"),
        ("start", "start the service"),
        ("stop", "stop the service"),
        ("restart", "restart the service"),
        ("status", "show whether the service is installed, enabled and active"),
    ):
        _common(service_commands.add_parser(name, help=text))

    uninstall = commands.add_parser("uninstall", help="stop and remove the service; -purge deletes the data")
    _common(uninstall)
    opt(uninstall, "purge", action="store_true", help="also delete the data directory (asks first)")
    opt(uninstall, "yes", action="store_true", help="do not ask before -purge")
    opt(uninstall, "silent", action="store_true", help="never prompt (same as -yes)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a number of seconds, not {text!r}") from None
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"expects 0 to 60 seconds, not {text}")
    return value


def _positive_int(option: str, unit: str = "days") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects a whole number of {unit}, not {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"{option} expects a positive number, not {value}")
        return value

    return parse


def _serial(text: str) -> str:
    try:
        return canonical_serial(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _reason(text: str) -> RevocationReason:
    try:
        return RevocationReason.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- commands ---------------------------------------------------------------------------------------


def _store(args: argparse.Namespace) -> ConnectorStore:
    datadir = getattr(args, "datadir", None)
    return ConnectorStore(Path(datadir).expanduser() if datadir else default_datadir())


def _read_file(option: str, path: str) -> str:
    if path == cli_secrets.STDIN:  # a key piped in, never written to disk in clear
        data = sys.stdin.buffer.read()
        if not data.strip():
            raise UsageError(f"-{option} -: standard input is empty; pipe the file in, or give its path")
        path = "standard input"
    else:
        try:
            data = Path(path).expanduser().read_bytes()
        except OSError as exc:
            raise UsageError(f"-{option}: cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # A binary file is a DER certificate or key (Windows exports .cer and .pkcs8 so): store it as PEM.
    try:
        return b"".join(c.public_bytes(Encoding.PEM) for c in load_certificates(data)).decode()
    except PKIError:
        pass
    try:
        return private_key_pem(load_private_key(data)).decode()
    except PKIError:
        raise UsageError(f"-{option}: {path} is neither text nor a DER certificate or private key") from None


def _type_values(args: argparse.Namespace, model: type[BackendConfig] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    options = _type_option_names()
    cli_secrets.check_single_stdin(args, options)
    secret = set(cli_secrets.secret_options())
    for option in options:
        value = getattr(args, option, None)
        if value is None:
            continue
        if model is not None and option in model.model_fields and model.is_file(option):
            value = _read_file(option, value)
        elif option in secret:
            value = cli_secrets.resolve(option, value)
        values[option] = value
    return values


def cmd_backend_add(args: argparse.Namespace) -> Any:
    try:
        model = type_info(args.type).config_model
    except UnknownBackendType as exc:
        raise UsageError(f"-type: {exc}") from None
    store = _store(args)
    stored = backend_admin.add_backend(store, args.name, args.type, _type_values(args, model))
    config = backend_admin.config_of(stored)
    view = _backend_view(stored.name, stored.type, config)
    text = f"backend {stored.name!r} ({stored.type}) added"
    if not args.nocheck:
        opened = backend_admin.open_backend(store, stored.name)
        outcome = backend_admin.check(opened.backend)
        if outcome.refused:
            # Known-bad settings are not kept: a script would otherwise leave a backend that can never
            # work, and the agent would report it Offline forever. -nocheck stores them regardless.
            backend_admin.remove_backend(store, stored.name)
            raise _refused(stored.name, stored.type, outcome, "nothing was stored")
        _report_check(view, outcome)
        if outcome.error is not None:
            output.log_event(store, "backend added", backend=stored.name, type=stored.type, status="Offline")
            raise _offline(stored.name, stored.type, outcome, view, text)
        text += f"; Available, {len(view['cas'])} CA(s) found"
    output.log_event(store, "backend added", backend=stored.name, type=stored.type)
    return view, text


def cmd_backend_update(args: argparse.Namespace) -> Any:
    store = _store(args)
    current = backend_admin.get_backend(store, args.name)
    model = type_info(current.type).config_model
    values = _type_values(args, model)
    if not values:
        raise UsageError(f"backend update: give at least one option of -type {current.type} to change")
    outcome = None
    if not args.nocheck:
        # Checked before the change is stored, so a mistyped secret never replaces working credentials.
        outcome = backend_admin.check(backend_admin.open_updated(store, args.name, values).backend)
        if outcome.refused:
            raise _refused(args.name, current.type, outcome, "the backend was not changed")
    stored = backend_admin.update_backend(store, args.name, values)
    output.log_event(store, "backend updated", backend=stored.name, fields=sorted(values))
    view = _backend_view(stored.name, stored.type, backend_admin.config_of(stored))
    text = f"backend {stored.name!r} updated"
    if outcome is not None:
        _report_check(view, outcome)
        if outcome.error is not None:
            raise _offline(stored.name, stored.type, outcome, view, text)
    return view, text


def _report_check(view: dict[str, Any], outcome: backend_admin.CheckOutcome) -> None:
    view["status"] = outcome.status.value
    if outcome.error is not None:
        view["error"] = outcome.error.message
    view["cas"] = [_ca_view(ca) for ca in outcome.result.cas] if outcome.result else []


def _refused(name: str, type_name: str, outcome: backend_admin.CheckOutcome, what: str) -> CommandError:
    assert outcome.error is not None  # noqa: S101  (only refused outcomes come here)
    return CommandError(
        f"backend {name!r} ({type_name}): the check failed: {outcome.error.message}; {what}. Fix the "
        "options and run the command again, or give -nocheck to store them without checking",
        code=_error_code(outcome.error),
    )


def _offline(
    name: str, type_name: str, outcome: backend_admin.CheckOutcome, view: dict[str, Any], text: str
) -> CommandFailed:
    assert outcome.error is not None  # noqa: S101  (only failed outcomes come here)
    return CommandFailed(
        f"backend {name!r} ({type_name}) is stored, but Offline: {outcome.error.message}; "
        f"the agent keeps trying; test it again with: {PROG} backend test -name {name}",
        view,
        text,
        code=_error_code(outcome.error),
        exit_code=EXIT_STORED_OFFLINE,
    )


def cmd_backend_list(args: argparse.Namespace) -> Any:
    backends = _store(args).read().backends
    rows = [{"name": b.name, "type": b.type} for b in backends.values()]
    text = (
        output.table(["NAME", "TYPE"], [[r["name"], r["type"]] for r in rows])
        if rows
        else ("no backend is configured; add one with: ca-connector backend add -name NAME -type TYPE ...")
    )
    return rows, text


def cmd_backend_show(args: argparse.Namespace) -> Any:
    opened = backend_admin.open_backend(_store(args), args.name)
    view = _backend_view(opened.stored.name, opened.stored.type, opened.config)
    view.update(_check_view(opened.backend))
    return view, output.describe(view)


def cmd_backend_test(args: argparse.Namespace) -> Any:
    opened = backend_admin.open_backend(_store(args), args.name)
    view = {"name": opened.stored.name, "type": opened.stored.type, **_check_view(opened.backend)}
    if view["status"] != "Available":
        raise CommandError(f"backend {args.name!r} ({opened.stored.type}) is Offline: {view['error']}")
    return view, output.describe(view)


def cmd_backend_cas(args: argparse.Namespace) -> Any:
    opened = backend_admin.open_backend(_store(args), args.name)
    cas = [_ca_view(ca) for ca in opened.backend.check().cas]
    text = output.table(
        ["ID", "NAME", "KEY", "NOT AFTER", "STATE"],
        [[c["id"], c["name"], c["key_type"], c["not_after"] or "", c["state"]] for c in cas],
    )
    return cas, text


def cmd_backend_enroll(args: argparse.Namespace) -> Any:
    csr_path = Path(args.csr).expanduser()
    try:
        data = csr_path.read_bytes()
    except OSError as exc:
        raise UsageError(f"-csr: cannot read {args.csr}: {exc.strerror}") from None
    try:
        csr = load_csr(data)
        describe_csr(csr)
    except PKIError as exc:
        raise CommandError(f"{args.csr}: {exc}") from None
    opened = backend_admin.open_backend(_store(args), args.name)
    request = EnrollRequest(
        csr=csr, request_id=f"cli-{uuid.uuid4()}", ca=args.ca, template=args.template, validity_days=args.days
    )
    result = opened.backend.enroll(request)
    if not isinstance(result, Issued):
        view = {"status": "Pending", "order_ref": result.order_ref, "reason": result.reason}
        return view, f"pending: {result.reason} (order {result.order_ref})"
    pem = encode_certificate(result.certificate, result.chain, OutputFormat.PEM_CHAIN)
    view = {
        "status": "Issued",
        "serial": canonical_serial(result.certificate.serial_number),
        "subject": result.certificate.subject.rfc4514_string(),
        "not_after": result.certificate.not_valid_after_utc.isoformat(),
        "certificate": encode_certificate(result.certificate, (), OutputFormat.PEM).decode(),
        "chain": encode_certificate(result.certificate, result.chain, OutputFormat.CHAIN).decode(),
    }
    output.log_event(_store(args), "certificate issued", backend=args.name, serial=view["serial"])
    if args.out:
        output.write_atomic(Path(args.out).expanduser(), pem)
        return view, f"issued serial {view['serial']} for {view['subject']}, written to {args.out}"
    return view, pem.decode().rstrip("\n")


def cmd_backend_revoke(args: argparse.Namespace) -> Any:
    opened = backend_admin.open_backend(_store(args), args.name)
    opened.backend.revoke(RevokeRequest(serial=args.serial, reason=args.reason, ca=args.ca))
    output.log_event(
        _store(args), "certificate revoked", backend=args.name, serial=args.serial, reason=args.reason.value
    )
    view = {"serial": args.serial, "reason": args.reason.value, "status": "Revoked"}
    return view, f"revoked serial {args.serial} ({args.reason.value})"


def cmd_backend_crl(args: argparse.Namespace) -> Any:
    opened = backend_admin.open_backend(_store(args), args.name)
    if not isinstance(opened.backend, CRLPublisher):
        raise CommandError(f"backend {args.name!r} ({opened.stored.type}) does not publish a CRL")
    crl = opened.backend.crl(args.ca)
    view = {"revoked": len(list(crl)), "next_update": str(crl.next_update_utc)}
    if args.out:
        output.write_atomic(Path(args.out).expanduser(), crl.public_bytes(Encoding.DER))
        return view, f"CRL with {view['revoked']} revoked certificate(s) written to {args.out}"
    return view, crl.public_bytes(Encoding.PEM).decode().rstrip("\n")


def cmd_backend_remove(args: argparse.Namespace) -> Any:
    store = _store(args)
    backend_admin.remove_backend(store, args.name)
    output.log_event(store, "backend removed", backend=args.name)
    return {"name": args.name, "removed": True}, f"backend {args.name!r} removed"


def cmd_msca_enroll_agent_cert(args: argparse.Namespace) -> Any:
    # Until the msca backend lands no msca backend can exist; say why rather than "no such backend".
    backend_admin.get_backend(_store(args), args.name)
    raise CommandError("backend type 'msca' is not available in this version of ca-connector")


def cmd_version(args: argparse.Namespace) -> Any:
    types = known_types()
    view = {"version": __version__, "backend_types": {n: i.entry_point is not None for n, i in types.items()}}
    return view, f"{PROG} {__version__}"


# ---- views ------------------------------------------------------------------------------------------


def _backend_view(name: str, type_name: str, config: BackendConfig) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for field in type(config).model_fields:
        value = getattr(config, field)
        if value is None:
            continue
        if config.is_secret(field):
            settings[field] = SECRET_MASK
        elif config.is_file(field):
            settings[field] = "(stored)"
        else:
            settings[field] = value
    return {"name": name, "type": type_name, "settings": settings}


def _ca_view(ca: Any) -> dict[str, Any]:
    return {
        "id": ca.id,
        "name": ca.name,
        "subject": ca.subject,
        "key_type": ca.key_type,
        "serial": ca.serial,
        "not_after": ca.not_after.isoformat() if ca.not_after else None,
        "state": ca.state,
    }


def _check_view(backend: Any) -> dict[str, Any]:
    try:
        result = backend.check()
    except BackendError as exc:
        return {"status": "Offline", "error": exc.message, "cas": []}
    return {
        "status": "Available",
        "cas": [_ca_view(ca) for ca in result.cas],
        "templates": list(result.templates),
    }


# ---- dispatch ---------------------------------------------------------------------------------------

HANDLERS: dict[tuple[str, ...], Callable[[argparse.Namespace], Any]] = {
    ("version",): cmd_version,
    ("backend", "add"): cmd_backend_add,
    ("backend", "update"): cmd_backend_update,
    ("backend", "list"): cmd_backend_list,
    ("backend", "show"): cmd_backend_show,
    ("backend", "remove"): cmd_backend_remove,
    ("backend", "test"): cmd_backend_test,
    ("backend", "cas"): cmd_backend_cas,
    ("backend", "enroll"): cmd_backend_enroll,
    ("backend", "revoke"): cmd_backend_revoke,
    ("backend", "crl"): cmd_backend_crl,
    ("backend", "msca", "enroll-agent-cert"): cmd_msca_enroll_agent_cert,
    ("install",): cli_link.cmd_install,
    ("register",): cli_link.cmd_register,
    ("proxy", "set"): cli_link.cmd_proxy_set,
    ("proxy", "clear"): cli_link.cmd_proxy_clear,
    ("proxy", "show"): cli_link.cmd_proxy_show,
    ("test-connection",): cli_link.cmd_test_connection,
    ("run",): cli_agent.cmd_run,
    ("status",): cli_agent.cmd_status,
    ("service", "install"): cli_agent.cmd_service,
    ("service", "uninstall"): cli_agent.cmd_service,
    ("service", "start"): cli_agent.cmd_service,
    ("service", "stop"): cli_agent.cmd_service,
    ("service", "restart"): cli_agent.cmd_service,
    ("service", "status"): cli_agent.cmd_service,
    ("uninstall",): cli_agent.cmd_uninstall,
}


def _help(parser: Parser, topic: Sequence[str]) -> str:
    current: argparse.ArgumentParser = parser
    for word in topic:
        subparsers = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subparsers or word not in subparsers[0].choices:
            raise UsageError(f"help: no command {' '.join(topic)!r}; run {PROG} help for the list")
        current = subparsers[0].choices[word]
    return current.format_help()


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    return cliexit.quiet_on_closed_stdout(lambda: _main(args_list))


def _main(args_list: list[str]) -> int:  # noqa: PLR0911  (one exit code per outcome)
    json_output = cliexit.json_requested(args_list)

    def fail(message: str, code: str, exit_code: int = 1) -> int:
        cliexit.report_error(PROG, message, code=code, json_output=json_output)
        return exit_code

    parser = build_parser()
    args: argparse.Namespace | None = None
    try:
        args = parser.parse_args(args_list)
        path = tuple(
            p
            for p in (
                args.command,
                getattr(args, "backend_command", None),
                getattr(args, "msca_command", None),
                getattr(args, "proxy_command", None),
                getattr(args, "service_command", None),
            )
            if p
        )
        if args.command == "help":
            sys.stdout.write(_help(parser, args.topic))
            return 0
        handler = HANDLERS.get(path)
        if handler is None:  # a command group without its subcommand: show what it offers
            if json_output:
                return fail(
                    f"{' '.join(path)}: give a subcommand (see: {PROG} help {' '.join(path)})", "usage", 2
                )
            sys.stderr.write(_help(parser, path))
            return 2
        view, text = handler(args)
    except (UsageError, InvalidSetting) as exc:
        return fail(str(exc), cliexit.USAGE, 2)
    except InvalidOptions as exc:
        _report_invalid_options(exc, getattr(args, "name", "?"), json_output)
        return 2
    except CommandFailed as exc:
        _report_failed(exc, json_output)
        return exc.exit_code
    except CommandError as exc:
        return fail(str(exc), exc.code)
    except (BackendError, StoreError, RegistrationError, AgentError, JournalError) as exc:
        return fail(str(exc), _error_code(exc))
    except LinkError as exc:
        return fail(exc.message, _error_code(exc))
    except KeyboardInterrupt:
        return 130
    _print_result(json_output, view, text)
    return 0


def _report_invalid_options(exc: InvalidOptions, name: str, json_output: bool) -> None:
    lines = [f"{PROG}: backend {name!r}: {problem}" for problem in exc.problems]
    if json_output:
        message = "; ".join(line.removeprefix(f"{PROG}: ") for line in lines)
        print(json.dumps({"error": {"code": cliexit.USAGE, "message": message}}, indent=2))
    print("\n".join(lines), file=sys.stderr)


def _report_failed(exc: CommandFailed, json_output: bool) -> None:
    if json_output:
        # One document: the result (the steps of test-connection, the stored backend) and the error.
        print(
            json.dumps({**exc.view, "error": {"code": exc.code, "message": str(exc)}}, indent=2, default=str)
        )
    else:
        _print_result(json_output, exc.view, exc.text)
    print(f"{PROG}: {exc}", file=sys.stderr)


def _error_code(exc: Exception) -> str:
    """The machine name of an error for the -json error document."""
    if isinstance(exc, BackendNotFound):
        return cliexit.NOT_FOUND
    if isinstance(exc, AuthError | ProxyAuthFailed) or (
        isinstance(exc, Refused) and exc.status in (401, 403)
    ):
        return cliexit.AUTH
    if isinstance(exc, Transient | ManagerUnreachable):
        return cliexit.UNREACHABLE
    if isinstance(exc, ConfigError | StoreError):
        return cliexit.CONFIG
    return cliexit.FAILED


def _print_result(json_output: bool, view: Any, text: str) -> None:
    if json_output:
        print(json.dumps(view, indent=2, default=str))
    elif text:
        print(text)


if __name__ == "__main__":
    sys.exit(main())
