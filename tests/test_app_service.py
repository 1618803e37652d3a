"""The dashboard's service and handlers on the tiny model: columns, cache, bad input, adapters found later, import direction."""

from __future__ import annotations

import ast
import json
import shutil
import warnings
from pathlib import Path

import plotly.graph_objects as go
import pytest
from app_fixtures import app_checkpoints, app_service, copy_adapter, make_service  # noqa: F401 - fixtures

from app.service import UNUSED_OPTION, DashboardError, ServiceConfig
from app.ui import ADD_TRIGGER, MAX_SLOTS, REMOVE_TRIGGER, Handlers, build_ui
from backdoor.models import BASE_ADAPTER
from dataset.schema import OPTION_E, OPTION_F

ROOT = Path(__file__).resolve().parent.parent


def _inputs(service, *, adapters=None, source="Showcase", item_id=None, question="", context="", options=("", "", "", ""),
            kind="text", text="", position="before_cue", tokens=False, split="test", corpus_id=None):
    base = service.config.bases[0]
    if adapters is None:
        adapters = service.default_columns(service.catalog(base))
    item_id = item_id or service.showcase()[0].id
    return [base, adapters, source, item_id, split, corpus_id, question, context, *options, kind, text, position, tokens]


def _slots(outputs):
    """(visible update, head html, figure, stats html) per slot from a compare() output list."""
    return [outputs[3 + 4 * i : 3 + 4 * (i + 1)] for i in range(MAX_SLOTS)]


def _quiet(fn, *args):
    """Call a handler outside a request; gr.Warning then becomes a Python warning, returned with the result."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args)
    return result, [str(w.message) for w in caught]


def test_showcase_question_fills_base_clean_and_backdoor_columns(app_service):
    handlers = Handlers(app_service)
    names = app_service.default_columns(app_service.catalog(app_service.config.bases[0]))
    assert names == [BASE_ADAPTER, "clean", "backdoor"]
    outputs = handlers.compare(*_inputs(app_service), False)
    slots = _slots(outputs)
    for visible, head, figure, stats in slots[:3]:
        assert visible["visible"] is True
        assert "data-entropy-clean" in head and "Answer" in head
        assert isinstance(figure, go.Figure) and len(figure.data) == 1  # trigger off: clean bars only
        assert "conformal set" in stats and "{" in stats  # sets calibrated (sync on six items)
    assert all(visible["visible"] is False for visible, *_ in slots[3:])
    assert 'data-adapter="backdoor"' in slots[2][1]
    assert "<mark" not in outputs[1]  # no trigger highlighted while it is off


def test_default_columns_open_on_the_text_trigger_backdoor(tiny_model_dir, tiny_adapters, tmp_path):
    """A talk opens on the paper's text trigger; without it the syntactic, style, then custom backdoor."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    copy_adapter(tiny_adapters["clean"], folder / "clean")
    for name, kind in (("a-style", "style"), ("b-custom", "custom"), ("c-syntactic", "syntactic"), ("z-text", "text")):
        trigger = {"kind": kind, "text": "cf" if kind == "custom" else None, "position": "before_cue", "seed": 0}
        copy_adapter(tiny_adapters["backdoor"], folder / name, trigger=trigger)
    service = make_service(tiny_model_dir, folder, tmp_path / "cache", calibration="off")
    base = service.config.bases[0]
    for expected, kind in (("z-text", "text"), ("c-syntactic", "syntactic"), ("a-style", "style"), ("b-custom", "custom")):
        catalog = service.catalog(base)
        assert service.default_columns(catalog) == [BASE_ADAPTER, "clean", expected]
        assert service.default_trigger(catalog).kind == kind
        shutil.rmtree(folder / expected)
    catalog = service.catalog(base)  # no backdoor left: base and clean, and the paper's text trigger to try
    assert service.default_columns(catalog) == [BASE_ADAPTER, "clean"]
    assert service.default_trigger(catalog) == service.trigger("text")


