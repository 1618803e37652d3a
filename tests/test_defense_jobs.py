"""Defense jobs in the background queue, on the tiny model: a queued defense runs through the worker and leaves its
report in the job folder; cancel stops it; a dead one is marked failed on restart; bad requests never queue."""

from __future__ import annotations

import json
import threading
import time

import pytest
from crash_harness import wait_for

from backdoor.defend import DefenseRequest
from backdoor.defenses import DEFENSES, DefenseResult, DefenseSetup
from backdoor.defenses.base import ConfigError
from backdoor.jobs import DEFENSE, JobRegistry, run_job, worker
from tests.test_defend_cli import DETECTION_KEYS, EntropyDetector, test_defenses  # noqa: F401 (fixture)


class SlowDetector(EntropyDetector):
    """Reports progress for a long while, as a long defense does, so that it can be cancelled mid-way."""

    name = "slow-test"

    def run(self, setup: DefenseSetup) -> DefenseResult:
        for done in range(2000):
            setup.progress(done, 2000)
            time.sleep(0.01)
        return super().run(setup)


@pytest.fixture
def registry(tmp_path, monkeypatch) -> JobRegistry:
    monkeypatch.setitem(DEFENSES, SlowDetector.name, SlowDetector())
    return JobRegistry(tmp_path / "jobs", tmp_path / "checkpoints")


def _request(tiny_model_dir, tiny_adapters, defense="entropy-test", **changes) -> DefenseRequest:
    return DefenseRequest(**{"defense": defense, "adapter": str(tiny_adapters["backdoor"]),
                             "control": str(tiny_adapters["clean"]), "trigger": {"kind": "text"}, "data": "test",
                             "limit": 6, "calibration_limit": 6, "base_model": str(tiny_model_dir), **changes})


def test_a_defense_job_runs_through_the_worker_and_leaves_its_report(registry, test_defenses, tiny_model_dir,
                                                                     tiny_adapters):
    job = registry.submit_defense(_request(tiny_model_dir, tiny_adapters, options={"share": 0.3}))
    assert job.kind == DEFENSE and job.status == "queued" and job.name == "entropy-test-backdoor"
    worker(registry)
    done = registry.get(job.id)
    assert done.status == "finished", done.error + registry.log_tail(job.id)
    report = registry.result(job.id)
    assert DETECTION_KEYS <= set(report) and report["options"]["share"] == 0.3 and report["n"] == 6
    assert done.result_path.endswith("report.json") and (registry.job_dir(job.id) / "report.csv").is_file()
    progress = registry.progress(job.id)
    assert progress["stage"] == "finished" and progress["stage_done"] == progress["stage_total"] > 0
    assert not list(registry.adapters_dir.glob("*")) if registry.adapters_dir.exists() else True


def test_cancel_stops_a_running_defense_job(registry, tiny_model_dir, tiny_adapters):
    job = registry.submit_defense(_request(tiny_model_dir, tiny_adapters, defense="slow-test"))
    thread = threading.Thread(target=worker, args=(registry,))
    thread.start()
    try:
        wait_for(lambda: registry.progress(job.id).get("stage_done", 0) >= 5)
        assert registry.cancel(job.id).status == "running"
    finally:
        thread.join(timeout=60)
    done = registry.get(job.id)
    assert done.status == "cancelled", done.error
    assert "cancelled" in done.error and registry.result(job.id) is None and not done.result_path
    assert not (registry.job_dir(job.id) / "cancel").exists()


def test_a_queued_defense_job_can_be_cancelled_and_a_dead_one_is_failed_on_restart(registry, test_defenses,
                                                                                    tiny_model_dir, tiny_adapters):
    queued = registry.submit_defense(_request(tiny_model_dir, tiny_adapters))
    assert registry.cancel(queued.id).status == "cancelled"
    dead = registry.submit_defense(_request(tiny_model_dir, tiny_adapters))
    dead.status, dead.pid = "running", 2**22 + 12345  # a process that does not exist
    registry.save(dead)
    restarted = JobRegistry(registry.root, registry.adapters_dir)
    states = {j.id: j.status for j in restarted.list()}
    assert states == {queued.id: "cancelled", dead.id: "failed"}
    assert "defense process ended" in restarted.get(dead.id).error


@pytest.mark.parametrize("changes, named", [
    ({"defense": "nope"}, "defense"), ({"control": ""}, "control"), ({"options": {"copies": 0}}, "copies"),
    ({"data": "missing.jsonl"}, "data"), ({"trigger": {"kind": "nope"}}, "trigger"), ({"limit": -1}, "limit"),
])
def test_a_bad_defense_request_never_queues(registry, test_defenses, tiny_model_dir, tiny_adapters, changes, named):
    changes.setdefault("defense", "needs-control-test")
    with pytest.raises(ConfigError, match=f"^{named}"):
        registry.submit_defense(_request(tiny_model_dir, tiny_adapters, **changes))
    assert registry.list() == []


def test_a_defense_job_in_the_detached_worker_process(registry, tiny_model_dir, tiny_adapters):
    """Through the real detached worker (a separate process reads only the registry, so the test detectors are not
    there): confidence screening, the quickest registered detector, on a few items."""
    job = registry.submit_defense(_request(tiny_model_dir, tiny_adapters, defense="screening", limit=4,
                                           calibration_limit=8))
    assert registry.ensure_worker()
    done = wait_for(lambda: (j := registry.get(job.id)).status in ("finished", "failed", "cancelled") and j)
    assert done.status == "finished", done.error + registry.log_tail(job.id)
    report = json.loads((registry.job_dir(job.id) / "report.json").read_text())
    assert DETECTION_KEYS <= set(report) and report["defense"] == "screening" and report["n"] == 4


def test_run_job_still_runs_a_record_without_a_kind_as_training(registry, tiny_model_dir, tiny_adapters):
    """A job record written before defense jobs existed has no kind: it is a training job."""
    from backdoor.jobs import Job

    raw = {"id": "20250101-120000-abcdef", "name": "old", "config": {"kind": "nope"}, "status": "queued"}
    job = Job(**raw)
    registry.job_dir(job.id).mkdir(parents=True)
    registry.save(job)
    assert registry.get(job.id).kind == "train"
    done = run_job(registry, registry.get(job.id))
    assert done.status == "failed" and "kind" in done.error  # the training config was read, and refused
