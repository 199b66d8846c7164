"""Handlers of the backend commands (add, update, list, show, test, cas, enroll, revoke, crl, remove) and
version. Parsing lives in `cli`; the rules in `backend_admin`. Imported only when one of them runs, so
`ca-connector -h` does not load the backends, pydantic or the CA SDKs."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from caconnector.backends.base import CRLPublisher, EnrollRequest, Issued, RevocationRequested, RevokeRequest
from caconnector.backends.configs import BackendConfig, option_names
from caconnector.backends.errors import BackendError
from caconnector.backends.registry import UnknownBackendType, type_info
from caconnector.connector import backend_admin, output
from caconnector.connector.cli import secrets as cli_secrets
from caconnector.connector.cli.common import PROG, CommandError, CommandFailed, UsageError, error_code
from caconnector.connector.store import ConnectorStore, default_datadir
from caconnector.pki.chain import load_certificates
from caconnector.pki.csr import describe_csr, load_csr
from caconnector.pki.errors import PKIError
from caconnector.pki.formats import OutputFormat, encode_certificate
from caconnector.pki.keys import load_private_key, private_key_pem
from caconnector.pki.serial import canonical_serial

EXIT_STORED_OFFLINE = 3  # backend add/update: stored, but the check could not reach the CA
SECRET_MASK = "********"  # noqa: S105  (what is shown instead of a secret)


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
    options = option_names()
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
    view["status"] = outcome.status
    if outcome.error is not None:
        view["error"] = outcome.error.message
    view["cas"] = [_ca_view(ca) for ca in outcome.result.cas] if outcome.result else []


def _refused(name: str, type_name: str, outcome: backend_admin.CheckOutcome, what: str) -> CommandError:
    assert outcome.error is not None  # noqa: S101  (only refused outcomes come here)
    return CommandError(
        f"backend {name!r} ({type_name}): the check failed: {outcome.error.message}; {what}. Fix the "
        "options and run the command again, or give -nocheck to store them without checking",
        code=error_code(outcome.error),
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
        code=error_code(outcome.error),
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
    # A type may add what only it has (msca: its Enrollment Agent certificate) through describe().
    describe = getattr(opened.backend, "describe", None)
    if callable(describe):
        view.update(describe())
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
        csr=csr,
        request_id=f"cli-{uuid.uuid4()}",
        ca=args.ca,
        template=args.template,
        product=args.product,
        organization=args.organization,
        validity_days=args.days,
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
    requested = opened.backend.revoke(RevokeRequest(serial=args.serial, reason=args.reason, ca=args.ca))
    if isinstance(requested, RevocationRequested):
        # Not revoked yet (DigiCert): say so rather than claim it, and log no revocation.
        view = {"serial": args.serial, "reason": args.reason.value, "status": "RevocationRequested"}
        return view, f"revocation of serial {args.serial} requested: {requested.reason}"
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
    store = _store(args)
    opened = backend_admin.open_backend(store, args.name)
    enroll_agent = getattr(opened.backend, "enroll_agent", None)
    if opened.stored.type != "msca" or not callable(enroll_agent):
        raise CommandError(
            f"backend {args.name!r} is of type {opened.stored.type}; enroll-agent-cert is for -type msca "
            "backends"
        )
    certificate_pem, key_pem = enroll_agent(args.ca, args.template)
    # Stored as the backend's -eacert and -eakey options: sealed with the store's other secrets.
    stored = backend_admin.update_backend(store, args.name, {"eacert": certificate_pem, "eakey": key_pem})
    certificate = load_certificates(certificate_pem.encode())[0]
    view = {
        "name": stored.name,
        "template": args.template,
        "subject": certificate.subject.rfc4514_string(),
        "serial": canonical_serial(certificate.serial_number),
        "not_after": certificate.not_valid_after_utc.isoformat(),
    }
    output.log_event(store, "enrollment agent certificate stored", backend=args.name, serial=view["serial"])
    text = (
        f"backend {args.name!r}: Enrollment Agent certificate {view['serial']} ({view['subject']}) enrolled "
        f"from template {args.template!r}, valid until {view['not_after']}"
    )
    return view, text


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
    view: dict[str, Any] = {
        "status": "Available",
        "cas": [_ca_view(ca) for ca in result.cas],
        "templates": list(result.templates),
    }
    # Only the types whose CA sells products or validates organizations show those lists.
    if result.products:
        view["products"] = [
            {"id": p.id, "name": p.name, "type": p.type, "ca_ids": list(p.ca_ids)} for p in result.products
        ]
    if result.organizations:
        view["organizations"] = [
            {
                "id": o.id,
                "name": o.name,
                "status": "Validated" if o.validated else f"Not validated ({o.status})",
                "validated_until": o.validated_until.isoformat() if o.validated_until else None,
            }
            for o in result.organizations
        ]
    return view
