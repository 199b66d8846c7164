"""`ca-connector`: the agent's command line, accepting the reference document's `-option value` spelling
as well as `--option value`.

Errors go to stderr: exit 2 for usage errors (an option missing, unknown or malformed), 1 for the rest.
Every command that prints a result takes `-json` and then prints exactly one JSON document.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from caconnector import __version__, cliexit
from caconnector.cliparse import Parser, opt
from caconnector.connector.cli.common import (
    COMMAND_ERRORS,
    PROG,
    USAGE_ERRORS,
    CommandError,
    CommandFailed,
    UsageError,
    error_code,
    is_one_of,
)
from caconnector.pki.serial import canonical_serial

# Only what `-h` and the parser need is imported above; each command's module is imported when it runs
# (backends, pydantic, httpx and the CA SDKs take longer to import than most commands take to run).

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
    from caconnector.backends.registry import availability  # noqa: PLC0415  (lazy: fast -h)

    return availability()


def _type_choices() -> str:
    return ", ".join(
        name if available else f"{name} ({NOT_AVAILABLE})" for name, available in _available_types().items()
    )


def _type_options_epilog() -> str:
    from caconnector.backends.configs import BUILTIN_CONFIGS  # noqa: PLC0415  (lazy: fast -h)
    from caconnector.connector.cli import secrets as cli_secrets  # noqa: PLC0415  (lazy: fast -h)

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
    opt(enroll, "template", metavar="T", help="the template (local: server or client; msca: its name)")
    opt(enroll, "product", metavar="P", help="the product (digicert: its name id; entrust: the certType)")
    opt(enroll, "organization", metavar="ORG", help="the organization, by the CA's id or name")
    opt(enroll, "days", metavar="D", type=_positive_int("-days"), help="the validity in days")
    opt(
        enroll,
        "out",
        metavar="FILE",
        help="write the certificate followed by its chain up to the root (PEM) here instead of stdout",
    )

    revoke = backend_commands.add_parser("revoke", help="revoke a certificate by serial number")
    revoke.defer(_revoke_options)

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
    add = backend_commands.add_parser("add", help="add a backend")
    update = backend_commands.add_parser("update", help="change a backend's options")
    add.defer(_config_options)
    update.defer(_config_options)


def _config_options(parser: Parser) -> None:
    from caconnector.backends.configs import option_names  # noqa: PLC0415  (lazy: fast -h)

    parser.epilog = _type_options_epilog()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _common(parser)
    opt(parser, "name", required=True, help="the backend's name")
    if parser.prog.endswith(" add"):
        opt(parser, "type", required=True, metavar="TYPE", help=f"one of: {_type_choices()}")
    opt(parser, "nocheck", action="store_true", help="store without checking the backend against its CA")
    for option in option_names():
        opt(parser, option, metavar="VALUE", default=None, help=argparse.SUPPRESS)


def _revoke_options(revoke: Parser) -> None:
    from caconnector.pki.revocation import RevocationReason  # noqa: PLC0415  (lazy: fast -h)

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
    opt(
        install,
        "noservice",
        action="store_true",
        help="register only: the agent is started by other means (a container's entry point: "
        "ca-connector run)",
    )

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

    update = commands.add_parser(
        "update",
        help="install the newer package the manager offers, then restart the service (root)",
        description="Fetch the package the manager serves (/downloads/ca-connector.deb), install it with "
        "dpkg when it is newer than this version, and restart the service.",
    )
    _common(update)
    opt(update, "check", action="store_true", help="only say whether a newer version is offered")
    opt(update, "file", metavar="FILE", help="install this .deb instead of the manager's")

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


def _reason(text: str) -> Any:
    from caconnector.pki.revocation import RevocationReason  # noqa: PLC0415  (lazy: fast -h)

    try:
        return RevocationReason.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---- dispatch ---------------------------------------------------------------------------------------

# Each command's handler as module:function, imported when the command runs.
HANDLERS: dict[tuple[str, ...], str] = {
    ("version",): "cli:cmd_version",
    ("backend", "add"): "cli.backends:cmd_backend_add",
    ("backend", "update"): "cli.backends:cmd_backend_update",
    ("backend", "list"): "cli.backends:cmd_backend_list",
    ("backend", "show"): "cli.backends:cmd_backend_show",
    ("backend", "remove"): "cli.backends:cmd_backend_remove",
    ("backend", "test"): "cli.backends:cmd_backend_test",
    ("backend", "cas"): "cli.backends:cmd_backend_cas",
    ("backend", "enroll"): "cli.backends:cmd_backend_enroll",
    ("backend", "revoke"): "cli.backends:cmd_backend_revoke",
    ("backend", "crl"): "cli.backends:cmd_backend_crl",
    ("backend", "msca", "enroll-agent-cert"): "cli.backends:cmd_msca_enroll_agent_cert",
    ("install",): "cli.link:cmd_install",
    ("register",): "cli.link:cmd_register",
    ("proxy", "set"): "cli.link:cmd_proxy_set",
    ("proxy", "clear"): "cli.link:cmd_proxy_clear",
    ("proxy", "show"): "cli.link:cmd_proxy_show",
    ("test-connection",): "cli.link:cmd_test_connection",
    ("run",): "cli.agent:cmd_run",
    ("status",): "cli.agent:cmd_status",
    ("service", "install"): "cli.agent:cmd_service",
    ("service", "uninstall"): "cli.agent:cmd_service",
    ("service", "start"): "cli.agent:cmd_service",
    ("service", "stop"): "cli.agent:cmd_service",
    ("service", "restart"): "cli.agent:cmd_service",
    ("service", "status"): "cli.agent:cmd_service",
    ("uninstall",): "cli.agent:cmd_uninstall",
    ("update",): "cli.update:cmd_update",
}


def cmd_version(args: argparse.Namespace) -> Any:
    view = {"version": __version__, "backend_types": _available_types()}
    return view, f"{PROG} {__version__}"


def _handler(path: tuple[str, ...]) -> Callable[[argparse.Namespace], Any] | None:
    target = HANDLERS.get(path)
    if target is None:
        return None
    module, function = target.split(":")
    handler: Callable[[argparse.Namespace], Any] = getattr(
        importlib.import_module(f"caconnector.connector.{module}"), function
    )
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    return cliexit.run_main(args_list, _command, _errors)


def _command(args_list: list[str], json_output: bool) -> cliexit.Outcome:
    parser = build_parser()
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
        sys.stdout.write(parser.help_for(args.topic))
        return 0
    handler = _handler(path)
    if handler is None:  # a command group without its subcommand: show what it offers
        if json_output:
            message = f"{' '.join(path)}: give a subcommand (see: {PROG} help {' '.join(path)})"
            cliexit.report_error(PROG, message, code="usage", json_output=json_output)
            return 2
        sys.stderr.write(parser.help_for(path))
        return 2
    try:
        view, text = handler(args)
    except Exception as exc:
        _hand_over(args)
        # Reported here, where the backend's name is still at hand.
        if is_one_of(exc, INVALID_OPTIONS):
            _report_invalid_options(getattr(exc, "problems", []), getattr(args, "name", "?"), json_output)
            return 2
        raise
    _hand_over(args)
    return view, text


READ_ONLY_COMMANDS = frozenset({"version", "status", "test-connection"})


def _hand_over(args: argparse.Namespace) -> None:
    """As root, give what the command wrote to the data directory's owner (the service's user)."""
    if args.command in READ_ONLY_COMMANDS:
        return  # nothing written (and `version` stays fast: the store's imports are not needed)
    from caconnector.connector.cli.common import datadir_of  # noqa: PLC0415  (lazy: fast -h)
    from caconnector.connector.ownership import hand_over  # noqa: PLC0415  (lazy: fast -h)

    hand_over(datadir_of(args))


INVALID_OPTIONS = (("caconnector.connector.backend_admin", "InvalidOptions"),)


def _errors(exc: Exception, json_output: bool) -> int | None:
    def fail(message: str, code: str, exit_code: int = 1) -> int:
        cliexit.report_error(PROG, message, code=code, json_output=json_output)
        return exit_code

    if isinstance(exc, UsageError):
        return fail(str(exc), cliexit.USAGE, 2)
    if isinstance(exc, CommandFailed):
        _report_failed(exc, json_output)
        return exc.exit_code
    if isinstance(exc, CommandError):
        return fail(str(exc), exc.code)
    if is_one_of(exc, USAGE_ERRORS):
        return fail(str(exc), cliexit.USAGE, 2)
    if is_one_of(exc, COMMAND_ERRORS):
        return fail(getattr(exc, "message", None) or str(exc), error_code(exc))
    return None


def _report_invalid_options(problems: list[str], name: str, json_output: bool) -> None:
    lines = [f"{PROG}: backend {name!r}: {problem}" for problem in problems]
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


def _print_result(json_output: bool, view: Any, text: str) -> None:
    if json_output:
        print(json.dumps(view, indent=2, default=str))
    elif text:
        print(text)
