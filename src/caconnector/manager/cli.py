"""`ca-manager`: the central service's command line, accepting `-option value` as well as `--option value`.

The commands work directly on the database, through the same services as the REST API, and are
recorded in the audit log as `cli:<os user>`. Errors go to stderr: exit 2 for usage errors (an option
missing, unknown or malformed), 1 for the rest. Every command that prints a result takes `-json` and
then prints exactly one JSON document.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from caconnector import cliexit
from caconnector.cliparse import CommandError, Parser, UsageError, opt
from caconnector.manager import public_url as stored_url
from caconnector.manager.roles import Role

# Only argparse and our own light modules above: each command imports the database, the web app or
# uvicorn when it runs, so `-h` and `version` answer in a few hundredths of a second instead of the
# second and more those imports take (bench/cli_startup.py; the test keeps them out of this module).
if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from caconnector.manager.db.models import Connector
    from caconnector.manager.runtime import Runtime
    from caconnector.manager.settings import Settings

PROG = "ca-manager"
# `serve` options for the HTTP layer's limits (also CA_MANAGER_<FIELD> variables): option -> setting.
SERVE_LIMITS = {
    "api-max-body": "api_max_body_bytes",
    "channel-max-body": "channel_max_body_bytes",
    "max-connections": "max_connections",
    "max-api-requests": "max_api_requests",
    "max-channel-requests": "max_channel_requests",
    "header-timeout": "header_timeout_seconds",
    "body-timeout": "body_timeout_seconds",
    "keepalive-timeout": "keepalive_timeout_seconds",
}
View = tuple[Any, str]


def _common(parser: argparse.ArgumentParser, *, json_flag: bool = True, public_url: bool = False) -> None:
    # SUPPRESS so a subcommand's default does not overwrite a value given before the subcommand.
    opt(
        parser,
        "datadir",
        metavar="D",
        default=argparse.SUPPRESS,
        help="the data directory (default: $CA_MANAGER_HOME, /var/lib/ca-manager as root, "
        "else ~/.local/share/ca-manager)",
    )
    opt(
        parser,
        "database",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the database URL (default: $CA_MANAGER_DATABASE_URL, else SQLite in the data directory)",
    )
    if public_url:
        opt(
            parser,
            "public-url",
            metavar="URL",
            default=argparse.SUPPRESS,
            help="how connectors reach the manager, for install commands (default: $CA_MANAGER_PUBLIC_URL, "
            "else the address served)",
        )
    if json_flag:
        opt(
            parser,
            "json",
            action="store_true",
            default=argparse.SUPPRESS,
            help="print exactly one JSON document on stdout",
        )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a TCP port number, not {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expects a TCP port from 1 to 65535, not {port}")
    return port


def _role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expects one of {', '.join(r.value for r in Role)}, not {text!r}"
        ) from None


def _subcommands(parser: argparse.ArgumentParser, dest: str) -> Any:
    return parser.add_subparsers(dest=dest, metavar="SUBCOMMAND", parser_class=Parser)


def _command(group: Any, name: str, text: str, **common: bool) -> Parser:
    parser: Parser = group.add_parser(name, help=text, description=text)
    _common(parser, **common)
    return parser


def build_parser() -> Parser:
    root = Parser(prog=PROG, description="The certificate manager's central service.")
    _common(root, json_flag=False, public_url=True)
    root.add_argument("--version", action=_VersionAction, nargs=0, help="print the version and exit")
    commands = root.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    helper = commands.add_parser("help", help="print help for a command")
    helper.add_argument("topic", nargs="*", metavar="COMMAND")
    _command(commands, "version", "print the version")
    quick = _command(
        commands,
        "quickstart",
        "manager + a connector + a local CA on embedded defaults; prints the addresses and the admin "
        "credentials and issues a first certificate",
    )
    opt(quick, "host", metavar="H", default="127.0.0.1", help="the loopback address to listen on")
    opt(quick, "port", metavar="P", type=_port, default=8443, help="the port to listen on (default 8443)")
    opt(
        quick, "out", metavar="DIR", help="where to write the first certificate (default: DATADIR/quickstart)"
    )
    opt(quick, "exit", action="store_true", help="stop after issuing the first certificate (scripts, CI)")

    serve = _command(commands, "serve", "run the manager (REST API)", json_flag=False, public_url=True)
    opt(serve, "host", metavar="H", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    opt(serve, "port", metavar="P", type=_port, default=8443, help="the port to listen on (default 8443)")
    opt(serve, "tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM)")
    opt(serve, "tls-key", metavar="FILE", help="the private key of -tls-cert (PEM)")
    opt(
        serve,
        "downloads",
        metavar="DIR",
        help="the connector packages to serve (default <datadir>/downloads)",
    )
    serve.defer(_serve_limit_options)

    db = commands.add_parser("db", help="database migrations")
    _command(_subcommands(db, "db_command"), "upgrade", "migrate the database to this version's schema")

    admin = commands.add_parser("admin", help="user accounts (create, list)")
    admins = _subcommands(admin, "admin_command")
    create = _command(admins, "create", "create a user; prints its password once")
    opt(create, "username", required=True, metavar="U", help="the user's name")
    opt(
        create,
        "role",
        metavar="ROLE",
        type=_role,
        default=Role.ADMIN,
        help="admin (default), operator, auditor",
    )

    _command(admins, "list", "list the users (never their passwords)")

    apikey = commands.add_parser("apikey", help="API keys (create, list, revoke)")
    keys = _subcommands(apikey, "apikey_command")
    key = _command(keys, "create", "create an API key; prints it once")
    opt(key, "username", required=True, metavar="U", help="the user the key acts as")
    listed = _command(keys, "list", "list the API keys: id, prefix, user, created, last used (never the key)")
    opt(listed, "username", metavar="U", help="only this user's keys")
    opt(listed, "all", action="store_true", help="revoked keys too")
    revoke = _command(keys, "revoke", "revoke an API key; it is refused from then on")
    opt(revoke, "id", metavar="ID", help="the key's id (apikey list)")
    opt(revoke, "prefix", metavar="P", help="or its prefix (apikey list; the hex after cak_ in the key)")

    _connector_commands(commands)
    _acme_commands(commands)
    return root


def _connector_commands(commands: Any) -> None:
    connector = commands.add_parser("connector", help="connectors (add, list, show, edit, restore, delete)")
    group = _subcommands(connector, "connector_command")
    add = _command(group, "add", "add a connector; prints its installation token", public_url=True)
    opt(add, "name", required=True, metavar="N", help="1-128 characters: letters, digits, space, . _ -")
    opt(add, "comments", metavar="C", default="", help="free text for the administrators")
    _command(group, "list", "list the connectors")
    show = _command(group, "show", "show a connector (and its token while unused)", public_url=True)
    edit = _command(group, "edit", "rename a connector or change its comments", public_url=True)
    opt(edit, "newname", metavar="X", help="the new name")
    opt(edit, "comments", metavar="C", help="the new comments")
    restore = _command(
        group, "restore", "issue a new token; the host then runs register -force", public_url=True
    )
    delete = _command(group, "delete", "delete a connector; its key is refused from then on")
    for parser in (show, edit, restore, delete):
        opt(parser, "name", required=True, metavar="N", help="the connector's name (or id)")


def _acme_commands(commands: Any) -> None:
    acme = commands.add_parser("acme", help="the ACME server: account bindings (EAB), validation per profile")
    group = _subcommands(acme, "acme_command")
    binding = group.add_parser("binding", help="External Account Bindings (add, list, revoke)")
    bindings = _subcommands(binding, "acme_binding_command")
    add = _command(
        bindings, "add", "add an ACME account binding; prints the directory URL, kid and HMAC key (once)",
        public_url=True,
    )  # fmt: skip
    opt(add, "profile", required=True, metavar="P", help="the profile ACME orders enroll with (name or id)")
    opt(
        add, "domains", required=True, metavar="LIST",
        help="allowed domains, comma-separated: exact names and *.example.com patterns (pre-validated)",
    )  # fmt: skip
    opt(add, "comments", metavar="C", default="", help="free text for the administrators")
    listed = _command(bindings, "list", "list the bindings (never their keys)", public_url=True)
    opt(listed, "profile", metavar="P", help="only this profile's")
    revoke = _command(bindings, "revoke", "revoke a binding: its accounts are refused from now on")
    opt(revoke, "kid", required=True, metavar="K", help="the binding's kid (or id)")
    validation = _command(
        group, "validation", "names outside a binding's domains: refused (off) or validated (on)"
    )
    opt(validation, "profile", required=True, metavar="P", help="the profile (name or id)")
    opt(
        validation, "real-validation", required=True, choices=("on", "off"),
        help="on: the manager validates http-01 and dns-01 challenges itself",
    )  # fmt: skip


# ---- context ----------------------------------------------------------------------------------------


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


def _settings(args: argparse.Namespace) -> Settings:
    """Defaults, then CA_MANAGER_* variables, then the recorded public URL, then the command line."""
    from pydantic import ValidationError

    from caconnector.manager.settings import Settings

    datadir = getattr(args, "datadir", None)
    try:
        settings = Settings.from_env(
            datadir=Path(datadir).expanduser() if datadir else None,
            database_url=getattr(args, "database", None),
            public_url=getattr(args, "public_url", None),
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CommandError(f"invalid settings (command line or CA_MANAGER_* variables): {problems}") from None
    if getattr(args, "public_url", None) is None and "CA_MANAGER_PUBLIC_URL" not in os.environ:
        recorded = stored_url.recorded(settings.datadir)
        if recorded is not None:  # what the last serve or quickstart on this data directory ran with
            settings = settings.model_copy(update={"public_url": recorded})
    _check_public_url(settings.public_url)
    return settings.model_copy(update={"public_url": settings.public_url.rstrip("/")})


def _check_public_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"-public-url: expects an https:// URL, not {url!r}")
    if parts.scheme == "http" and not stored_url.is_loopback(parts.hostname):
        raise UsageError(
            "-public-url: connectors accept http:// only for loopback addresses; give "
            f"https://{parts.netloc} (TLS here with -tls-cert/-tls-key, or at a proxy in front)"
        )


@contextmanager
def _database(args: argparse.Namespace) -> Iterator[Runtime]:
    """The runtime on a database with the current schema (an empty one is migrated first)."""
    from caconnector.manager.runtime import build_runtime
    from caconnector.manager.serve import ensure_schema

    runtime = build_runtime(_settings(args))
    try:
        ensure_schema(runtime.engine)
        yield runtime
    finally:
        runtime.wakeups.close()
        runtime.engine.dispose()


def _version() -> str:
    from caconnector import __version__

    return __version__


class _VersionAction(argparse.Action):
    """`--version`, with the version looked up only when asked for (importlib.metadata is slow to load)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"{PROG} {_version()}")
        parser.exit()


