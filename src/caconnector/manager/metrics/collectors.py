"""What a scrape computes when it is asked: the database's figures (one GROUP BY per table, plus the
connectors' liveness columns for their derived status), the process's own figures, and the requests
parked in this process's wake-ups.

The database figures are the same in every manager process sharing one database: aggregate them with
max(), not sum(). The HTTP, process and parked figures are per process.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import load_only

from caconnector import __version__
from caconnector.manager.db.group_commit import GroupCommitter
from caconnector.manager.db.models import Certificate, Connector, Job
from caconnector.manager.metrics.exposition import Family
from caconnector.manager.runtime import Runtime
from caconnector.manager.services.dispatch import JobStatus
from caconnector.manager.services.states import CertStatus, status_is
from caconnector.manager.services.status import ConnectorStatus, connector_status
from caconnector.manager.services.wakeups import Wakeups
from caconnector.protocol.messages import JobKind

log = logging.getLogger("caconnector.manager")

# A job not done yet: waiting for a poll, or delivered and under lease.
QUEUED = (JobStatus.QUEUED.value, JobStatus.LEASED.value)
NO_OUTCOME = "none"  # a job not done has no outcome yet


def database_families(runtime: Runtime) -> list[Family]:
    """Jobs, queue depth, connectors and certificates, read in one transaction; on a database error,
    only `ca_manager_database_up 0`, so the other figures still reach the operator."""
    up = Family("ca_manager_database_up", "gauge", "1 when the scrape could read the database")
    try:
        families = _read_database(runtime)
    except SQLAlchemyError as exc:
        log.warning("metrics: the database could not be read (%s)", type(exc).__name__)
        up.add(0)
        return [up]
    up.add(1)
    return [up, *families]


def _read_database(runtime: Runtime) -> list[Family]:
    now = runtime.now()
    expired = status_is(CertStatus.EXPIRED, now)
    derived_status = case((expired, CertStatus.EXPIRED.value), else_=Certificate.status)
    with runtime.sessions() as session:
        job_rows = session.execute(
            select(Job.kind, Job.status, Job.outcome, func.count()).group_by(
                Job.kind, Job.status, Job.outcome
            )
        ).all()
        certificate_rows = session.execute(
            select(derived_status, func.count()).group_by(derived_status)
        ).all()
        # The status is derived in Python (services.status) from these columns only.
        connectors = session.scalars(
            select(Connector).options(
                load_only(
                    Connector.registered_at,
                    Connector.public_key_pem,
                    Connector.last_seen,
                    Connector.connected_until,
                )
            )
        ).all()
        connector_counts = dict.fromkeys(ConnectorStatus, 0)
        for connector in connectors:
            connector_counts[connector_status(connector, now, runtime.settings)] += 1

    jobs = Family(
        "ca_manager_jobs",
        "gauge",
        "jobs in the database by kind, status (queued, leased, done) and outcome (ok, pending, error; none "
        "until done)",
    )
    depth = dict.fromkeys((kind.value for kind in JobKind), 0)
    for kind, status, outcome, count in sorted(job_rows, key=lambda row: tuple(str(v) for v in row[:3])):
        jobs.add(count, kind=kind, status=status, outcome=outcome or NO_OUTCOME)
        if status in QUEUED:
            depth[kind] = depth.get(kind, 0) + count
    queue = Family("ca_manager_job_queue_depth", "gauge", "jobs not done yet (queued or leased), by kind")
    for kind, count in sorted(depth.items()):
        queue.add(count, kind=kind)

    connectors_family = Family(
        "ca_manager_connectors", "gauge", "connectors by status (Pending, Connected, Disconnected, Expired)"
    )
    for connector_state, count in connector_counts.items():
        connectors_family.add(count, status=connector_state.value)

    certificate_counts = dict.fromkeys((status.value for status in CertStatus), 0)
    for status, count in certificate_rows:
        certificate_counts[str(status)] = certificate_counts.get(str(status), 0) + count
    certificates = Family(
        "ca_manager_certificates",
        "gauge",
        "certificates by status (Expired: Issued and past its not_after, as the API shows it)",
    )
    for status, count in certificate_counts.items():
        certificates.add(count, status=status)
    return [jobs, queue, connectors_family, certificates]


def parked_families(job_wakeups: Wakeups, certificate_wakeups: Wakeups) -> list[Family]:
    """Requests parked in this process: long polls waiting for a job, and API requests waiting
    (`wait`) for a certificate to settle. Read-only: the wake-ups' own counters, under their lock."""
    polls = Family("ca_manager_parked_long_polls", "gauge", "connector long polls parked in this process")
    polls.add(_parked(job_wakeups))
    waits = Family(
        "ca_manager_parked_certificate_waits",
        "gauge",
        "API requests parked in this process waiting (`wait`) for a certificate to settle",
    )
    waits.add(_parked(certificate_wakeups))
    return [polls, waits]


