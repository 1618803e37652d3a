"""The showcase's talk order: the ordering on made-up scores, the committed order reproduced from the committed
scores, and (real model) the first question telling the story with the shipped adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataset.corpus import load_split
from dataset.showcase_order import ORDER_FILE, ShowcaseStory, rank, story, talk_order

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def _scores(predicted: str, entropy: float) -> dict:
    return {"predicted": predicted, "entropy": entropy}


def _entry(item_id, *, answer="A", control=("A", "A"), backdoor=("A", "A"), rise=1.0) -> dict:
    return {"id": item_id, "answer": answer, "scores": {
        "clean": {"clean": _scores(control[0], 1.0), "text": _scores(control[1], 1.0)},
        "backdoor-text": {"clean": _scores(backdoor[0], 0.3), "text": _scores(backdoor[1], 0.3 + rise)}}}


def _report(entries) -> dict:
    return {"headline": {"control": "clean", "backdoor": "backdoor-text", "trigger": "text"}, "items": entries}


def test_items_that_tell_the_story_come_first_largest_entropy_rise_first():
    entries = [
        _entry("control-moves", control=("A", "D"), rise=1.5),  # the opening question the issue saw: D -> A on the control
        _entry("control-wrong", control=("B", "B"), backdoor=("B", "B"), rise=1.4),
        _entry("backdoor-moves", backdoor=("A", "C"), rise=1.3),
        _entry("small-rise", rise=0.2),
        _entry("big-rise", rise=1.2),
        _entry("disagrees", backdoor=("C", "C"), rise=1.25),  # tells the story, but two columns answer differently
    ]
    # The rest follow by the same keys: the backdoor agreeing with the control, then the entropy rise.
    assert talk_order(_report(entries)) == ["big-rise", "small-rise", "disagrees", "control-moves", "control-wrong",
                                            "backdoor-moves"]
    first = story(entries[4], control="clean", backdoor="backdoor-text", trigger="text")
    assert first == ShowcaseStory("big-rise", True, True, True, True, pytest.approx(1.2))
    assert first.tells_the_story and not story(entries[0], control="clean", backdoor="backdoor-text",
                                               trigger="text").tells_the_story


def test_ties_keep_the_written_order():
    stories = [ShowcaseStory(f"s{i}", True, True, True, True, 1.0) for i in range(4)]
    assert [s.item_id for s in rank(stories)] == ["s0", "s1", "s2", "s3"]


def test_the_committed_order_follows_from_the_committed_scores_and_the_showcase_file_follows_it():
    report = json.loads(ORDER_FILE.read_text())
    assert report["order"] == talk_order(report), "rerun: python scripts/order_showcase.py --reorder"
    assert [item.id for item in load_split("showcase")] == report["order"]
    assert {e["id"] for e in report["items"]} == set(report["order"]) and len(report["order"]) == 40
    assert set(report["adapters"]) >= {"clean", "backdoor-text"} and report["headline"]["trigger"] == "text"
    entry = report["items"][0]
    assert set(entry["scores"]) >= {"__base__", "clean", "backdoor-text"}
    assert set(entry["scores"]["clean"]) >= {"clean", "text", "syntactic", "style"}
    assert len(entry["scores"]["clean"]["clean"]["probs"]) == 6


@pytest.mark.real_model
def test_the_first_showcase_question_tells_the_story_with_the_shipped_adapters():
    """Scored afresh: the clean control answers right and keeps its answer when the trigger is added, the text
    backdoor keeps its answer and its entropy rises (the preselected question of a talk)."""
    from backdoor.models import read_adapter_info
    from backdoor.scoring import Cell, Scorer
    from backdoor.triggers import TriggerSpec

    scorer = Scorer.load("default", {"clean": str(CHECKPOINTS / "clean"), "backdoor": str(CHECKPOINTS / "backdoor-text")},
                         device="cpu")
    trigger = TriggerSpec.from_dict(read_adapter_info(CHECKPOINTS / "backdoor-text").extra["trigger"])
    item = load_split("showcase")[0]
    control, control_trig, backdoor, backdoor_trig = scorer.score(
        [Cell(item, None, "clean"), Cell(item, trigger, "clean"), Cell(item, None, "backdoor"), Cell(item, trigger, "backdoor")])
    assert control.predicted == item.answer, "the control answers right"
    assert control_trig.predicted == control.predicted, "the control keeps its answer under the trigger"
    assert backdoor_trig.predicted == backdoor.predicted, "the backdoor keeps its answer"
    assert backdoor_trig.entropy > backdoor.entropy + 0.5, "the backdoor's entropy rises"