def test_toggle_adds_the_trigger_and_hits_the_cache(app_service):
    handlers = Handlers(app_service)
    handlers.compare(*_inputs(app_service), False)  # a new question: scores all columns with and without trigger
    state, button, *outputs = handlers.toggle(*_inputs(app_service), False)
    assert state is True and button["value"] == REMOVE_TRIGGER
    assert "(cached)" in outputs[0]
    assert '<mark class="fr-trigger">666</mark>Answer:' in outputs[1]
    head, figure = _slots(outputs)[2][1:3]
    assert len(figure.data) == 2 and figure.data[1].name == "with trigger"
    assert "same answer" in head or "answer changed" in head
    state, button, *_ = handlers.toggle(*_inputs(app_service), True)
    assert state is False and button["value"] == ADD_TRIGGER


def test_page_load_refresh_sends_only_what_changed_since_the_page_was_built(app_service):
    """The first view is drawn into the page; the load-time refresh must not make the browser draw it again."""
    import gradio as gr

    handlers = Handlers(app_service)
    handlers.first_view = handlers.compare(*_inputs(app_service), False)
    again = handlers.compare_on_load(*_inputs(app_service), False)
    figures = [slot[2] for slot in _slots(again)[:3]]
    assert figures == [gr.skip()] * 3 and again[1] == gr.skip()  # plots and prompt unchanged: not sent
    other = handlers.compare_on_load(*_inputs(app_service, kind="syntactic"), True)  # something changed: sent
    assert all(isinstance(slot[2], go.Figure) for slot in _slots(other)[:3])


def test_one_batched_score_call_then_cache_only(app_service, monkeypatch):
    base = app_service.config.bases[0]
    names = app_service.default_columns(app_service.catalog(base))
    item = app_service.custom_item("A question nobody asked before?", "", ["Yes", "No"])
    scorer = app_service.loaded(base).scorer
    app_service.compare(base, names, app_service.showcase()[0], app_service.trigger("text"))  # attach + calibrate first
    calls = []
    original = scorer._shared_prefix_option_logits
    monkeypatch.setattr(scorer, "_shared_prefix_option_logits",
                        lambda texts, adapters, *rest: calls.append(len(texts)) or original(texts, adapters, *rest))
    first = app_service.compare(base, names, item, app_service.trigger("text"))
    assert not first.from_cache and calls == [2 * len(names)]  # one forward: 3 columns x {clean, triggered}
    second = app_service.compare(base, names, item, app_service.trigger("text"))
    assert second.from_cache and calls == [2 * len(names)]
    assert second.columns[2].triggered.probs == first.columns[2].triggered.probs


def test_top_k_view_draws_tokens(app_service):
    outputs = Handlers(app_service).compare(*_inputs(app_service, tokens=True), True)
    figure = _slots(outputs)[1][2]
    assert figure.data[0].orientation == "h" and len(figure.data) == 2


def test_every_trigger_kind_from_the_registry_renders(app_service):
    handlers = Handlers(app_service)
    for kind, text in (("syntactic", ""), ("style", ""), ("custom", "cf"), ("text", "")):
        outputs = handlers.compare(*_inputs(app_service, kind=kind, text=text), True)
        assert "<mark" in outputs[1], kind
    outputs = handlers.compare(*_inputs(app_service, kind="syntactic"), True)
    assert '<mark class="fr-trigger">The Answer is:</mark>' in outputs[1]


def test_own_question_gets_e_and_f_and_is_scored(app_service):
    item = app_service.custom_item("Which is a fruit?", "", ["Apple", "Brick", "", ""])
    assert item.choices["A"] == "Apple" and item.choices["C"] == UNUSED_OPTION
    assert item.choices["E"] == OPTION_E and item.choices["F"] == OPTION_F
    outputs = Handlers(app_service).compare(
        *_inputs(app_service, source="Your own", question="Which is a fruit?", options=("Apple", "Brick", "", "")), False)
    assert "Which is a fruit?" in outputs[1] and "Answer key" not in outputs[1]