# ---- commands ---------------------------------------------------------------------------------------


def cmd_version(_args: argparse.Namespace) -> View:
    version = _version()
    return {"version": version}, f"{PROG} {version}"


def cmd_quickstart(args: argparse.Namespace) -> View:
    from caconnector.manager import quickstart

    if not stored_url.is_loopback(args.host):
        raise UsageError("quickstart: -host must be a loopback address (it serves plain HTTP)")
    settings = _settings(args).model_copy(update={"public_url": f"http://{args.host}:{args.port}"})
    out = Path(args.out).expanduser() if args.out else settings.datadir / "quickstart"
    try:
        outcome = quickstart.run_quickstart(settings, args.host, args.port, out, stay=not args.exit)
    except quickstart.QuickstartError as exc:
        raise CommandError(f"quickstart: {exc}") from None
    return outcome.view(), outcome.text() if args.exit else ""


def cmd_serve(args: argparse.Namespace) -> View:
    import logging

    from caconnector.manager import serve as server

    if bool(args.tls_cert) != bool(args.tls_key):
        raise UsageError("serve: -tls-cert and -tls-key go together; give both or neither")
    listen = server.Listen(
        args.host,
        args.port,
        _readable("tls-cert", args.tls_cert) if args.tls_cert else None,
        _readable("tls-key", args.tls_key) if args.tls_key else None,
    )
    fallback = server.default_public_url(args.host, args.port, tls=listen.tls_cert is not None)
    settings = _settings(args)
    if getattr(args, "public_url", None) is None and "CA_MANAGER_PUBLIC_URL" not in os.environ:
        settings = settings.model_copy(update={"public_url": fallback})
    settings = _with_limits(settings, args)
    if args.downloads:
        settings = settings.model_copy(update={"downloads_dir": Path(args.downloads).absolute()})
    # Recorded for the CLI commands that print install commands (connector add, restore) on this host.
    stored_url.record(settings.datadir, settings.public_url)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step is noise here
    if not server.serve(settings, listen):
        raise CommandError(f"could not serve on {listen.url} (the reason is logged above)")
    return None, ""


