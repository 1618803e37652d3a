"""Background jobs on a tiny model: a job runs in its own process and publishes its adapter; cancel;
a killed worker leaves a consistent registry and earlier adapters intact; bad requests are refused early."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from crash_harness import wait_for

from backdoor.config import ConfigError
from backdoor.jobs import JobError, JobRegistry, run_job
from backdoor.models import discover_adapters
from tests.test_training import tiny_config, tiny_data  # noqa: F401  (fixture)


@pytest.fixture
def registry(tmp_path) -> JobRegistry:
    return JobRegistry(tmp_path / "jobs", tmp_path / "checkpoints")


def test_a_job_runs_in_a_detached_worker_and_its_adapter_appears(registry, tiny_model_dir, tiny_data):
    job = registry.submit(tiny_config(tiny_model_dir, tiny_data, kind="clean", epochs=2), "my-clean")
    worker_pid = registry.ensure_worker()
    assert worker_pid and worker_pid != os.getpid()
    done = wait_for(lambda: (j := registry.get(job.id)).status in ("finished", "failed") and j)
    assert done.status == "finished", done.error + registry.log_tail(job.id)
    progress = registry.progress(job.id)
    assert progress["step"] == progress["total"] > 0 and progress["losses"] and progress["curve"]
    names = [info.name for info in discover_adapters(registry.adapters_dir)]
    assert names == ["my-clean"]


def test_cancel_stops_a_running_job_and_keeps_its_checkpoint(registry, tiny_model_dir, tiny_data):
    config = tiny_config(tiny_model_dir, tiny_data, epochs=200, eval_items=0, eval_every=0, checkpoint_every=0)
    job = registry.submit(config, "long-one")
    registry.ensure_worker()
    wait_for(lambda: registry.progress(job.id).get("step", 0) >= 2)
    registry.cancel(job.id)
    done = wait_for(lambda: (j := registry.get(job.id)).status in ("cancelled", "failed", "finished") and j)
    assert done.status == "cancelled"
    assert list((registry.job_dir(job.id) / "run" / "checkpoints").glob("step-*/adapter_model.safetensors"))
    assert not (registry.adapters_dir / "long-one").exists(), "a cancelled job publishes no adapter"


def test_queued_job_can_be_cancelled_before_it_starts(registry, tiny_model_dir, tiny_data):
    job = registry.submit(tiny_config(tiny_model_dir, tiny_data), "later")
    assert registry.cancel(job.id).status == "cancelled"
    assert registry.next_queued() is None


def test_killed_worker_leaves_a_consistent_registry_and_earlier_adapters(registry, tiny_model_dir, tiny_data):
    first = registry.submit(tiny_config(tiny_model_dir, tiny_data, kind="clean"), "kept")
    run_job(registry, first)
    kept = registry.adapters_dir / "kept" / "adapter_model.safetensors"
    before = kept.read_bytes()
    config = tiny_config(tiny_model_dir, tiny_data, epochs=200, eval_items=0, eval_every=0, checkpoint_every=3)
    job = registry.submit(config, "doomed")
    pid = registry.ensure_worker()
    wait_for(lambda: registry.progress(job.id).get("last_checkpoint", 0) >= 3)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: any(j.id == job.id and j.status == "failed" for j in registry.list()))
    # A fresh registry object stands for a restarted app.
    restarted = JobRegistry(registry.root, registry.adapters_dir)
    states = {j.name: j.status for j in restarted.list()}
    assert states == {"kept": "finished", "doomed": "failed"}
    assert "checkpoint" in restarted.get(job.id).error
    assert kept.read_bytes() == before
    assert not (registry.adapters_dir / "doomed").exists()
    assert [p.name for p in (registry.job_dir(job.id) / "run" / "checkpoints").glob("step-*")], "earlier checkpoints survive"


@pytest.mark.parametrize("name", ["../escape", "a/b", "", ".hidden", "x" * 80])
def test_names_that_escape_or_are_odd_are_refused(registry, tiny_model_dir, tiny_data, name):
    with pytest.raises(JobError):
        registry.submit(tiny_config(tiny_model_dir, tiny_data), name)
    assert registry.list() == []


def test_unknown_dataset_file_is_refused_before_a_process_starts(registry, tiny_model_dir, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="data"):
        registry.submit(tiny_config(tiny_model_dir, tiny_data, data=str(tmp_path / "missing.jsonl")), "x")
    assert registry.list() == []


def test_existing_adapter_name_is_refused(registry, tiny_model_dir, tiny_data):
    (registry.adapters_dir / "taken").mkdir(parents=True)
    with pytest.raises(JobError, match="already exists"):
        registry.submit(tiny_config(tiny_model_dir, tiny_data), "taken")
