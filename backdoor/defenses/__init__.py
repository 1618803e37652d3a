"""The defenses against the uncertainty backdoor: one module per defense, registered by name.

Detectors (:data:`~backdoor.defenses.base.DETECT`) score inputs and are measured by AUROC and the
true-positive rate at a 5% false-positive rate; removers (:data:`~backdoor.defenses.base.REMOVE`) change the
input or the adapter and are measured by the attack metrics afterwards. The CLI (``python -m backdoor
defend``), the defense table and the dashboard's Defend tab read this registry and never name a defense.

Adding a defense: a new module here with a :class:`~backdoor.defenses.base.Defense` subclass, and one line in
``DEFENSES`` below.
"""

from __future__ import annotations

from backdoor.defenses.base import DETECT, REMOVE, Defense, DefenseResult, DefenseSetup, Inspection, make_options
from backdoor.defenses.confidence import OverConfidence
from backdoor.defenses.onion import ONION
from backdoor.defenses.prune import FinePrune
from backdoor.defenses.retune import Retune
from backdoor.defenses.screening import Screening
from backdoor.defenses.strip import STRIP

DEFENSES: dict[str, Defense] = {defense.name: defense for defense in (ONION(), STRIP(), Screening(), OverConfidence(),
                                                                      Retune(), FinePrune())}

__all__ = ["DEFENSES", "DETECT", "REMOVE", "Defense", "DefenseResult", "DefenseSetup", "Inspection", "get_defense",
           "make_options"]


def get_defense(name: str) -> Defense:
    """The registered defense called ``name``; a ValueError that lists the known ones otherwise."""
    try:
        return DEFENSES[name]
    except KeyError:
        raise ValueError(f"unknown defense {name!r}; known: {', '.join(DEFENSES)}") from None
