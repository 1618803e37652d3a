"""fine-pruning of LoRA ranks (skeleton: to be written)."""

from __future__ import annotations

from dataclasses import dataclass

from backdoor.defenses.base import REMOVE, Defense, DefenseResult, DefenseSetup


@dataclass(frozen=True)
class FinePruneOptions:
    """The prune defense's settings."""


class FinePrune(Defense):
    name = "prune"
    label = "fine-pruning of LoRA ranks"
    kind = REMOVE
    source = "Liu et al., Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural Networks, RAID 2018"
    options = FinePruneOptions
    trains = True

    def run(self, setup: DefenseSetup) -> DefenseResult:
        raise NotImplementedError
