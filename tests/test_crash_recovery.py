"""Kill -9 a training job's worker once in each phase (answer list, mid-step, checkpoint write, publish) and restart
the app after each: the job is failed with a reason, every checkpoint loads, the demo lists no half-written adapter,
and the next queued job starts. ``scripts/crash_test.py`` runs ten kills for the README's figure."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from crash_harness import CrashHarness, crash_config, plan

from app.service import DashboardService, ServiceConfig
from backdoor.jobs import JobRegistry
from backdoor.models import BASE_ADAPTER, discover_adapters


def test_the_plan_aims_at_every_phase_in_turn():
    phases = [phase for phase, _, _ in plan(4, seed=3, pause=0.25)]
    assert phases[0] == "answer list" and phases[1] == "training step" and phases[3] == "publish"
    assert phases[2] in ("checkpoint write", "adapter write")


def test_a_worker_killed_in_each_phase_leaves_a_consistent_app(tiny_model_dir, tmp_path):
    trials = CrashHarness(tmp_path, tiny_model_dir, seed=3, timeout=240).run(kills=4)
    report = "\n".join(f"{t.target}: hit {t.hit}: {t.problems or 'ok'}" for t in trials)
    assert all(t.ok for t in trials), report
    assert trials[-1].checkpoints_loaded >= 2, report


# --- the moments a random kill rarely hits, set up by hand -----------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def registry(tmp_path, tiny_model_dir) -> JobRegistry:
    return JobRegistry(tmp_path / "jobs", tmp_path / "checkpoints")


def _running_job(registry: JobRegistry, tiny_model_dir, name: str):
    job = registry.submit(crash_config(tiny_model_dir), name)
    job.status, job.pid = "running", _dead_pid()
    registry.save(job)
    return job


def test_an_adapter_half_copied_by_a_killed_publish_is_never_listed_and_is_removed(registry, tiny_model_dir,
                                                                                   tiny_adapters, tmp_path):
    job = _running_job(registry, tiny_model_dir, "half")
    staging = registry.publish_staging("half")
    shutil.copytree(tiny_adapters["clean"], staging)  # every file there: only the final rename is missing
    service = DashboardService(ServiceConfig(adapters_dir=str(registry.adapters_dir), bases=(str(tiny_model_dir),),
                                             calibration="off", device="cpu"), showcase=[], calibration_items=[],
                               cache_dir=tmp_path / "cache")
    catalog = service.catalog(str(tiny_model_dir))
    assert catalog.names() == [BASE_ADAPTER] and not catalog.refused
    assert discover_adapters(registry.adapters_dir) == []
    assert registry.get(job.id).status == "running"
    failed = next(j for j in registry.list() if j.id == job.id)
    assert failed.status == "failed" and "ended unexpectedly" in failed.error
    assert not staging.exists()


def test_a_job_killed_after_its_adapter_was_renamed_into_place_counts_as_finished(registry, tiny_model_dir,
                                                                                  tiny_adapters):
    job = _running_job(registry, tiny_model_dir, "done")
    (registry.job_dir(job.id) / "run").mkdir()
    (registry.job_dir(job.id) / "run" / "metrics.json").write_text(json.dumps({"status": "finished"}))
    shutil.copytree(tiny_adapters["clean"], registry.adapters_dir / "done")
    finished = next(j for j in registry.list() if j.id == job.id)
    assert finished.status == "finished" and finished.adapter_path == str(registry.adapters_dir / "done")


def test_a_job_claimed_by_a_worker_that_died_before_starting_it_is_queued_again(registry, tiny_model_dir):
    job = registry.submit(crash_config(tiny_model_dir), "orphan")
    (registry.job_dir(job.id) / "claimed").write_text(str(_dead_pid()))
    assert registry.next_queued().id == job.id
    assert not (registry.job_dir(job.id) / "claimed").exists(), "the next worker can claim it"
