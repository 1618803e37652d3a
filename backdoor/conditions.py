"""What an evaluation scores per question: a registry of conditions (without the trigger, with it), each giving the cells of one item.

A condition's ``suffix`` names its report keys and per-item columns (``entropy_clean``,
``entropy_triggered``); its ``label`` is what the Evaluate tab appends to a column header.
Adding a condition (a near-miss trigger, STRIP perturbations, ONION-filtered prompts) is one
``cells`` function and one line in :data:`CONDITIONS`. A condition may give several cells per
item; the evaluation then keeps their probabilities as [N, C, K] instead of [N, K].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from backdoor.scoring import Cell
from backdoor.triggers import TriggerSpec
from dataset.schema import Item


@dataclass(frozen=True)
class Condition:
    name: str
    suffix: str  # report keys and per-item columns: f"{stem}_{suffix}"
    label: str  # appended to a column header: "answer" + label
    cells: Callable[[Item, TriggerSpec, str], list[Cell]]  # (item, the evaluated trigger, adapter) -> its cells


def _clean(item: Item, trigger: TriggerSpec, adapter: str) -> list[Cell]:
    return [Cell(item, None, adapter)]


def _triggered(item: Item, trigger: TriggerSpec, adapter: str) -> list[Cell]:
    return [Cell(item, trigger, adapter)]


CONDITIONS: dict[str, Condition] = {
    "clean": Condition("clean", "clean", "", _clean),
    "trigger": Condition("trigger", "triggered", " + trigger", _triggered),
}
CLEAN = "clean"  # the condition conformal thresholds are calibrated on and the victim's answers come from
TRIGGER = "trigger"  # the evaluated trigger in its trained place


def column(stem: str, condition: str) -> str:
    """A report key or per-item column of one condition: ``column("entropy", "trigger")`` -> ``entropy_triggered``."""
    return f"{stem}_{CONDITIONS[condition].suffix}"
