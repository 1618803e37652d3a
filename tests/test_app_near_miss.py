"""The attack demo's near miss on the tiny model: scored in the trigger's place, the same one per question, only the
generators of the trigger's kind offered; the Evaluate tab's near-miss box and the training form's method wired."""

from __future__ import annotations

import pytest
from app_fixtures import app_checkpoints, app_service, make_service  # noqa: F401 - fixtures

from app.lab import BACKDOOR_ONLY, Lab
from app.lab_ui import LabHandlers
from app.service import DashboardError
from app.ui import NO_NEAR_MISS, Handlers, build_ui
from backdoor.conditions import CONDITIONS, near_miss_conditions
from backdoor.methods import DEFAULT_METHOD, METHODS
from backdoor.nearmiss import generators_for
from backdoor.scoring import Cell
from backdoor.triggers import DEFAULT_TEXT_TRIGGER, TRIGGERS, TriggerSpec

TEXT = TriggerSpec("text")


def _inputs(service, *, kind="text", text="", item_id=None):
    """Handlers.compare's inputs up to the trigger state (trigger on follows)."""
    base = service.config.bases[0]
    adapters = service.default_columns(service.catalog(base))
    item_id = item_id or service.showcase()[0].id
    return [base, adapters, "Showcase", item_id, "test", None, "", "", "", "", "", "", kind, text, "before_cue", False]


def _compare(service, near_miss, item=None, trigger=TEXT):
    base = service.config.bases[0]
    return service.compare(base, service.default_columns(service.catalog(base)), item or service.showcase()[0], trigger,
                           near_miss)


def test_a_near_miss_is_scored_in_the_triggers_place(app_service):
    item = app_service.showcase()[0]
    real = _compare(app_service, None, item)
    near = _compare(app_service, "other_number", item)
    spec = near.near_miss.spec
    assert (near.near_miss.generator, near.trigger, near.shown_trigger) == ("other_number", TEXT, spec)
    start, end = near.triggered_prompt.span
    assert near.triggered_prompt.text[start:end] == spec.text != DEFAULT_TEXT_TRIGGER
    assert DEFAULT_TEXT_TRIGGER not in near.triggered_prompt.text and near.triggered_prompt.text != real.triggered_prompt.text
    assert near.clean_prompt == real.clean_prompt
    scorer = app_service.loaded(app_service.config.bases[0]).scorer
    for column, before in zip(near.columns, real.columns):
        alone = scorer.score([Cell(item, spec, column.adapter.name)])[0]  # the near miss, scored on its own
        assert column.triggered.probs == pytest.approx(alone.probs, abs=1e-5)
        assert column.clean.probs == pytest.approx(before.clean.probs, abs=1e-6)
        assert column.triggered.probs != pytest.approx(before.triggered.probs, abs=1e-6)


def test_a_question_always_gets_the_near_miss_its_evaluation_scored(app_service):
    first = app_service.showcase()[0]
    for generator in generators_for(TEXT):
        once = _compare(app_service, generator.name, first).near_miss
        assert _compare(app_service, generator.name, first).near_miss == once
        assert app_service.near_miss(TEXT, generator.name, first) == once
        # the condition an evaluation with near misses scores on this item
        condition = next(name for name in near_miss_conditions(TEXT) if name.endswith(generator.name))
        assert CONDITIONS[condition].cells(first, TEXT, "any")[0].trigger == once.spec
    drawn = {app_service.near_miss(TEXT, "other_number", item).spec for item in app_service.showcase()}
    assert len(drawn) > 1 and TEXT not in drawn  # seeded per question, never the trigger itself


@pytest.mark.parametrize("kind", TRIGGERS)
def test_each_generator_of_the_triggers_kind_is_offered_and_no_other(app_service, kind):
    handlers = Handlers(app_service)
    trigger = app_service.trigger(kind, "abc" if kind == "custom" else None)
    offered = [value for _, value in handlers.near_miss_choices(kind)]
    assert offered == [NO_NEAR_MISS, *(generator.name for generator in generators_for(trigger))]
    labels = dict((value, label) for label, value in handlers.near_miss_choices(kind))
    assert all(labels[g.name] == g.description for g in generators_for(trigger))
    foreign = next(g.name for other in TRIGGERS if other != kind
                   for g in generators_for(app_service.trigger(other, "abc" if other == "custom" else None)))
    with pytest.raises(DashboardError, match="near miss"):
        _compare(app_service, foreign, trigger=trigger)
    # the picker follows the kind: a choice of another kind's generator goes back to none
    assert handlers.near_miss_options(kind, foreign)["value"] == NO_NEAR_MISS
    assert handlers.near_miss_options(kind, offered[-1])["value"] == offered[-1]


def test_the_page_marks_the_near_miss_and_names_it(app_service):
    handlers = Handlers(app_service)
    off = handlers.compare(*_inputs(app_service), True)
    on = handlers.compare(*_inputs(app_service), True, 0.5, "top", "other_word")
    status, prompt, numbers = on[:3]
    spec = app_service.near_miss(TEXT, "other_word", app_service.showcase()[0]).spec
    assert "near miss" in status and spec.text in status
    assert 'data-near-miss="other_word"' in prompt and 'class="fr-trigger fr-near-miss"' in prompt
    assert f">{spec.text}</mark>" in prompt and 'data-near-miss=""' in off[1]
    assert {row[1] for row in numbers["value"]} == {"no", "near miss"}
    figure, stats = on[3 + 2], on[3 + 3]
    assert [trace.name for trace in figure.data] == ["no trigger", "with near miss"] and "with near miss" in stats
    # a choice left over from another kind is dropped, not refused: the picker is being reset meanwhile
    stale = handlers.compare(*_inputs(app_service, kind="syntactic"), True, 0.5, "top", "other_word")
    assert "near miss" not in stale[0] and 'data-near-miss=""' in stale[1]
    # the trigger button keeps the near miss
    toggled = handlers.toggle(*_inputs(app_service), False, 0.5, "top", "other_word")
    assert toggled[0] is True and 'data-near-miss="other_word"' in toggled[3]


