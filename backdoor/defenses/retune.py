"""clean re-tuning (skeleton: to be written)."""

from __future__ import annotations

from dataclasses import dataclass

from backdoor.defenses.base import REMOVE, Defense, DefenseResult, DefenseSetup


@dataclass(frozen=True)
class RetuneOptions:
    """The retune defense's settings."""


class Retune(Defense):
    name = "retune"
    label = "clean re-tuning"
    kind = REMOVE
    source = "fine-tuning on clean data, as in Liu et al., Fine-Pruning, RAID 2018"
    options = RetuneOptions
    trains = True

    def run(self, setup: DefenseSetup) -> DefenseResult:
        raise NotImplementedError
