"""Against a real AD CS, only when its address and credentials are in the environment (skipped otherwise):

    MSCA_TEST_SERVER     the CA server's host name            MSCA_TEST_CA        the CA's common name
    MSCA_TEST_USERNAME   DOMAIN\\user with Request permission  MSCA_TEST_PASSWORD  its password
    MSCA_TEST_TEMPLATE   a template that issues at once, with one Enrollment Agent signature required
    optional: MSCA_TEST_TRANSPORT (rpc|web, default rpc), MSCA_TEST_AUTH (ntlm|basic|kerberos, default
    ntlm), MSCA_TEST_ENDPOINT (the Web Enrollment URL), MSCA_TEST_CACERT (a file trusting its TLS
    certificate), MSCA_TEST_AGENT_TEMPLATE (default MachineEnrollmentAgent), MSCA_TEST_REQUESTER.

It adds the backend, enrolls an Enrollment Agent certificate, then a certificate on behalf of the
requester, through the same CLI an operator uses."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support import Result, openssl_csr

Run = Callable[..., Result]
REQUIRED = (
    "MSCA_TEST_SERVER",
    "MSCA_TEST_CA",
    "MSCA_TEST_USERNAME",
    "MSCA_TEST_PASSWORD",
    "MSCA_TEST_TEMPLATE",
)

pytestmark = pytest.mark.skipif(
    not all(os.environ.get(name) for name in REQUIRED),
    reason=f"no real AD CS given (set {', '.join(REQUIRED)})",
)


def test_agent_certificate_and_an_on_behalf_of_enrollment(shell: Run, tmp_path: Path) -> None:
    env = os.environ
    password = tmp_path / "password"
    password.write_text(env["MSCA_TEST_PASSWORD"])
    options = [
        "-name", "real", "-type", "msca", "-server", env["MSCA_TEST_SERVER"], "-ca", env["MSCA_TEST_CA"],
        "-transport", env.get("MSCA_TEST_TRANSPORT", "rpc"), "-auth", env.get("MSCA_TEST_AUTH", "ntlm"),
        "-username", env["MSCA_TEST_USERNAME"], "-password", f"@{password}",
    ]  # fmt: skip
    for variable, option in (
        ("MSCA_TEST_ENDPOINT", "-endpoint"),
        ("MSCA_TEST_CACERT", "-cacert"),
        ("MSCA_TEST_REQUESTER", "-requester"),
    ):
        if env.get(variable):
            options += [option, env[variable]]
    added = shell("backend", "add", *options)
    assert added.code == 0, added.err
    agent = shell(
        "backend", "msca", "enroll-agent-cert", "-name", "real", "-ca", env["MSCA_TEST_CA"],
        "-template", env.get("MSCA_TEST_AGENT_TEMPLATE", "MachineEnrollmentAgent"), "-json",
    )  # fmt: skip
    assert agent.code == 0, agent.err
    csr = openssl_csr(tmp_path, "real", "-newkey", "rsa:2048", subj="/CN=caconnector-test.example")
    enrolled = shell(
        "backend",
        "enroll",
        "-name",
        "real",
        "-csr",
        str(csr),
        "-template",
        env["MSCA_TEST_TEMPLATE"],
        "-json",
    )
    assert enrolled.code == 0, enrolled.err
    assert json.loads(enrolled.out)["status"] in ("Issued", "Pending")
    for result in (added, agent, enrolled):
        assert env["MSCA_TEST_PASSWORD"] not in result.out + result.err
