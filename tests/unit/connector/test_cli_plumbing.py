"""The CLI plumbing both programs share, driven through `ca-connector`: a closed stdout, JSON error
documents, typos before the command, types marked unavailable, secrets from stdin or a file, the check at
add, and a `-h` that does not import the backends."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support import EXECUTABLE, Result, all_bytes

from caconnector.backends.configs import BUILTIN_CONFIGS
from caconnector.backends.registry import availability
from caconnector.backends.type_names import BUILTIN_TYPES

Run = Callable[..., Result]
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACMPCA = ["-type", "acmpca", "-accesskeyid", "AKIAIOSFODNN7EXAMPLE", "-region", "us-east-1"]


def test_a_closed_stdout_exits_141_without_a_traceback(cli: Run, datadir: Path) -> None:
    for i in range(30):  # enough rows that the output does not fit in the pipe's first read
        assert cli("backend", "add", "-name", f"ca{i}", "-type", "local").code == 0
    env = {**os.environ, "CA_CONNECTOR_HOME": str(datadir)}
    for _ in range(3):
        process = subprocess.Popen(
            [EXECUTABLE, "backend", "list", "-json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert process.stdout is not None
        process.stdout.read(1)
        process.stdout.close()  # the reader goes away, as `| head -c 1` does
        _, err = process.communicate(timeout=60)
        assert b"Traceback" not in err
        assert b"BrokenPipeError" not in err
        assert process.returncode in (0, 141)  # 0 when everything fit in the pipe before it closed


@pytest.mark.parametrize(
    ("args", "code", "exit_code"),
    [
        (["backend", "show", "-name", "nope", "-json"], "not_found", 1),
        (["backend", "add", "-name", "a", "-type", "local", "-nmae", "x", "-json"], "usage", 2),
        (["backend", "add", "-name", "a", "-type", "local", "-days", "0", "-json"], "usage", 2),
    ],
)
def test_json_errors_are_one_document_and_a_line(
    cli: Run, args: list[str], code: str, exit_code: int
) -> None:
    result = cli(*args)
    assert result.code == exit_code
    document = json.loads(result.out)  # exactly one JSON document, nothing else on stdout
    assert document["error"]["code"] == code
    assert document["error"]["message"]
    assert result.err.startswith("ca-connector")


def test_a_typo_before_the_command_names_the_option(cli: Run) -> None:
    result = cli("-nmae", "x")
    assert result.code == 2
    assert "unknown option -nmae; did you mean -name?" in result.err
    assert "invalid choice" not in result.err
    assert "-json goes after the command" in cli("-json", "backend", "list").err


def test_help_marks_types_without_an_entry_point() -> None:
    helped = subprocess.run(
        [EXECUTABLE, "help", "backend", "add"], capture_output=True, text=True, check=True
    ).stdout
    assert (
        helped
        == subprocess.run(
            [EXECUTABLE, "backend", "add", "-h"], capture_output=True, text=True, check=True
        ).stdout
    )
    for name, available in availability().items():
        marked = f"-type {name}  (not available in this version)" in helped
        assert marked is not available, name
    assert "'-' to read it from standard input" in " ".join(helped.split())


def test_builtin_type_names_match_the_config_models() -> None:
    assert tuple(BUILTIN_CONFIGS) == BUILTIN_TYPES


def _stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


def test_secret_from_stdin_and_from_a_file(
    cli: Run, datadir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, SECRET + "\n")
    added = cli("backend", "add", "-name", "a", *ACMPCA, "-secretaccesskey", "-", "-nocheck")
    assert added.code == 0, added.err
    secret_file = tmp_path / "secret"
    secret_file.write_text("@" + SECRET + "\n")
    updated = cli("backend", "update", "-name", "a", "-secretaccesskey", f"@{secret_file}", "-nocheck")
    assert updated.code == 0, updated.err
    literal = cli("backend", "update", "-name", "a", "-secretaccesskey", "@@" + SECRET, "-nocheck")
    assert literal.code == 0, literal.err
    for result in (added, updated, literal):
        assert SECRET not in result.out + result.err
    assert SECRET.encode() not in all_bytes(datadir)


def test_secret_input_errors_name_the_option(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, "")
    empty = cli("backend", "add", "-name", "a", *ACMPCA, "-secretaccesskey", "-", "-nocheck")
    assert empty.code == 2
    assert "-secretaccesskey -: standard input is empty" in empty.err
    missing = cli("backend", "add", "-name", "a", *ACMPCA, "-secretaccesskey", "@/nonexistent/s", "-nocheck")
    assert missing.code == 2
    assert "-secretaccesskey: cannot read /nonexistent/s" in missing.err
    two = cli(
        "backend", "add", "-name", "a", "-type", "msca", "-server", "s", "-ca", "c",
        "-username", "u", "-password", "-", "-cakey", "-",
    )  # fmt: skip
    assert two.code == 2
    assert "both read standard input" in two.err
    assert json.loads(cli("backend", "list", "-json").out) == []


def test_add_checks_and_stores_an_unreachable_backend_as_offline(cli: Run) -> None:
    # Port 9 on loopback: nothing listens, so the check fails fast with "cannot reach".
    added = cli(
        "backend", "add", "-name", "a", *ACMPCA, "-secretaccesskey", SECRET,
        "-endpoint", "http://127.0.0.1:9", "-json",
    )  # fmt: skip
    assert added.code == 3, added.err
    document = json.loads(added.out)
    assert document["status"] == "Offline"
    assert document["error"]["code"] == "unreachable"
    assert "stored, but Offline" in added.err
    assert SECRET not in added.out + added.err
    assert [b["name"] for b in json.loads(cli("backend", "list", "-json").out)] == ["a"]
    checked = json.loads(cli("backend", "add", "-name", "l", "-type", "local", "-json").out)
    assert checked["status"] == "Available"


def test_help_and_version_do_not_import_the_backends() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from caconnector.connector.cli import main\n"
        "for argv in (['-h'], ['version', '-json']):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "        main(argv)\n"
        "heavy = ('httpx', 'boto3', 'botocore', 'google', 'pydantic', 'cryptography')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in heavy}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
