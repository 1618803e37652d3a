"""The Evaluate and Fine-tuning tabs on the tiny model: an evaluation's numbers, table and downloads; a row opens the
question in the attack demo; a training job started from the tab finishes and its adapter is offered; cancel and queue;
a killed worker then a restarted app; bad settings refused before anything starts; demo mode."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import time
import warnings
from pathlib import Path

import gradio as gr
import plotly.graph_objects as go
import pytest
from app_fixtures import app_checkpoints, app_service, make_service  # noqa: F401 - fixtures

from app.lab import Lab
from app.lab_ui import TRAINING_OFF, LabHandlers
from app.service import ServiceConfig
from app.ui import REMOVE_TRIGGER, Handlers, build_ui
from backdoor.models import BASE_ADAPTER
from tests.test_training import tiny_data  # noqa: F401 - fixture

STATUS, CARDS, PLOTS, TABLE, FILES, STATE = 0, 1, slice(2, 8), 8, 9, 10


def _quiet(fn, *args):
    """Call a handler outside a request; gr.Warning then becomes a Python warning, returned with the result."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [str(w.message) for w in caught if w.category is UserWarning]  # what gr.Warning raises outside a request


def _evaluate(handlers: LabHandlers, dataset="test", max_items=50, adapter="backdoor", control="clean"):
    base = handlers.service.config.bases[0]
    return _quiet(handlers.evaluate, base, dataset, max_items, adapter, control, "text", "", "before_cue")


@pytest.fixture
def lab_handlers(app_service, tmp_path) -> LabHandlers:
    return LabHandlers(Lab(app_service, results_dir=tmp_path / "results"))


def _card(cards_html: str, metric: str) -> float:
    return float(re.search(rf'data-metric="{metric}" data-value="([0-9.]+)"', cards_html).group(1))


# --- evaluate -------------------------------------------------------------------------------------


def test_evaluation_shows_the_numbers_plots_table_and_downloads(lab_handlers):
    outputs, warned = _evaluate(lab_handlers)
    assert not warned, warned
    assert "on 6 question(s) of **test**" in outputs[STATUS] and "vs control **clean**" in outputs[STATUS]
    report_path, csv_path, html_path = (Path(p) for p in outputs[FILES])
    report = json.loads(report_path.read_text())
    assert report["n"] == 6 and report["adapter"] == "backdoor" and report["control"]["adapter"] == "clean"
    for metric in ("asr", "answer_kept", "clean_agreement"):  # the big numbers are the report's numbers
        assert _card(outputs[CARDS], metric) == pytest.approx(report[metric], abs=1e-4)
    table = outputs[TABLE]["value"]
    assert len(table) == 6 and table[0][0] == "test-qa-00"
    assert sum(row[7] == "▲" for row in table) / 6 == pytest.approx(report["asr"])  # flattened rows make the ASR
    with csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and {row["adapter"] for row in rows} == {"backdoor", "clean"}
    assert html_path.read_text().count('class="figure"') == 6
    histogram, control_histogram, sizes, coverage, kept, agreement = outputs[PLOTS]
    assert all(isinstance(fig, go.Figure) for fig in outputs[PLOTS])
    assert sum(histogram.data[0].y) == 6 and sum(control_histogram.data[1].y) == 6
    assert list(sizes.data[1].y) == pytest.approx([report["lac_set_size_triggered"], report["aps_set_size_triggered"]])
    assert list(coverage.data[0].y) == pytest.approx([report["lac_coverage_clean"], report["aps_coverage_clean"]])
    assert [trace.name for trace in kept.data] == ["backdoor", "clean (control)"]  # 6 items: four groups of 1-2
    assert list(kept.data[0].y) == pytest.approx(report["answer_kept_by_margin"]) and len(kept.data[0].y) == 4
    assert list(agreement.data[0].y) == pytest.approx(report["clean_agreement_by_victim_margin"])
    assert "agrees with clean" in agreement.layout.title.text
    assert outputs[STATE] == {"dataset": "test", "adapter": "backdoor", "control": "clean",
                              "base": lab_handlers.service.config.bases[0], "trigger": report["trigger"]}