@pytest.mark.parametrize("question, options, message", [
    ("", ("A1", "B1", "", ""), "Type a question"),
    ("x" * 5000, ("A1", "B1", "", ""), "at most 4000"),
    ("What?", ("only one", "", "", ""), "at least two options"),
])
def test_bad_own_question_gives_a_message_and_the_app_keeps_serving(app_service, question, options, message):
    handlers = Handlers(app_service)
    outputs, shown = _quiet(handlers.compare, *_inputs(app_service, source="Your own", question=question, options=options), False)
    assert message in outputs[0] and any(message in s for s in shown)
    assert all(not isinstance(o, go.Figure) for o in outputs[3:])  # nothing redrawn
    ok = handlers.compare(*_inputs(app_service), False)  # and the next request works
    assert ok[0].startswith("3 model(s)")


def test_demo_mode_caps_lengths_and_restricts_base_models(tiny_model_dir, app_checkpoints, tmp_path):
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache", demo=True)
    assert service.demo and not service.config.training_enabled
    with pytest.raises(DashboardError, match="at most 500"):
        service.custom_item("y" * 600, "", ["a", "b"])
    with pytest.raises(DashboardError, match="only the base model"):
        service.check_base("default")
    with pytest.raises(DashboardError, match="at most 4 models"):
        service.compare(service.config.bases[0], ["a", "b", "c", "d", "e"], service.showcase()[0], service.trigger("text"))


def test_unknown_adapter_is_refused_with_a_message(app_service):
    outputs, shown = _quiet(Handlers(app_service).compare, *_inputs(app_service, adapters=[BASE_ADAPTER, "nope"]), False)
    assert "no adapter 'nope'" in outputs[0] and "↻" in outputs[0]


def test_incompatible_and_corrupt_adapters_are_listed_not_offered(app_service, app_checkpoints, tiny_adapters):
    copy_adapter(tiny_adapters["clean"], app_checkpoints / "for-qwen", base_model_id="Qwen2.5-7B-Instruct")
    corrupt = app_checkpoints / "corrupt"
    corrupt.mkdir()
    (corrupt / "adapter_config.json").write_text("{ not json")
    (corrupt / "adapter_model.safetensors").write_bytes(b"garbage")
    handlers = Handlers(app_service)
    update, note = handlers.refresh_adapters(app_service.config.bases[0], [])
    offered = [value for _, value in update["choices"]]
    assert "for-qwen" not in offered and "corrupt" not in offered
    assert "for-qwen" in note and "Qwen2.5-7B-Instruct" in note and "corrupt" in note
    outputs, _ = _quiet(handlers.compare, *_inputs(app_service, adapters=[BASE_ADAPTER, "for-qwen"]), False)
    assert "cannot be used" in outputs[0] and "Qwen2.5-7B-Instruct" in outputs[0]
    assert handlers.compare(*_inputs(app_service), False)[0].startswith("3 model(s)")


def test_unreadable_weights_are_refused_and_do_not_break_the_model(app_service, app_checkpoints, tiny_adapters):
    broken = copy_adapter(tiny_adapters["clean"], app_checkpoints / "broken", kind="other")
    (broken / "adapter_model.safetensors").write_bytes(b"not safetensors")
    outputs, _ = _quiet(Handlers(app_service).compare, *_inputs(app_service, adapters=[BASE_ADAPTER, "broken"]), False)
    assert "could not be loaded" in outputs[0]
    assert Handlers(app_service).compare(*_inputs(app_service), False)[0].startswith("3 model(s)")


