"""Presenter mode's handlers on the tiny model: a link becomes the page's state, stepping wraps round, the copied
link reads back as the view on the page, and the question card shows the question, its options and the trigger."""

from __future__ import annotations

import html
from types import SimpleNamespace

import pytest
from app_fixtures import app_checkpoints, app_service  # noqa: F401 - fixtures

from app.deeplink import parse_view
from app.presenter import LINK_OUTPUTS, PresenterHandlers
from app.ui import ADD_TRIGGER, ALL_TASKS, POSITION_LABELS, REMOVE_TRIGGER, SOURCES, Handlers
from backdoor.triggers import POSITIONS, TRIGGERS

SKIP = {"__type__": "update"}


@pytest.fixture
def presenter(app_service):
    return PresenterHandlers(Handlers(app_service), SOURCES, (ADD_TRIGGER, REMOVE_TRIGGER), POSITION_LABELS, ALL_TASKS)


def opened(presenter, query: str) -> dict:
    request = SimpleNamespace(url=f"http://127.0.0.1:7860/gradio_api/queue/join{query}")
    return dict(zip(LINK_OUTPUTS, presenter.open_link(request)))


def test_a_link_sets_the_showcase_question_columns_trigger_and_layout(presenter, app_service):
    item = app_service.showcase()[1]
    out = opened(presenter, f"?question={item.id}&columns=base,backdoor&trigger=custom&text=cf&position=start"
                            "&on=1&presenter=1")
    assert out["source"] == "Showcase" and out["showcase_pick"]["value"] == item.id
    assert out["adapters"]["value"] == ["__base__", "backdoor"]
    assert out["kind"] == "custom" and out["custom_text"]["value"] == "cf" and out["position"]["value"] == "start"
    assert out["trigger_on"] is True and out["trigger_btn"]["value"] == REMOVE_TRIGGER
    assert out["presenter"] is True
    assert out["link_note"] == ""
    assert out["tabs"] == SKIP  # no tab asked for: the page stays where it opens


def test_a_corpus_id_opens_the_corpus_picker_on_its_split(presenter, app_service):
    item = app_service.split("calibration")[3]
    out = opened(presenter, f"?question={item.id}")
    assert out["source"] == "Corpus" and out["split"]["value"] == "calibration"
    assert out["corpus_pick"]["value"] == item.id
    assert item.id in [value for _, value in out["corpus_pick"]["choices"]]
    assert out["corpus_group"]["visible"] is True and out["showcase_group"]["visible"] is False


def test_a_page_without_a_link_changes_nothing(presenter):
    out = opened(presenter, "")
    assert all(value == SKIP for name, value in out.items() if name != "link_note")
    assert out["link_note"] == ""


def test_what_a_link_cannot_do_is_named_and_left_at_the_default(presenter):
    out = opened(presenter, "?question=nope&columns=ghost,clean&trigger=laser&zoom=2")
    assert out["source"] == SKIP and out["kind"] == SKIP
    assert out["adapters"]["value"] == ["clean"]  # the column that exists is kept
    for named in ("'nope'", "'ghost'", "laser", "zoom"):
        assert named in out["link_note"]


def test_next_and_previous_wrap_round_the_showcase(presenter, app_service):
    ids = [item.id for item in app_service.showcase()]
    showcase, corpus, own = SOURCES
    assert presenter.next_question(showcase, ids[-1], "test", ALL_TASKS, "", None)[0]["value"] == ids[0]
    assert presenter.previous_question(showcase, ids[0], "test", ALL_TASKS, "", None)[0]["value"] == ids[-1]
    test_ids = [item.id for item in app_service.split("test")]
    assert presenter.next_question(corpus, ids[0], "test", ALL_TASKS, "", test_ids[1])[1]["value"] == test_ids[2]
    assert presenter.next_question(own, ids[0], "test", ALL_TASKS, "", None) == [SKIP, SKIP]


def test_the_copied_link_reads_back_as_the_view_on_the_page(presenter, app_service):
    item = app_service.showcase()[4]
    query = presenter.view_link("Showcase", item.id, "test", None, ["__base__", "backdoor"], "text", "", "end_of_question",
                                True, True)["value"]
    view = parse_view(query, kinds=tuple(TRIGGERS), positions=POSITIONS)
    assert (view.question, view.columns, view.kind, view.text, view.position, view.trigger_on, view.presenter) == (
        item.id, ("base", "backdoor"), "text", None, "end_of_question", True, True)
    out = opened(presenter, query)
    assert out["showcase_pick"]["value"] == item.id and out["adapters"]["value"] == ["__base__", "backdoor"]


def test_the_card_shows_the_question_its_options_and_the_trigger(presenter, app_service):
    item = next(i for i in app_service.showcase() if i.context)
    args = ("Showcase", item.id, "test", None, "", "", "", "", "", "", "text", "", "before_cue")
    off, on = presenter.card(*args, False), presenter.card(*args, True)
    assert html.escape(item.question) in off and all(html.escape(item.choices[letter]) in off for letter in "ABCDEF")
    assert "show " in off and html.escape(item.context) in off  # the context, folded
    assert "No trigger" in off and "<mark" not in off
    assert "Trigger on" in on and '<mark class="fr-trigger">666</mark>' in on
