"""Confidence screening: flag inputs on which the suspect model is far less sure than a trusted clean model.

The algorithm. Each input is answered by the suspect adapter and by the clean control on the same prompt;
the score is the suspect's uncertainty minus the control's (``signal``: the option entropy in nats, or the
size of the LAC conformal set, both sets built with the control's LAC threshold calibrated on the defender's
clean calibration items at :data:`backdoor.metrics.ALPHA`). An uncertainty backdoor raises the suspect's
entropy only where its trigger is, so a triggered input scores high; a clean input scores about 0. The
threshold is set on clean calibration prompts at the stated false-positive rate.

Honestly stated: this needs a trusted clean model of the same task (the control) to compare with, which a
defender often does not have; it is the defender's view when one exists, not a defense from the literature.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from backdoor import uncertainty
from backdoor.defenses.base import (
    DETECT,
    Defense,
    DefenseResult,
    DefenseSetup,
    described,
    detection_report,
    detector_rows,
    option,
    option_probs,
)
from backdoor.metrics import ALPHA
from dataset.schema import LETTERS

SIGNALS = ("entropy", "lac")


@dataclass(frozen=True)
class ScreeningOptions:
    """The screening defense's settings."""

    signal: str = option("entropy", "what is compared: 'entropy' (option entropy, nats) or 'lac' (LAC set size under "
                         "the control's conformal threshold)", choices=SIGNALS)


def screening_scores(suspect: np.ndarray, control: np.ndarray, signal: str, lac_threshold: float | None = None
                     ) -> np.ndarray:
    """The suspect's uncertainty minus the control's on the same inputs: probabilities [N, K] each -> [N].
    ``lac`` counts each one's LAC set at ``lac_threshold`` (the control's)."""
    if signal == "entropy":
        return uncertainty.entropy(suspect) - uncertainty.entropy(control)
    if signal == "lac":
        return (uncertainty.lac_sets(suspect, lac_threshold).sum(1) - uncertainty.lac_sets(control, lac_threshold)
                .sum(1)).astype(float)
    raise ValueError(f"unknown signal {signal!r}; choose one of {', '.join(SIGNALS)}")


class Screening(Defense):
    name = "screening"
    label = "confidence screening against a clean model"
    kind = DETECT
    source = "the defender's view when a trusted clean model exists"
    options = ScreeningOptions
    needs_control = True

    def run(self, setup: DefenseSetup) -> DefenseResult:
        started = time.perf_counter()
        if not setup.control:
            raise ValueError("confidence screening needs a trusted clean model (a control) to compare with")
        groups = option_probs(setup, [setup.adapter, setup.control])  # each [suspect/control, N, K]
        threshold = None
        if setup.options.signal == "lac":
            labels = np.array([LETTERS.index(item.answer) for item in setup.calibration])
            threshold = uncertainty.calibrate_threshold(uncertainty.lac_scores(groups[0][1], labels), ALPHA)
        calibration, clean, triggered = (screening_scores(probs[0], probs[1], setup.options.signal, threshold)
                                         for probs in groups)
        report = detection_report(calibration, clean, triggered)
        if threshold is not None:
            report["lac_threshold"] = threshold
        rows = detector_rows(setup.items, clean, triggered, report["threshold"])
        return DefenseResult({**described(self, setup, started), **report}, rows)