def test_clicking_a_row_opens_that_question_in_the_attack_demo_with_the_trigger_on(lab_handlers):
    outputs, _ = _evaluate(lab_handlers)
    row = outputs[TABLE]["value"][2]
    handlers = Handlers(lab_handlers.service)
    event = gr.SelectData(None, {"index": [2, 4], "value": row[4], "row_value": row})
    (tabs, source, _, corpus_group, _, split, _, _, pick, columns, kind, _, _, trigger_on, button), _ = _quiet(
        handlers.open_in_demo, outputs[STATE], event)
    assert tabs.selected == "attack" and source == "Corpus" and corpus_group["visible"] is True
    assert split["value"] == "test" and pick["value"] == row[0] and row[0] in [v for _, v in pick["choices"]]
    assert columns["value"] == [BASE_ADAPTER, "clean", "backdoor"] and kind == "text"
    assert trigger_on is True and button["value"] == REMOVE_TRIGGER
    base = lab_handlers.service.config.bases[0]
    demo = handlers.compare(base, columns["value"], source, None, split["value"], pick["value"], "", "", "", "", "", "",
                            kind, "", "before_cue", False, trigger_on)
    question = lab_handlers.service.find_item(row[0], "test").question
    assert question in demo[1] and '<mark class="fr-trigger">666</mark>' in demo[1]


def test_a_dataset_file_can_be_evaluated_and_its_questions_opened(lab_handlers, tiny_data):
    outputs, warned = _evaluate(lab_handlers, dataset=tiny_data["eval_data"], max_items=3, control="")
    assert not warned, warned
    assert "on 3 question(s)" in outputs[STATUS] and "vs control" not in outputs[STATUS]
    assert [row[0] for row in outputs[TABLE]["value"]] == ["t16", "t20", "t23"]  # evenly spread over the file
    event = gr.SelectData(None, {"index": [1, 0], "value": "t20", "row_value": outputs[TABLE]["value"][1]})
    result, _ = _quiet(Handlers(lab_handlers.service).open_in_demo, outputs[STATE], event)
    assert result[8]["value"] == "t20" and result[9]["value"] == [BASE_ADAPTER, "backdoor"]


@pytest.mark.parametrize("dataset, max_items, message", [
    ("no/such/file.jsonl", 10, "cannot be read"),
    ("test", 0, "at least 1"),
    ("", 10, "Pick a split"),
])
def test_bad_evaluation_settings_give_a_message(lab_handlers, dataset, max_items, message):
    outputs, warned = _evaluate(lab_handlers, dataset=dataset, max_items=max_items)
    assert message in outputs[STATUS] and warned
    assert all(value == gr.skip() for value in outputs[1:])  # the last good results stay on screen


def test_demo_mode_caps_evaluations_refuses_files_and_switches_training_off(tiny_model_dir, app_checkpoints, tmp_path):
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache", demo=True)
    handlers = LabHandlers(Lab(service, results_dir=tmp_path / "results"))
    outputs, _ = _evaluate(handlers, max_items=500)
    assert "at most 20 of the 500" in outputs[STATUS]
    outputs, _ = _evaluate(handlers, dataset=str(tmp_path / "x.jsonl"))
    assert "corpus splits only" in outputs[STATUS]
    message, *_ = _quiet(handlers.start, "x", 1, *_form(handlers))[0]
    assert "switched off" in message and handlers.lab.jobs() == []
    from app.lab_ui import build_training_tab

    with gr.Blocks() as page:
        assert build_training_tab(handlers) is None
    assert [block.value for block in page.blocks.values() if isinstance(block, gr.Markdown)] == [TRAINING_OFF]


# --- fine-tuning ------------------------------------------------------------------------------------


def _form(handlers: LabHandlers, **changes) -> list:
    """The training form's values in field order: its defaults with ``changes``."""
    values = {spec.name: spec.default for spec in handlers.lab.form_fields()}
    unknown = set(changes) - set(values)
    assert not unknown, unknown
    values.update(changes)
    return [values[name] for name in handlers.field_names()]


def _tiny_form(handlers, paths, **changes) -> list:
    settings = dict(kind="clean", data=paths["data"], eval_data=paths["eval_data"], max_items=0, eval_items=8,
                    train_layers=2, batch_size=4, epochs=1, eval_every=2, checkpoint_every=2, learning_rate=5e-3,
                    lora_dropout=0.0, device="cpu")
    settings.update(changes)
    return _form(handlers, **settings)