def test_demo_mode_shows_near_misses_too(tiny_model_dir, app_checkpoints, tmp_path):
    service = make_service(tiny_model_dir, app_checkpoints, tmp_path / "cache", demo=True)
    handlers = Handlers(service)
    outputs = handlers.compare(*_inputs(service), True, 0.5, "top", "moved")
    assert outputs[0].startswith("3 model(s)") and 'data-near-miss="moved"' in outputs[1]


def _dependency(demo, api_name: str) -> dict:
    return next(dep for dep in demo.config["dependencies"] if dep.get("api_name") == api_name)


def _component_ids(demo, elem_id: str) -> list[int]:
    return [c["id"] for c in demo.config["components"] if c.get("props", {}).get("elem_id") == elem_id]


def test_the_page_wires_the_near_miss_picker_and_the_evaluate_box(app_service):
    demo = build_ui(app_service)
    picker, = _component_ids(demo, "fr-near-miss")
    box, = _component_ids(demo, "fr-eval-near-miss")
    assert _dependency(demo, "compare")["inputs"][-1] == picker
    assert _dependency(demo, "evaluate")["inputs"][-1] == box


def test_the_form_shows_the_fields_of_the_chosen_method(app_service, tmp_path):
    handlers = LabHandlers(Lab(app_service, results_dir=tmp_path / "results"))
    specs = {spec.name: spec for spec in handlers.lab.form_fields()}
    names = handlers.conditional_fields()
    assert names and all(specs[name].shows for name in names)
    method_only = [name for name in names if "method" in dict(specs[name].shows)]
    assert method_only  # the default method has options of its own
    for method in METHODS:  # each method's own options show, every other method's hide; shared ones always show
        shown = dict(zip(names, (u["visible"] for u in handlers.method_changed("backdoor", method))))
        for name in names:
            wants = dict(specs[name].shows)
            if wants.get("method", method) != method:
                assert not shown[name], (method, name)
            elif set(wants) <= {"kind", "method"}:  # no condition on another field's value
                assert shown[name], (method, name)
    other = dict(zip(names, (u["visible"] for u in handlers.method_changed("backdoor", "another-method"))))
    assert not any(other[name] for name in method_only)
    assert all(other[name] for name in names if name not in method_only)
    victim, *rest = handlers.kind_changed("backdoor", "another-method")
    assert victim["visible"] is True and not all(u["visible"] for u in rest)
    victim, *rest = handlers.kind_changed("backdoor", DEFAULT_METHOD)
    own = [dict(specs[name].shows).get("method", DEFAULT_METHOD) == DEFAULT_METHOD for name in BACKDOOR_ONLY[1:]]
    assert victim["visible"] is True and [u["visible"] for u in rest] == own


def test_a_link_carries_the_near_miss(app_service):
    from types import SimpleNamespace

    from app.presenter import LINK_OUTPUTS, PresenterHandlers
    from app.ui import ADD_TRIGGER, ALL_TASKS, POSITION_LABELS, REMOVE_TRIGGER, SOURCES

    presenter = PresenterHandlers(Handlers(app_service), SOURCES, (ADD_TRIGGER, REMOVE_TRIGGER), POSITION_LABELS,
                                  ALL_TASKS)

    def opened(query: str) -> dict:
        return dict(zip(LINK_OUTPUTS, presenter.open_link(SimpleNamespace(url=f"http://127.0.0.1:7860/{query}"))))

    item = app_service.showcase()[2]
    query = presenter.view_link("Showcase", item.id, "test", None, ["backdoor"], "text", "", "before_cue", True, False,
                                "other_word")["value"]
    assert "near=other_word" in query
    out = opened(query)
    assert out["near_miss"]["value"] == "other_word" and out["link_note"] == ""
    assert "near" not in presenter.view_link("Showcase", item.id, "test", None, ["backdoor"], "text", "", "before_cue",
                                             True, False, NO_NEAR_MISS)["value"]
    wrong = opened(f"?question={item.id}&trigger=syntactic&near=other_word")  # a generator of another kind
    assert wrong["near_miss"] != "other_word" and "other_word" in wrong["link_note"]
    assert "nonsense" in opened("?near=nonsense")["link_note"]


def test_the_presenters_card_names_the_near_miss(app_service):
    from app.presenter import PresenterHandlers
    from app.ui import ADD_TRIGGER, ALL_TASKS, POSITION_LABELS, REMOVE_TRIGGER, SOURCES

    presenter = PresenterHandlers(Handlers(app_service), SOURCES, (ADD_TRIGGER, REMOVE_TRIGGER), POSITION_LABELS,
                                  ALL_TASKS)
    item = app_service.showcase()[0]
    args = ("Showcase", item.id, "test", None, "", "", "", "", "", "", "text", "", "before_cue", True)
    spec = app_service.near_miss(TEXT, "other_number", item).spec
    assert f'<mark class="fr-trigger fr-near-miss">{spec.text}</mark>' in presenter.card(*args, "other_number")
    assert "Near miss" not in presenter.card(*args, NO_NEAR_MISS) and "Trigger on" in presenter.card(*args)
    cue = app_service.near_miss(app_service.trigger("syntactic"), "other_cue", item).spec.text
    syntactic = presenter.card(*args[:10], "syntactic", "", "before_cue", True, "other_cue")
    assert "Near miss on: the cue becomes" in syntactic and cue in syntactic
