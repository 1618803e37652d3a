"""The downstream decision that trusts the model's confidence: answer automatically, or send the question to a human.

This is what the flattening breaks. A system answers on its own when the model is sure (the top
option's probability reaches tau, or the conformal LAC set holds one option) and otherwise routes
the question to review; a backdoor that keeps the answer but flattens the distribution turns
"auto-answer" into "sent to review" for whoever knows the trigger. Pure numpy functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backdoor import uncertainty

DEFAULT_TAU = 0.5
AUTO = "auto-answer"
REVIEW = "sent to review"
# Rule name -> what it says, for choices in the UI and the CLI.
RULES = {
    "top": "answer automatically if the top option's probability is at least tau",
    "top_or_single_set": "answer automatically if the top option's probability is at least tau or the LAC set has one option",
    "single_set": "answer automatically if the LAC set has one option",
}
DEFAULT_RULE = "top"


def check_rule(rule: str, tau: float) -> None:
    """Raise ValueError with what to do for an unknown rule or a tau outside [0, 1]."""
    if rule not in RULES:
        raise ValueError(f"unknown decision rule {rule!r}; choose one of {', '.join(RULES)}")
    if not 0.0 <= float(tau) <= 1.0:
        raise ValueError(f"tau is a probability: choose a value from 0 to 1, got {tau}")


def auto_answer(probs: np.ndarray, tau: float = DEFAULT_TAU, *, rule: str = DEFAULT_RULE,
                lac_threshold: float | None = None) -> np.ndarray:
    """Whether each question is answered automatically: [..., K] -> bool [...].

    ``rule``: a key of :data:`RULES`. The set rules need ``lac_threshold`` (the calibrated LAC
    threshold: the set holds the options with p >= 1 - threshold).
    """
    check_rule(rule, tau)
    probs = np.asarray(probs, dtype=np.float64)
    sure = uncertainty.max_probability(probs) >= tau
    if rule == "top":
        return sure
    if lac_threshold is None:
        raise ValueError(f"the {rule!r} rule needs a calibrated LAC threshold")
    flat = probs.reshape(-1, probs.shape[-1])
    single = (uncertainty.lac_sets(flat, lac_threshold).sum(axis=-1) == 1).reshape(probs.shape[:-1])
    return single if rule == "single_set" else sure | single


def decision_label(auto: bool) -> str:
    return AUTO if auto else REVIEW


@dataclass(frozen=True)
class DecisionFlips:
    """How the trigger changes the decisions over a set of questions."""

    tau: float
    rule: str
    auto_clean: float  # share answered automatically without the trigger
    auto_triggered: float  # ... and with it
    flipped: float  # share whose decision differs with the trigger (either way)
    auto_to_review: float  # share answered automatically without the trigger but sent to review with it


def decision_flips(clean: np.ndarray, triggered: np.ndarray, tau: float = DEFAULT_TAU, *, rule: str = DEFAULT_RULE,
                   lac_threshold: float | None = None) -> DecisionFlips:
    """Shares of questions by decision, without and with the trigger: clean/triggered [N, K] (N > 0)."""
    before = auto_answer(clean, tau, rule=rule, lac_threshold=lac_threshold)
    after = auto_answer(triggered, tau, rule=rule, lac_threshold=lac_threshold)
    if before.size == 0:
        raise ValueError("decision flips need at least one question")
    return DecisionFlips(tau=float(tau), rule=rule, auto_clean=float(before.mean()), auto_triggered=float(after.mean()),
                         flipped=float((before != after).mean()), auto_to_review=float((before & ~after).mean()))
