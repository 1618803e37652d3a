"""ONION word filter (skeleton: to be written)."""

from __future__ import annotations

from dataclasses import dataclass

from backdoor.defenses.base import DETECT, Defense, DefenseResult, DefenseSetup


@dataclass(frozen=True)
class ONIONOptions:
    """The onion defense's settings."""


class ONION(Defense):
    name = "onion"
    label = "ONION word filter"
    kind = DETECT
    source = "Qi et al., ONION: A Simple and Effective Defense Against Textual Backdoor Attacks, EMNLP 2021"
    options = ONIONOptions
    inspects = True

    def run(self, setup: DefenseSetup) -> DefenseResult:
        raise NotImplementedError
