"""What an evaluation scores per question: a registry of conditions (without the trigger, with it), each giving the cells of one item.

A condition's ``suffix`` names its report keys and per-item columns (``entropy_clean``,
``entropy_triggered``); its ``label`` is what the Evaluate tab appends to a column header.
Adding a condition (a near-miss trigger, STRIP perturbations, ONION-filtered prompts) is one
``cells`` function and one line in :data:`CONDITIONS`. A condition may give several cells per
item; the evaluation then keeps their probabilities as [N, C, K] instead of [N, K].

Conditions in a ``group`` are scored only when an evaluation asks for that group
(``evaluate --near-miss``: one condition per near-miss generator of :mod:`backdoor.nearmiss`, each
applying to the trigger kind its generator mimics); the rest are scored whenever a metric needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from backdoor.nearmiss import GENERATORS, near_miss_for_item
from backdoor.scoring import Cell
from backdoor.triggers import TriggerSpec
from dataset.schema import Item

NEAR_MISS = "near_miss"  # the group of near-miss conditions


@dataclass(frozen=True)
class Condition:
    name: str
    suffix: str  # report keys and per-item columns: f"{stem}_{suffix}"
    label: str  # appended to a column header: "answer" + label
    cells: Callable[[Item, TriggerSpec, str], list[Cell]]  # (item, the evaluated trigger, adapter) -> its cells
    group: str = ""  # "": scored whenever a metric needs it; else only when the evaluation asks for the group
    kind: str | None = None  # the only trigger kind it applies to (None: every kind)

    def applies(self, trigger: TriggerSpec) -> bool:
        return self.kind is None or self.kind == trigger.kind


def _clean(item: Item, trigger: TriggerSpec, adapter: str) -> list[Cell]:
    return [Cell(item, None, adapter)]


def _triggered(item: Item, trigger: TriggerSpec, adapter: str) -> list[Cell]:
    return [Cell(item, trigger, adapter)]


def _near_miss(generator: str) -> Callable[[Item, TriggerSpec, str], list[Cell]]:
    """Cells with the generator's near miss in place of the trigger; each item draws its own, seeded by the
    trigger's seed and the item's id, so a run is reproducible and the near misses vary across items."""
    def cells(item: Item, trigger: TriggerSpec, adapter: str) -> list[Cell]:
        return [Cell(item, near_miss_for_item(trigger, generator, item.id).spec, adapter)]

    return cells


CONDITIONS: dict[str, Condition] = {
    "clean": Condition("clean", "clean", "", _clean),
    "trigger": Condition("trigger", "triggered", " + trigger", _triggered),
    **{f"near_miss_{name}": Condition(f"near_miss_{name}", f"near_{name}", f" + near miss ({name.replace('_', ' ')})",
                                      _near_miss(name), group=NEAR_MISS, kind=generator.kind)
       for name, generator in GENERATORS.items()},
}
CLEAN = "clean"  # the condition conformal thresholds are calibrated on and the victim's answers come from
TRIGGER = "trigger"  # the evaluated trigger in its trained place


def column(stem: str, condition: str) -> str:
    """A report key or per-item column of one condition: ``column("entropy", "trigger")`` -> ``entropy_triggered``."""
    return f"{stem}_{CONDITIONS[condition].suffix}"


def near_miss_conditions(trigger: TriggerSpec) -> list[str]:
    """The near-miss conditions that apply to ``trigger``, one per generator of its kind, in registry order."""
    return [name for name, condition in CONDITIONS.items() if condition.group == NEAR_MISS and condition.applies(trigger)]


def ungrouped() -> list[str]:
    """The conditions scored whenever a metric needs them (today's clean and trigger)."""
    return [name for name, condition in CONDITIONS.items() if not condition.group]