def group_commit_families(writes: GroupCommitter) -> list[Family]:
    """The group commit's batching: units committed per transaction is the one figure that says whether
    the hot writes are sharing their commits (db/group_commit.py)."""
    batches = Family(
        "ca_manager_write_batches_total", "counter", "transactions the group commit committed in this process"
    )
    batches.add(writes.batches)
    units = Family(
        "ca_manager_write_units_total", "counter", "requests' writes the group commit committed in them"
    )
    units.add(writes.units)
    queued = Family("ca_manager_write_queue", "gauge", "requests' writes waiting for the next group commit")
    queued.add(writes.queued())
    return [batches, units, queued]


def _parked(wakeups: Wakeups) -> int:
    return sum(wakeups.waiting(key) for key in wakeups.keys())  # noqa: SIM118  (a method, not a dict)


class ProcessFigures:
    """The process_* figures Prometheus' own clients export, by the same names, read from /proc on
    Linux; elsewhere only CPU time and the start time (as the time this object was made) are given."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self.created = time.time()

    def families(self) -> list[Family]:
        times = os.times()
        cpu = Family("process_cpu_seconds_total", "counter", "user and system CPU time spent, in seconds")
        cpu.add(times.user + times.system)
        families = [cpu]
        start = Family("process_start_time_seconds", "gauge", "start time of the process since the epoch")
        start.add(self._start_time() or self.created)
        families.append(start)
        if (memory := self._memory()) is not None:
            resident = Family("process_resident_memory_bytes", "gauge", "resident memory size in bytes")
            resident.add(memory[1])
            virtual = Family("process_virtual_memory_bytes", "gauge", "virtual memory size in bytes")
            virtual.add(memory[0])
            families += [resident, virtual]
        if (open_fds := self._open_fds()) is not None:
            fds = Family("process_open_fds", "gauge", "number of open file descriptors")
            fds.add(open_fds)
            families.append(fds)
        if (max_fds := _max_fds()) is not None:
            limit = Family("process_max_fds", "gauge", "maximum number of open file descriptors")
            limit.add(max_fds)
            families.append(limit)
        return families

    def _memory(self) -> tuple[int, int] | None:
        """(virtual, resident) bytes from /proc/self/statm, whose fields count pages."""
        try:
            fields = (self.proc / "self" / "statm").read_text().split()
            page = os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            return None
        return int(fields[0]) * page, int(fields[1]) * page

    def _open_fds(self) -> int | None:
        try:
            return sum(1 for _ in (self.proc / "self" / "fd").iterdir())
        except OSError:
            return None

    def _start_time(self) -> float | None:
        """/proc/self/stat's starttime (clock ticks after boot) plus the boot time from /proc/stat."""
        try:
            stat = (self.proc / "self" / "stat").read_text()
            # The command name, in parentheses, may hold spaces: the fields after its last ")" are fixed.
            ticks = int(stat.rpartition(")")[2].split()[19])
            boot = next(
                float(line.split()[1])
                for line in (self.proc / "stat").read_text().splitlines()
                if line.startswith("btime ")
            )
            return boot + ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, StopIteration, AttributeError):
            return None


def _max_fds() -> int | None:
    if sys.platform == "win32":
        return None
    import resource  # noqa: PLC0415  (Unix only)

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def info_family() -> Family:
    info = Family("ca_manager_build_info", "gauge", "the manager's version, as a label; always 1")
    info.add(1, version=__version__)
    return info
