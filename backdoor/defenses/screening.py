"""confidence screening against a clean model (skeleton: to be written)."""

from __future__ import annotations

from dataclasses import dataclass

from backdoor.defenses.base import DETECT, Defense, DefenseResult, DefenseSetup


@dataclass(frozen=True)
class ScreeningOptions:
    """The screening defense's settings."""


class Screening(Defense):
    name = "screening"
    label = "confidence screening against a clean model"
    kind = DETECT
    source = "the defender's view when a trusted clean model exists"
    options = ScreeningOptions
    needs_control = True

    def run(self, setup: DefenseSetup) -> DefenseResult:
        raise NotImplementedError
