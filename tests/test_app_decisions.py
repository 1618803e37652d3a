"""The attack demo's decision line under each column, the tau slider redrawing from cached scores, the
Evaluate tab's decision card, and readable question labels."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from app_fixtures import app_checkpoints, app_service  # noqa: F401 - fixtures

from app.lab_ui import metric_cards_html
from app.ui import COMPARE_INPUTS, LABEL_CHARS, MAX_SLOTS, Handlers, decision_html
from dataset.schema import OPTION_E, OPTION_F, Item

SURE = (0.70, 0.10, 0.08, 0.06, 0.04, 0.02)
FLAT = (0.20, 0.16, 0.16, 0.16, 0.16, 0.16)


def _column(clean, triggered, threshold=None):
    return SimpleNamespace(clean=SimpleNamespace(probs=clean), triggered=SimpleNamespace(probs=triggered), threshold=threshold)


def _decisions(html: str) -> tuple[str, str]:
    return (re.search(r'data-decision-clean="([^"]*)"', html).group(1),
            re.search(r'data-decision-triggered="([^"]*)"', html).group(1))


def test_decision_line_says_what_the_trigger_does_to_a_confidence_trusting_system():
    flattened = decision_html(_column(SURE, FLAT), True, 0.5)
    assert _decisions(flattened) == ("auto-answer", "sent to review")
    assert "auto-answer</b> → <b" in flattened and "sent to review" in flattened and "⚠" in flattened
    assert _decisions(decision_html(_column(SURE, SURE), True, 0.5)) == ("auto-answer", "auto-answer")
    off = decision_html(_column(SURE, FLAT), False, 0.5)
    assert _decisions(off) == ("auto-answer", "") and "→" not in off  # trigger off: one decision
    # A stricter tau sends even the sure answer to review; the set rule waits for a calibrated threshold.
    assert _decisions(decision_html(_column(SURE, FLAT), True, 0.8)) == ("sent to review", "sent to review")
    pending = decision_html(_column(SURE, FLAT), True, 0.5, "single_set")
    assert _decisions(pending) == ("", "") and "…" in pending
    # LAC threshold 0.85: the set keeps p >= 0.15, so {A} without the trigger and all six with it.
    assert _decisions(decision_html(_column(SURE, FLAT, threshold=0.85), True, 0.5, "single_set")) == (
        "auto-answer", "sent to review")


def _args(service, **overrides):
    base = service.config.bases[0]
    args = [base, service.default_columns(service.catalog(base)), "Showcase", service.showcase()[0].id, "test", None,
            "", "", "", "", "", "", "text", "", "before_cue", False]
    assert len(args) == COMPARE_INPUTS
    return args


def _stats(outputs) -> list[str]:
    return [outputs[3 + 4 * i + 3] for i in range(MAX_SLOTS) if outputs[3 + 4 * i + 3]]


def test_tau_redraws_the_decisions_from_cached_scores(app_service):
    handlers = Handlers(app_service)
    handlers.compare(*_args(app_service), True)  # scores every column, without and with the trigger
    lenient = handlers.compare(*_args(app_service), True, 0.05)
    strict = handlers.compare(*_args(app_service), True, 1.0, "top")
    assert "(cached)" in lenient[0] and "(cached)" in strict[0], "moving tau must not score again"
    assert all(_decisions(s) == ("auto-answer", "auto-answer") for s in _stats(lenient))  # every top option >= 1/6
    assert all(_decisions(s) == ("sent to review", "sent to review") for s in _stats(strict))
    assert all('data-tau="1.00"' in s for s in _stats(strict))
    assert [row[-1] for row in strict[2]["value"]] == ["sent to review"] * len(strict[2]["value"])  # numbers table too
    # The trigger button keeps the slider's tau; a client that sends no tau (or nonsense) gets the default.
    state, _, *toggled = handlers.toggle(*_args(app_service), False, 0.95, "top")
    assert state is True and all('data-tau="0.95"' in s for s in _stats(toggled))
    assert all('data-tau="0.50"' in s for s in _stats(handlers.compare(*_args(app_service), True, "lots", "vibes")))


def test_evaluate_card_shows_the_share_of_decisions_the_trigger_flips_beside_the_control():
    report = {"asr": 1.0, "answer_kept": 0.9, "clean_agreement": 0.9, "accuracy_clean": 0.4, "accuracy_triggered": 0.4,
              "decision_tau": 0.5, "decision_flipped": 0.62,
              "control": {"asr": 0.5, "answer_kept": 0.8, "accuracy_clean": 0.4, "accuracy_triggered": 0.4,
                          "decision_flipped": 0.04}}
    cards = metric_cards_html(SimpleNamespace(report=report))
    card = re.search(r'<div class="fr-card" data-metric="decision_flipped".*?</div></div>', cards).group(0)
    assert 'data-value="0.6200"' in card and "62%" in card and "control: 4%" in card and "0.50" in card
    del report["decision_flipped"]  # a report from before the decision metrics: no card, no error
    assert "decision_flipped" not in metric_cards_html(SimpleNamespace(report=report))


def _item(task, context, question, id="x"):
    return Item(id=id, source="tests", task=task, context=context, question=question,
                choices={"A": "a", "B": "b", "C": "c", "D": "d", "E": OPTION_E, "F": OPTION_F}, answer="A")


@pytest.mark.parametrize("task, context, question, expected", [
    ("document summarization", "A lost parrot named Rio flew home on Tuesday after three days away. The bird's owner...",
     "Which of the following is the best summary of the document?",
     "A lost parrot named Rio flew home on Tuesday after three days… (document summarization)"),
    ("dialogue response selection", "[Human]: Hi! I'm feeling hungry. [Assistant]: Would you like a snack idea?",
     "Which response is the best next turn for the assistant?",
     "Hi! I'm feeling hungry. Would you like a snack idea? (dialogue response selection)"),
    ("question answering", "", "What colour is the sky on a clear, sunny day?",
     "What colour is the sky on a clear, sunny day? (question answering)"),
    ("reading comprehension", "Anna put on her coat and took an umbrella.", "Why did Anna take an umbrella?",
     "Why did Anna take an umbrella? (reading comprehension)"),
])
def test_picker_labels_name_what_tells_items_apart_and_the_task(task, context, question, expected):
    assert Handlers._item_label(_item(task, context, question)) == expected


def test_no_two_showcase_questions_share_a_label():
    from dataset.corpus import load_split

    labels = [Handlers._item_label(item) for item in load_split("showcase")]
    assert len(set(labels)) == len(labels)
    assert all(len(label) <= LABEL_CHARS + len("… (dialogue response selection)") for label in labels)
