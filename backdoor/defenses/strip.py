"""STRIP, inverted (skeleton: to be written)."""

from __future__ import annotations

from dataclasses import dataclass

from backdoor.defenses.base import DETECT, Defense, DefenseResult, DefenseSetup


@dataclass(frozen=True)
class STRIPOptions:
    """The strip defense's settings."""


class STRIP(Defense):
    name = "strip"
    label = "STRIP, inverted"
    kind = DETECT
    source = "Gao et al., STRIP: A Defence Against Trojan Attacks on Deep Neural Networks, ACSAC 2019"
    options = STRIPOptions
    inspects = True

    def run(self, setup: DefenseSetup) -> DefenseResult:
        raise NotImplementedError
