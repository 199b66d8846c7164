"""The agent's log files: rotation at the configured size and count, the JSON format, one line per job
with connector, backend, job, request, outcome and duration, and no secret in any of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from tests.connector.peers import FakeManager
from tests.support import Result

from caconnector.connector.logs import LogSettings
from caconnector.connector.store import ConnectorStore
from caconnector.testing import make_csr_pem

Run = Callable[..., Result]
PROXY_PASSWORD = "log-test-Pr0xy-pw"


def _logging(datadir: Path, **values: object) -> None:
    with ConnectorStore(datadir).transaction() as txn:
        txn.set_section("logging", dict(values))


def _log_files(datadir: Path) -> list[Path]:
    return sorted((datadir / "logs").glob("ca-connector.log*"))


def test_json_lines_one_per_job_rotated_at_the_size_and_no_secret(
    cli: Run, datadir: Path, manager: FakeManager
) -> None:
    token = manager.add_token("edge-logs")
    assert cli("register", "-token", token, "-manager", manager.url).code == 0
    assert cli("backend", "add", "-name", "LocalCA", "-type", "local").code == 0
    _logging(datadir, format="json", max_bytes=2048, backup_count=3, level="INFO")
    jobs = [
        manager.add_job("enroll", "LocalCA", csr_pem=make_csr_pem(), request_id=f"req-{i}") for i in range(12)
    ]
    result = cli("run", "-once", "-pollwait", "1")
    assert result.code == 0, result.err

    files = _log_files(datadir)
    names = {p.name for p in files}
    assert {"ca-connector.log", "ca-connector.log.1"} <= names  # rotated
    assert len(files) <= 4  # the current file and backup_count old ones
    assert all(
        p.stat().st_size <= 2048 + 1024 for p in files
    )  # a file grows past max_bytes by one line at most

    lines = [json.loads(line) for p in files for line in p.read_text().splitlines() if line.startswith("{")]
    job_lines = [line for line in lines if "job" in line]
    # The rotation dropped the oldest lines; what is left has one line per job it names.
    seen = [line["job"] for line in job_lines]
    assert seen and len(seen) == len(set(seen)) and set(seen) <= set(jobs)
    for line in job_lines:
        assert line["connector"] == "edge-logs"
        assert line["backend"] == "LocalCA" and line["kind"] == "enroll" and line["outcome"] == "ok"
        assert line["request"] == f"req-{jobs.index(line['job'])}"
        assert isinstance(line["duration"], float)

    # Every secret this test used: the token, the connector's key, the CA's key lines, the proxy password.
    assert cli("proxy", "set", "-proxyhost", "127.0.0.1", "-proxyport", "9",
               "-proxyuser", "svc", "-proxypassword", PROXY_PASSWORD).code == 0  # fmt: skip
    assert cli("run", "-once").code == 1  # the proxy refuses: logged, without the password
    snapshot = ConnectorStore(datadir).read()
    secrets = [token, PROXY_PASSWORD, *snapshot.section_secrets("manager").values()]
    secrets += [v for b in snapshot.backends.values() for v in b.secrets.values()]
    text = "".join(p.read_text() for p in _log_files(datadir))
    for secret in secrets:
        for piece in [
            secret,
            *(line for line in secret.splitlines() if len(line) > 16 and "-----" not in line),
        ]:
            assert piece not in text


def test_text_format_and_level(cli: Run, datadir: Path, manager: FakeManager) -> None:
    assert cli("register", "-token", manager.add_token("edge-text"), "-manager", manager.url).code == 0
    assert cli("backend", "add", "-name", "LocalCA", "-type", "local").code == 0
    job = manager.add_job("enroll", "LocalCA", csr_pem=make_csr_pem(), request_id="req-text")
    assert cli("run", "-once", "-pollwait", "1").code == 0
    text = (datadir / "logs" / "ca-connector.log").read_text()
    assert f"job {job} kind=enroll backend=LocalCA request=req-text outcome=ok duration=" in text

    _logging(datadir, level="WARNING")
    before = (datadir / "logs" / "ca-connector.log").read_text()
    assert cli("run", "-once", "-pollwait", "0").code == 0
    added = (datadir / "logs" / "ca-connector.log").read_text()[len(before) :]
    assert " INFO caconnector.connector.agent" not in added


def test_settings_that_cannot_be_used_fall_back_and_say_so() -> None:
    settings, problems = LogSettings.from_section({"level": "LOUD", "format": "xml", "max_bytes": 10})
    assert settings == LogSettings()
    assert len(problems) == 3 and "level 'LOUD'" in problems[0]
    assert LogSettings.from_section({"format": "JSON", "backup_count": 2})[0] == LogSettings(
        format="json", backup_count=2
    )