def _serve_limit_options(serve: Parser) -> None:
    """The HTTP limits' options, described by the settings model (pydantic: loaded only for serve)."""
    from caconnector.manager.settings import Settings

    for option, field in SERVE_LIMITS.items():
        described = Settings.model_fields[field]
        opt(serve, option, metavar="N", help=f"{described.description} (default {described.default})")


def _with_limits(settings: Settings, args: argparse.Namespace) -> Settings:
    from pydantic import ValidationError

    from caconnector.manager.settings import Settings

    given = {
        field: getattr(args, option.replace("-", "_"))
        for option, field in SERVE_LIMITS.items()
        if getattr(args, option.replace("-", "_"), None) is not None
    }
    try:
        return Settings.model_validate({**settings.model_dump(), **given})
    except ValidationError as exc:
        options = {field: option for option, field in SERVE_LIMITS.items()}
        problems = "; ".join(
            f"-{options.get(str(e['loc'][0]), e['loc'][0])}: {e['msg']}" for e in exc.errors()
        )
        raise UsageError(f"serve: {problems}") from None


def _readable(option: str, path: str) -> Path:
    file = Path(path).expanduser()
    try:
        file.read_bytes()
    except OSError as exc:
        raise UsageError(f"-{option}: cannot read {path}: {exc.strerror}") from None
    return file