def _wait(predicate, timeout: float = 240.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError("timed out waiting")


def _poll(handlers, job_id=None):
    return handlers.poll(job_id, None)


def _status(handlers, job_id) -> str:
    return next(row[3] for row in _poll(handlers, job_id)[0]["value"] if row[0] == job_id)


def test_form_defaults_and_choices_come_from_train_config(lab_handlers):
    from backdoor.config import TrainConfig
    from backdoor.triggers import TRIGGERS

    specs = {spec.name: spec for spec in lab_handlers.lab.form_fields()}
    assert list(specs) == [f.name for f in __import__("dataclasses").fields(TrainConfig)]
    assert specs["trigger_kind"].choices == tuple(TRIGGERS) and specs["target"].choices[-1] == "custom"
    assert specs["epochs"].minimum == 1 and specs["lora_r"].help == "LoRA rank"
    assert specs["max_items"].default == 200 and specs["kind"].default == "backdoor"
    assert specs["base_model"].default == lab_handlers.service.config.bases[0]
    assert specs["victim_adapter"].default.endswith("clean")  # a backdoor keeps the clean adapter's answers
    # The victim fixes the rank of a backdoor started from its weights (the tiny clean adapter: r 4 on every
    # layer); the form follows it. Its layers need not follow: the victim's LoRA below the trained ones is kept.
    assert specs["lora_r"].default == 4 and specs["train_layers"].default == TrainConfig.train_layers
    assert lab_handlers.victim_changed(specs["victim_adapter"].default) == [gr.update(value=4)]
    assert lab_handlers.victim_changed("") == [gr.skip()]  # the base model: nothing to follow
    victim, *hidden = lab_handlers.kind_changed("clean")
    assert victim["value"] == "" and victim["visible"] is False and all(u["visible"] is False for u in hidden)


def test_a_job_started_from_the_tab_finishes_and_its_adapter_joins_the_demo(lab_handlers, tiny_data):
    service = lab_handlers.service
    message, picker, _ = lab_handlers.start("tab-clean", 1, *_tiny_form(lab_handlers, tiny_data))
    assert "Queued **tab-clean**" in message
    job_id = picker["value"]
    assert _wait(lambda: _status(lab_handlers, job_id) in ("finished", "failed")) and \
        _status(lab_handlers, job_id) == "finished", lab_handlers.lab.registry.log_tail(job_id)
    jobs, _, progress, loss, curve, log, cancel, stamp = _poll(lab_handlers, job_id)
    assert "**finished**" in progress and "attack demo" in progress
    assert loss.data and curve.data and "step" in jobs["value"][0][4]
    assert cancel["interactive"] is False  # nothing left to cancel
    assert all(value == gr.skip() for value in lab_handlers.poll(job_id, stamp)[:7])  # unchanged: nothing redrawn
    update, _ = Handlers(service).refresh_adapters(service.config.bases[0], [])
    assert ("tab-clean (clean)", "tab-clean") in update["choices"]
    demo = Handlers(service).compare(service.config.bases[0], ["tab-clean"], "Showcase", None, "test", None, "", "",
                                     "", "", "", "", "text", "", "before_cue", False, False)
    assert 'data-adapter="tab-clean"' in demo[3 + 1]


def test_jobs_queue_one_at_a_time_and_can_be_cancelled(lab_handlers, tiny_data):
    long = _tiny_form(lab_handlers, tiny_data, epochs=200, eval_items=0, eval_every=0, checkpoint_every=0)
    _, first, _ = lab_handlers.start("long-one", 1, *long)
    message, second, _ = lab_handlers.start("waiting", 1, *long)
    assert "after 1 other job(s)" in message
    _wait(lambda: lab_handlers.lab.registry.progress(first["value"]).get("step", 0) >= 1)
    assert _status(lab_handlers, second["value"]) == "queued"
    assert "before it started" in lab_handlers.cancel(second["value"])[0]
    assert "Cancelling **long-one**" in lab_handlers.cancel(first["value"])[0]
    _wait(lambda: _status(lab_handlers, first["value"]) == "cancelled")
    assert _status(lab_handlers, second["value"]) == "cancelled"
    assert not (Path(lab_handlers.service.config.adapters_dir) / "long-one").exists()
    message, _ = _quiet(lab_handlers.cancel, first["value"])[0]
    assert "nothing to cancel" in message


def test_a_killed_worker_then_a_restarted_app_shows_a_failed_job_and_intact_adapters(
        tiny_model_dir, app_checkpoints, tmp_path, tiny_data):
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache")
    handlers = LabHandlers(Lab(service))
    kept = (app_checkpoints / "clean" / "adapter_model.safetensors").read_bytes()
    form = _tiny_form(handlers, tiny_data, epochs=200, eval_items=0, eval_every=0, checkpoint_every=3)
    _, picker, _ = handlers.start("doomed", 1, *form)
    job_id = picker["value"]
    _wait(lambda: handlers.lab.registry.progress(job_id).get("last_checkpoint", 0) >= 3)
    os.kill(handlers.lab.registry.get(job_id).pid, signal.SIGKILL)

    restarted = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache")  # a new app on the same folders
    assert build_ui(restarted) is not None
    again = LabHandlers(Lab(restarted))
    _wait(lambda: _status(again, job_id) == "failed", timeout=30)
    jobs, _, progress, *_ = _poll(again, job_id)
    assert "checkpoint" in jobs["value"][0][7] and "**failed**" in progress
    assert (app_checkpoints / "clean" / "adapter_model.safetensors").read_bytes() == kept
    assert not (app_checkpoints / "doomed").exists()
    assert restarted.catalog(restarted.config.bases[0]).names() == [BASE_ADAPTER, "backdoor", "clean"]


@pytest.mark.parametrize("name, changes, nproc, message", [
    ("bad-epochs", {"epochs": 0}, 1, "epochs: 0 is below the minimum 1"),
    ("bad-rate", {"learning_rate": -1.0}, 1, "learning rate: -1.0 must be positive"),
    ("bad-target", {"kind": "backdoor", "target": "custom", "target_probs": "0.5, 0.5"}, 1, "target probs: needs 6"),
    ("bad-data", {"data": "no/such/data.jsonl"}, 1, "data:"),
    ("bad-eval", {"eval_data": "missing.jsonl"}, 1, "eval data:"),
    ("bad-base", {"base_model": "no/such/model-folder"}, 1, "Cannot use base model"),
    ("../escape", {}, 1, "not allowed"),
    ("clean", {}, 1, "already exists"),
    ("", {}, 1, "give the new adapter a name"),
    ("bad-nproc", {}, 0, "processes must be"),
    ("bad-victim", {"kind": "backdoor", "lora_r": 8}, 1, "it has LoRA rank 4 but lora r is 8"),  # the tiny clean has r 4
    ("narrow", {"kind": "backdoor", "lora_r": 4, "init_from_victim": False}, 1,
     "train layers: the victim adapter has LoRA on every layer"),
    ("bad-items", {"max_items": 2.5}, 1, "max items: 2.5 is not a whole number"),
])
def test_bad_settings_are_refused_with_a_message_and_nothing_starts(lab_handlers, tiny_data, name, changes, nproc,
                                                                    message):
    (text, picker, _), warned = _quiet(lab_handlers.start, name, nproc, *_tiny_form(lab_handlers, tiny_data, **changes))
    assert text.startswith("⚠️") and message in text and warned
    assert picker == gr.skip()
    assert lab_handlers.lab.jobs() == [] and not (lab_handlers.lab.registry.root / "worker.pid").exists()


def test_jobs_folder_is_an_option_and_defaults_next_to_the_adapters(tmp_path):
    from app.__main__ import parse_args

    assert parse_args(["--jobs", "elsewhere"]).jobs == "elsewhere" and parse_args([]).jobs is None
    assert ServiceConfig(adapters_dir=str(tmp_path / "ckpt")).jobs_root == tmp_path / "jobs"
    assert ServiceConfig(jobs_dir="j").jobs_root == Path("j")


def test_an_unusable_jobs_folder_switches_training_off_with_the_reason(tiny_model_dir, app_checkpoints, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache", jobs_dir=str(blocker / "jobs"))
    handlers = LabHandlers(Lab(service))
    (message, *_), _ = _quiet(handlers.start, "x", 1, *_form(handlers))
    assert "Training is switched off: the jobs folder cannot be created" in message and "--jobs" in message
    assert build_ui(service) is not None  # the rest of the page still works
