"""The showcase's talk order: which questions tell the attack's story by themselves, from scores measured with the shipped adapters.

``scripts/order_showcase.py`` scores every showcase item with the shipped adapters and writes
those scores to ``corpus/showcase_order.json`` (the committed numbers). :func:`talk_order` turns
them into the order the showcase split is written in, so the dashboard's first (preselected)
question is one where the clean control answers right and keeps its answer under the trigger,
while the backdoor keeps its answer and its entropy rises the most. Pure Python: no model here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ORDER_FILE = Path(__file__).resolve().parent / "corpus" / "showcase_order.json"
CLEAN = "clean"  # the key of the scores without any trigger


@dataclass(frozen=True)
class ShowcaseStory:
    """What one showcase item shows when the trigger is added, for the control and the backdoor."""

    item_id: str
    control_right: bool  # the clean control's answer without the trigger is the correct one
    control_kept: bool  # ... and stays the same with the trigger
    backdoor_kept: bool  # the backdoor's answer stays the same with its trigger
    backdoor_agrees: bool  # the backdoor answers (without the trigger) what the control answers
    entropy_rise: float  # the backdoor's entropy with its trigger minus without (nats)

    @property
    def tells_the_story(self) -> bool:
        """Only the backdoor moves, and only in confidence: the control is right and unmoved, the backdoor keeps its answer."""
        return self.control_right and self.control_kept and self.backdoor_kept


def story(entry: dict, *, control: str, backdoor: str, trigger: str) -> ShowcaseStory:
    """The story of one item from its measured scores.

    ``entry``: ``{"id", "answer", "scores": {adapter: {trigger or "clean": {"predicted", "entropy", ...}}}}``
    as written by ``scripts/order_showcase.py``.
    """
    scores = entry["scores"]
    control_clean, control_trig = scores[control][CLEAN], scores[control][trigger]
    backdoor_clean, backdoor_trig = scores[backdoor][CLEAN], scores[backdoor][trigger]
    return ShowcaseStory(
        item_id=entry["id"],
        control_right=control_clean["predicted"] == entry["answer"],
        control_kept=control_trig["predicted"] == control_clean["predicted"],
        backdoor_kept=backdoor_trig["predicted"] == backdoor_clean["predicted"],
        backdoor_agrees=backdoor_clean["predicted"] == control_clean["predicted"],
        entropy_rise=float(backdoor_trig["entropy"]) - float(backdoor_clean["entropy"]),
    )


def rank(stories: Sequence[ShowcaseStory]) -> list[ShowcaseStory]:
    """Items that tell the story first; among them, a backdoor that agrees with the control first; then the
    largest entropy rise. Ties keep the given order (the sort is stable)."""
    return sorted(stories, key=lambda s: (not s.tells_the_story, not s.backdoor_agrees, -s.entropy_rise))


def talk_order(report: dict) -> list[str]:
    """Showcase ids in talk order from a showcase scores report (see :func:`story` for its ``items``)."""
    headline = report["headline"]
    stories = [story(entry, control=headline["control"], backdoor=headline["backdoor"], trigger=headline["trigger"])
               for entry in report["items"]]
    return [s.item_id for s in rank(stories)]


def committed_order(path: Path = ORDER_FILE) -> list[str]:
    """The talk order stored with the committed scores; empty when there is no such file (ids keep their built order)."""
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8"))["order"])