def cmd_db_upgrade(args: argparse.Namespace) -> View:
    from alembic.util.exc import CommandError as AlembicCommandError

    from caconnector.manager.db.migrate import current_revision, head_revision, upgrade
    from caconnector.manager.runtime import build_runtime

    runtime = build_runtime(_settings(args))
    try:
        before = current_revision(runtime.engine)
        try:
            upgrade(runtime.engine)
        except AlembicCommandError as exc:
            raise CommandError(
                f"cannot upgrade the database from revision {before}: {exc} "
                "(was it upgraded by a newer ca-manager? run that version)"
            ) from None
        after = current_revision(runtime.engine)
    finally:
        runtime.engine.dispose()
    view = {"from": before, "to": after, "head": head_revision()}
    if before == after:
        return view, f"database already at {after}"
    return view, f"database upgraded from {before or 'an empty database'} to {after}"


def cmd_admin_create(args: argparse.Namespace) -> View:
    from caconnector.manager.services.users import create_user

    with _database(args) as runtime, runtime.sessions.begin() as session:
        user, password = create_user(session, args.username, args.role, runtime.now(), actor=_actor())
        view = {"id": user.id, "username": user.username, "role": user.role, "password": password}
    return view, (
        f"user {user.username!r} created with role {user.role}\n"
        f"password (shown once, store it now): {password}"
    )


def cmd_admin_list(args: argparse.Namespace) -> View:
    from caconnector.manager.services import users

    with _database(args) as runtime, runtime.sessions.begin() as session:
        rows = [users.user_view(u) for u in users.list_users(session)]
    if not rows:
        return rows, f"no user yet; create one with: {PROG} admin create -username NAME"
    table = [
        [r["username"], r["role"], "disabled" if r["disabled"] else "", _when(r["created_at"]), r["id"]]
        for r in rows
    ]
    return rows, _table(["USERNAME", "ROLE", "STATE", "CREATED", "ID"], table)


def cmd_apikey_create(args: argparse.Namespace) -> View:
    from caconnector.manager.services.users import create_api_key

    with _database(args) as runtime, runtime.sessions.begin() as session:
        user = _user(session, args.username)
        row, key = create_api_key(session, user, runtime.now(), actor=_actor())
        view = {"id": row.id, "username": user.username, "role": user.role, "prefix": row.prefix}
        view["api_key"] = key
    return view, (
        f"API key for {user.username!r} ({user.role}), shown once, store it now:\n{key}\n"
        f"send it as: Authorization: Bearer <key>"
    )


