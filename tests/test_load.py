"""scripts/load_test.py against the dashboard served on the tiny model: concurrent clients get answers, none an
error, also while a training job takes steps beside them (the README's figures come from the same script on the
default model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from app_fixtures import app_checkpoints, app_service, served_app  # noqa: F401 - fixtures

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "load_test.py"


@pytest.fixture(scope="module")
def load_test():
    spec = importlib.util.spec_from_file_location("load_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_concurrent_clients_get_answers_and_no_errors(served_app, load_test):
    url, _ = served_app
    report = load_test.run(url, users=4, requests=3)
    assert report["errors"] == 0, report["first_errors"]
    assert report["ok"] == 12 and report["p50_ms"] <= report["p95_ms"]


def test_the_load_runs_while_a_training_job_takes_steps(served_app, load_test):
    url, _ = served_app
    training = load_test.TrainingBeside(load_test.discover(url)["base"], items=200, epochs=20)
    try:
        step_before = training.start(timeout=240)
        report = load_test.run(url, users=3, requests=3)
    finally:
        state = training.stop()
    assert report["errors"] == 0, report["first_errors"]
    assert state["training_status_after_load"] == "running" and state["training_step_after_load"] > step_before
