"""The agent keeps opened backends while their stored configuration is unchanged (issue 18), and opens
them again after `backend update` or `backend remove` + `add` from another process; backend types are
looked up once per process until `registry.clear_cache()`."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import threading
from pathlib import Path

import pytest

from caconnector.backends import registry
from caconnector.connector import backend_admin
from caconnector.connector.backend_cache import BackendCache
from caconnector.connector.jobs import JobRunner
from caconnector.connector.store import ConnectorStore
from caconnector.protocol.messages import EnrollPayload, JobKind, JobMessage, JobOutcome
from caconnector.testing import make_csr_pem


def _store(tmp_path: Path) -> ConnectorStore:
    store = ConnectorStore(tmp_path / "data")
    backend_admin.add_backend(store, "ca", "local", {})
    return store


def test_an_unchanged_backend_is_opened_once(tmp_path: Path) -> None:
    cache = BackendCache(_store(tmp_path))
    first = cache.open("ca")
    assert cache.open("ca") is first
    assert cache.stored("ca").type == "local"


def test_a_changed_entry_is_opened_again_and_a_rewritten_same_one_is_kept(tmp_path: Path) -> None:
    store = _store(tmp_path)
    cache = BackendCache(store)
    first = cache.open("ca")
    # Another process (its own store object) rewrites the files without changing the entry: kept.
    backend_admin.update_backend(ConnectorStore(store.datadir), "ca", {})
    assert cache.open("ca") is first
    # ... and then changes it (the local CA's options are all fixed at add: change the stored entry).
    with ConnectorStore(store.datadir).transaction() as txn:
        changed = txn.backends["ca"]
        changed.options["days"] = 3000
        txn.put_backend(changed)
    second = cache.open("ca")
    assert second is not first
    assert second.stored.options["days"] == 3000
    assert cache.open("ca") is second


def test_a_removed_and_added_backend_is_the_new_one(tmp_path: Path) -> None:
    store = _store(tmp_path)
    cache = BackendCache(store)
    old_ca = cache.open("ca").backend.check().cas[0].id
    backend_admin.remove_backend(store, "ca")
    with pytest.raises(backend_admin.BackendNotFound, match="no backend named 'ca'"):
        cache.open("ca")
    backend_admin.add_backend(store, "ca", "local", {})
    assert cache.open("ca").backend.check().cas[0].id != old_ca


def test_each_thread_has_its_own_instance(tmp_path: Path) -> None:
    cache = BackendCache(_store(tmp_path))
    mine = cache.open("ca")
    theirs: list[object] = []
    worker = threading.Thread(target=lambda: theirs.append(cache.open("ca")))
    worker.start()
    worker.join()
    assert theirs and theirs[0] is not mine


def test_the_runner_issues_with_a_cached_backend_and_exactly_once(tmp_path: Path) -> None:
    runner = JobRunner(_store(tmp_path), "host")
    payload = EnrollPayload(csr_pem=make_csr_pem("a.example.test"), request_id="req-1")
    jobs = [
        JobMessage(
            id=f"job-{i}",
            kind=JobKind.ENROLL,
            backend="ca",
            payload=payload.model_dump(mode="json"),
            lease_expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        )
        for i in range(3)
    ]
    results = [runner.run(job) for job in jobs]
    assert {r.outcome for r in results} == {JobOutcome.OK}
    # One request id, one certificate, however often it is run with the backend kept open.
    assert len({r.result["certificate_pem"] for r in results if r.result}) == 1


def test_backend_types_are_looked_up_once_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.clear_cache()
    calls: list[str] = []
    real = importlib.metadata.entry_points

    def counting(**kwargs: str) -> object:
        calls.append(kwargs["group"])
        return real(**kwargs)

    monkeypatch.setattr(registry, "entry_points", counting)
    assert registry.load_type("local") is registry.load_type("local")
    registry.type_info("local")
    assert len(calls) == 1
    registry.clear_cache()
    registry.load_type("local")
    assert len(calls) == 2
    monkeypatch.undo()
    registry.clear_cache()