def cmd_apikey_list(args: argparse.Namespace) -> View:
    from caconnector.manager.services import users

    with _database(args) as runtime, runtime.sessions.begin() as session:
        owner = _user(session, args.username) if args.username else None
        rows = [users.api_key_view(k) for k in users.list_api_keys(session, owner, revoked=args.all)]
    if not rows:
        return rows, f"no API key; create one with: {PROG} apikey create -username NAME"
    table = [
        [
            r["prefix"],
            r["username"],
            _when(r["created_at"]),
            _when(r["last_used_at"]) or "never",
            _when(r["revoked_at"]),
            r["id"],
        ]
        for r in rows
    ]
    return rows, _table(["PREFIX", "USER", "CREATED", "LAST USED", "REVOKED", "ID"], table)


def cmd_apikey_revoke(args: argparse.Namespace) -> View:
    from caconnector.manager.services import users

    if bool(args.id) == bool(args.prefix):
        raise UsageError(f"{PROG} apikey revoke: give -id or -prefix (see {PROG} apikey list)")
    with _database(args) as runtime, runtime.sessions.begin() as session:
        row = users.find_api_key(session, key_id=args.id, prefix=args.prefix)
        users.revoke_api_key(session, row, runtime.now(), actor=_actor())
        view = users.api_key_view(row)
    return view, f"API key {row.prefix} of {row.user.username!r} revoked; it is refused from now on"


def _user(session: Session, username: str) -> Any:
    from caconnector.manager.services.users import find_user

    user = find_user(session, username)
    if user is None:
        raise CommandError(
            f"no user {username!r}; create one with: {PROG} admin create -username {username} "
            f"(list them with: {PROG} admin list)"
        )
    return user


def cmd_connector_add(args: argparse.Namespace) -> View:
    from caconnector.manager.services import connectors

    with _database(args) as runtime, runtime.sessions.begin() as session:
        connector, token = connectors.add_connector(
            session,
            args.name,
            args.comments,
            now=runtime.now(),
            settings=runtime.settings,
            box=runtime.box,
            actor=_actor(),
        )
        command = connectors.install_command(token, runtime.settings)
        view = {
            "id": connector.id,
            "name": connector.name,
            "status": "Pending",
            "token": token,
            "token_expires_at": connector.token_expires_at,
            "install_command": command,
        }
    return view, (
        f"connector {connector.name!r} added (id {connector.id}, status Pending)\n"
        f"installation token (single use, expires {_when(connector.token_expires_at)}): {token}\n"
        f"on the connector's host, run:\n  {command}"
    )


def cmd_connector_list(args: argparse.Namespace) -> View:
    from caconnector.manager.services import connectors

    with _database(args) as runtime, runtime.sessions.begin() as session:
        now = runtime.now()
        rows = [
            connectors.connector_view(c, now, runtime.settings, runtime.box, with_token=False)
            for c in connectors.list_connectors(session, now, runtime.settings).items
        ]
    if not rows:
        return rows, f"no connector yet; add one with: {PROG} connector add -name NAME"
    table = [
        [
            *(str(r[k] or "") for k in ("name", "status", "version", "hostname")),
            _when(r["last_seen"]),
            str(r["id"]),
        ]
        for r in rows
    ]
    return rows, _table(["NAME", "STATUS", "VERSION", "HOSTNAME", "LAST SEEN", "ID"], table)


def cmd_connector_show(args: argparse.Namespace) -> View:
    from caconnector.manager.services import connectors

    with _connector(args) as (runtime, _session, connector):
        view = connectors.connector_view(connector, runtime.now(), runtime.settings, runtime.box)
    return view, _describe(view)


def cmd_connector_edit(args: argparse.Namespace) -> View:
    from caconnector.manager.services import connectors

    if args.newname is None and args.comments is None:
        raise UsageError(f"{PROG} connector edit: give -newname, -comments or both")
    with _connector(args) as (runtime, session, connector):
        connectors.update_connector(
            session, connector, name=args.newname, comments=args.comments, now=runtime.now(), actor=_actor()
        )
        view = connectors.connector_view(connector, runtime.now(), runtime.settings, runtime.box)
    return view, _describe(view)


def cmd_connector_restore(args: argparse.Namespace) -> View:
    from caconnector.manager.services import connectors

    with _connector(args) as (runtime, session, connector):
        token = connectors.restore_connector(
            session, connector, now=runtime.now(), settings=runtime.settings, box=runtime.box, actor=_actor()
        )
        command = connectors.token_command(connector, token, runtime.settings)
        view = {
            "id": connector.id,
            "name": connector.name,
            "token": token,
            "token_expires_at": connector.token_expires_at,
            "install_command": command,
        }
    # A registered connector keeps its key until the token is used; a Pending one only had a token.
    until = (
        "its current key keeps working until" if connector.public_key_pem else "the previous token is void;"
    )
    return view, (
        f"new token for connector {connector.name!r} (single use, expires "
        f"{_when(connector.token_expires_at)}): {token}\n"
        f"{until} on the connector's host, run:\n  {command}"
    )


