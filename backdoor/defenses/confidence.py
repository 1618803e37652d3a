"""Over-confidence: flag inputs on which the suspect model is unusually sure of its answer.

The algorithm (the signal of PSIM, the poisoned-sample identification module of Zhao et al., Defending against
Weight-Poisoning Backdoor Attacks for Parameter-Efficient Fine-Tuning, Findings of NAACL 2024): a backdoor that
forces a target label makes the model extremely confident wherever its trigger is, so an input whose top option
probability is above what clean inputs give is flagged. The score is the suspect's largest option probability;
the threshold is set on clean calibration prompts at the stated false-positive rate. PSIM reads that confidence
off a proxy model it trains on label-reset data; here it is read off the suspect itself, so nothing is trained.

Included because it fails by design against this attack: the uncertainty backdoor makes the model LESS sure
where its trigger is, so the triggered inputs score below the clean ones and the AUROC falls under 0.5 (the
score turned round, 1 - AUROC, is what an uncertainty-aware defender would read; that is the screening and
STRIP-inverted defenses' territory). It is the confidence-based defense the paper's attack steers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from backdoor.defenses.base import (
    DETECT,
    Defense,
    DefenseResult,
    DefenseSetup,
    described,
    detector_arms,
    option_probs,
    with_control_beside,
)


@dataclass(frozen=True)
class ConfidenceOptions:
    """The over-confidence detector has no settings: its score is the top option probability."""


class OverConfidence(Defense):
    name = "psim"
    label = "over-confidence (PSIM's signal)"
    kind = DETECT
    source = ("Zhao et al., Defending against Weight-Poisoning Backdoor Attacks for Parameter-Efficient "
              "Fine-Tuning, Findings of NAACL 2024")
    options = ConfidenceOptions

    def run(self, setup: DefenseSetup) -> DefenseResult:
        started = time.perf_counter()
        top = [probs.max(axis=2) for probs in option_probs(setup, detector_arms(setup))]  # per group: [arms, N]
        report, rows = with_control_beside(setup, *top)
        return DefenseResult({**described(self, setup, started), **report}, rows)