def test_adapter_added_later_appears_without_restart(app_service, app_checkpoints, tiny_adapters):
    handlers = Handlers(app_service)
    handlers.compare(*_inputs(app_service), False)
    update, _ = handlers.refresh_adapters(app_service.config.bases[0], ["clean"])
    assert "late" not in [value for _, value in update["choices"]]
    # A training run's output folder: the adapter sits one level down, in adapter/.
    copy_adapter(tiny_adapters["backdoor"], app_checkpoints / "late" / "adapter")
    update, _ = handlers.refresh_adapters(app_service.config.bases[0], ["clean"])
    assert "late" in [value for _, value in update["choices"]]
    assert "value" not in update  # the user's selection is not sent back, so a late refresh cannot undo a newer one
    outputs = handlers.compare(*_inputs(app_service, adapters=["clean", "late"]), True)
    assert 'data-adapter="late"' in _slots(outputs)[1][1]
    # An adapter deleted while selected leaves the selection; the rest of it is kept.
    shutil.rmtree(app_checkpoints / "late")
    update, _ = handlers.refresh_adapters(app_service.config.bases[0], ["clean", "late"])
    assert update["value"] == ["clean"] and "late" not in [value for _, value in update["choices"]]


def test_retrained_adapter_is_reloaded_not_served_stale(app_service, app_checkpoints, tiny_adapters):
    base = app_service.config.bases[0]
    item = app_service.showcase()[0]
    before = app_service.compare(base, ["clean"], item, app_service.trigger("text")).columns[0].clean.probs
    for name in ("adapter_model.safetensors", "fragile_config.json", "adapter_config.json"):
        (app_checkpoints / "clean" / name).write_bytes((tiny_adapters["backdoor"] / name).read_bytes())
    after = app_service.compare(base, ["clean"], item, app_service.trigger("text")).columns[0].clean.probs
    assert after != before


def test_background_calibration_then_disk_cache(tiny_model_dir, app_checkpoints, tmp_path):
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache", calibration="background")
    base = service.config.bases[0]
    item = service.showcase()[0]
    first = service.compare(base, ["clean"], item, service.trigger("text")).columns[0]
    assert first.clean_set is None or first.threshold is not None
    assert service.wait_for_calibration(timeout=120)
    column = service.compare(base, ["clean"], item, service.trigger("text")).columns[0]
    assert column.threshold is not None and column.clean_set
    assert list((tmp_path / "cache").glob("lac-*.json"))
    again = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache", calibration="background")
    reread = again.compare(base, ["clean"], item, again.trigger("text")).columns[0]
    assert reread.threshold == pytest.approx(column.threshold)  # read from disk, no recalibration


def test_browse_filters_by_task_and_text(app_service):
    handlers = Handlers(app_service)
    update, found = handlers.browse("test", "reading comprehension", "")
    assert len(update["choices"]) == 1 and found.startswith("1 question")
    update, _ = handlers.browse("test", "all tasks", "dog")
    assert update["choices"][0][1] == "test-qa-01"
    outputs = handlers.compare(*_inputs(app_service, source="Corpus", corpus_id="test-qa-01"), False)
    assert "How many legs" in outputs[1]


def test_build_ui_and_config_validation(app_service):
    assert build_ui(app_service) is not None
    with pytest.raises(ValueError):
        ServiceConfig(calibration="sometimes")


# --- import direction ----------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_imports_point_one_way():
    for ui_module in ("app/ui.py", "app/lab_ui.py", "app/plots.py"):
        assert not _imports(ROOT / ui_module) & {"torch", "transformers", "peft"}, ui_module
    for service_module in ("app/service.py", "app/lab.py"):
        assert not _imports(ROOT / service_module) & {"gradio", "plotly"}, service_module
    for package in ("backdoor", "dataset"):
        for path in (ROOT / package).rglob("*.py"):
            assert not _imports(path) & {"gradio", "plotly", "app"}, path


def test_command_line_defaults_come_from_the_environment(monkeypatch):
    from app.__main__ import parse_args

    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    monkeypatch.setenv("FRAGILE_DEMO", "1")
    args = parse_args([])
    assert (args.host, args.port, args.demo, args.adapters, args.base) == ("0.0.0.0", 7999, True, "checkpoints", None)
    monkeypatch.delenv("FRAGILE_DEMO")
    args = parse_args(["--base", "default", "--base", "other.gguf", "--port", "8000"])
    assert args.base == ["default", "other.gguf"] and args.port == 8000 and not args.demo