def cmd_connector_delete(args: argparse.Namespace) -> View:
    from caconnector.manager.services import connectors

    with _connector(args) as (runtime, session, connector):
        view = {"id": connector.id, "name": connector.name, "deleted": True}
        connectors.delete_connector(session, connector, now=runtime.now(), actor=_actor())
    return view, f"connector {view['name']!r} deleted; its key is refused from now on"


def cmd_acme_binding_add(args: argparse.Namespace) -> View:
    from caconnector.manager.services import acme_bindings
    from caconnector.manager.services.profiles import find_profile

    with _database(args) as runtime, runtime.sessions.begin() as session:
        profile = find_profile(session, args.profile)
        made = acme_bindings.create_binding(
            session, profile, args.domains, box=runtime.box, now=runtime.now(), actor=_actor(),
            comments=args.comments,
        )  # fmt: skip
        view = {**acme_bindings.binding_view(made.binding, runtime.settings.public_url)}
        view["hmac_key"] = made.hmac_key
    return view, (
        f"ACME binding for profile {view['profile']!r}, domains {', '.join(view['domains'])}\n"
        f"directory: {view['directory_url']}\nkid:       {view['kid']}\n"
        f"hmac_key:  {made.hmac_key}  (shown once, store it now)\n"
        f"certbot: --server {view['directory_url']} --eab-kid {view['kid']} --eab-hmac-key <hmac_key>"
    )


def cmd_acme_binding_list(args: argparse.Namespace) -> View:
    from caconnector.manager.services import acme_bindings
    from caconnector.manager.services.profiles import find_profile

    with _database(args) as runtime, runtime.sessions.begin() as session:
        profile = find_profile(session, args.profile) if args.profile else None
        rows = [
            acme_bindings.binding_view(b, runtime.settings.public_url)
            for b in acme_bindings.list_bindings(session, profile=profile).items
        ]
    if not rows:
        return rows, f"no ACME binding; add one with: {PROG} acme binding add -profile P -domains D"
    table = [
        [
            r["kid"],
            r["profile"],
            ",".join(r["domains"]),
            "revoked" if r["revoked_at"] else "",
            r["directory_url"],
        ]
        for r in rows
    ]
    return rows, _table(["KID", "PROFILE", "DOMAINS", "STATE", "DIRECTORY"], table)


def cmd_acme_binding_revoke(args: argparse.Namespace) -> View:
    from caconnector.manager.services import acme_bindings

    with _database(args) as runtime, runtime.sessions.begin() as session:
        binding = acme_bindings.find_binding(session, args.kid)
        acme_bindings.revoke_binding(session, binding, now=runtime.now(), actor=_actor())
        view = acme_bindings.binding_view(binding, runtime.settings.public_url)
    return view, f"ACME binding {binding.kid} revoked; its accounts are refused from now on"


def cmd_acme_validation(args: argparse.Namespace) -> View:
    from caconnector.manager.services import acme_bindings
    from caconnector.manager.services.profiles import find_profile

    enabled = args.real_validation == "on"
    with _database(args) as runtime, runtime.sessions.begin() as session:
        profile = find_profile(session, args.profile)
        acme_bindings.set_real_validation(session, profile, enabled, now=runtime.now(), actor=_actor())
        view = {"profile": profile.name, "real_validation": enabled}
    what = "validated by http-01/dns-01" if enabled else "refused (rejectedIdentifier)"
    return view, f"profile {profile.name!r}: names outside a binding's domains are {what}"


@contextmanager
def _connector(args: argparse.Namespace) -> Iterator[tuple[Runtime, Session, Connector]]:
    from caconnector.manager.services import connectors

    with _database(args) as runtime, runtime.sessions.begin() as session:
        # Not found ends the command through _failure, with its hint and the `not_found` code.
        yield runtime, session, connectors.find_connector(session, args.name)


# ---- output -----------------------------------------------------------------------------------------


def _when(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return "" if value is None else str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _describe(view: dict[str, Any]) -> str:
    width = max(len(k) for k in view)
    return "\n".join(f"{k + ':':<{width + 1}} {_when(v) if v is not None else '-'}" for k, v in view.items())


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


# ---- dispatch ---------------------------------------------------------------------------------------

HANDLERS: dict[tuple[str, ...], Callable[[argparse.Namespace], View]] = {
    ("version",): cmd_version,
    ("quickstart",): cmd_quickstart,
    ("serve",): cmd_serve,
    ("db", "upgrade"): cmd_db_upgrade,
    ("admin", "create"): cmd_admin_create,
    ("admin", "list"): cmd_admin_list,
    ("apikey", "create"): cmd_apikey_create,
    ("apikey", "list"): cmd_apikey_list,
    ("apikey", "revoke"): cmd_apikey_revoke,
    ("connector", "add"): cmd_connector_add,
    ("connector", "list"): cmd_connector_list,
    ("connector", "show"): cmd_connector_show,
    ("connector", "edit"): cmd_connector_edit,
    ("connector", "restore"): cmd_connector_restore,
    ("connector", "delete"): cmd_connector_delete,
    ("acme", "binding", "add"): cmd_acme_binding_add,
    ("acme", "binding", "list"): cmd_acme_binding_list,
    ("acme", "binding", "revoke"): cmd_acme_binding_revoke,
    ("acme", "validation"): cmd_acme_validation,
}
SUBCOMMAND_DESTS = (
    "db_command", "admin_command", "apikey_command", "connector_command", "acme_command",
    "acme_binding_command",
)  # fmt: skip


def _run(parser: Parser, argv: list[str]) -> tuple[argparse.Namespace, View | None]:
    """Parse and run; (args, None) when the command line named a group without its subcommand."""
    args = parser.parse_args(argv)
    path = tuple(p for p in (args.command, *(getattr(args, d, None) for d in SUBCOMMAND_DESTS)) if p)
    if args.command == "help":
        return args, (None, parser.help_for(args.topic).rstrip("\n"))
    handler = HANDLERS.get(path)
    if handler is None:
        sys.stderr.write(parser.help_for(path))
        return args, None
    try:
        return args, handler(args)
    except (UsageError, CommandError):
        raise
    except Exception as exc:
        failure = _failure(exc)
        if failure is None:
            raise
        raise failure from None


def _failure(exc: Exception) -> CommandError | None:
    """The error a command can end with that the user can act on, with its -json code; None for the rest.

    The error classes are looked up only once something failed: importing them up front would load the
    database layer for every command, `-h` included (a module that raised one is loaded by then anyway).
    """
    from sqlalchemy.exc import ArgumentError, OperationalError

    from caconnector.manager.key_file import KeyFileError
    from caconnector.manager.serve import SchemaError
    from caconnector.manager.services.errors import Conflict, ManagerError, NotFound

    if isinstance(exc, ArgumentError):  # SQLAlchemy could not make sense of the database URL
        raise UsageError(f"-database: {exc}") from None
    if isinstance(exc, OperationalError):
        return CommandError(f"cannot use the database: {exc.orig or exc}", code=cliexit.CONFIG)
    if isinstance(exc, NotFound):
        return CommandError(str(exc), code=cliexit.NOT_FOUND)
    if isinstance(exc, Conflict):
        return CommandError(str(exc), code=cliexit.CONFLICT)
    if isinstance(exc, SchemaError | KeyFileError):
        return CommandError(str(exc), code=cliexit.CONFIG)
    if isinstance(exc, ManagerError):
        return CommandError(str(exc))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    return cliexit.run_main(args_list, _run_command, _errors, json_default=_json_default)


def _run_command(args_list: list[str], json_output: bool) -> cliexit.Outcome:
    _, result = _run(build_parser(), args_list)
    return 2 if result is None else result


def _errors(exc: Exception, json_output: bool) -> int | None:
    if isinstance(exc, UsageError):
        cliexit.report_error(PROG, str(exc), code=cliexit.USAGE, json_output=json_output)
        return 2
    if isinstance(exc, CommandError):
        cliexit.report_error(PROG, str(exc), code=exc.code, json_output=json_output)
        return 1
    return None


if __name__ == "__main__":
    sys.exit(main())
