"""STRIP (Gao et al., ACSAC 2019), inverted for a backdoor that raises uncertainty: perturb, and watch the entropy.

STRIP superimposes other inputs on a suspect input and reads the model's output entropy over the copies: a
label-flip trigger survives the perturbation and keeps the prediction fixed, so a triggered input has LOW
entropy where a clean one scatters. This backdoor's trigger makes the answer uncertain instead, so the test
is turned round: where the trigger survives the perturbation, the entropy stays HIGH.

The algorithm. Each prompt gets ``copies`` perturbed copies: in each, a share ``share`` of the words of its
context and question (the lines after ``Context:``/``Dialogue:``/``Document:`` and ``Question:``) is replaced
by words drawn from other items' contexts and questions (the defender's clean calibration items; the bundled
calibration split in the attack demo). A trigger outside the replaced words (before the answer cue, in the
instruction, in the cue itself) survives every copy. The copies are drawn from a random generator seeded by
``seed`` and the prompt's text, so the same prompt always gets the same copies. Score: the suspect model's
mean option entropy over the copies (HIGH = triggered); all copies of a prompt are scored in one batched call.
The threshold is set on clean calibration prompts at the stated false-positive rate.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from backdoor import uncertainty
from backdoor.defenses.base import (
    DETECT,
    Defense,
    DefenseResult,
    DefenseSetup,
    Inspection,
    described,
    detector_arms,
    option,
    score_prompts,
    with_control_beside,
)
from backdoor.prompts import CONTEXT_LABELS
from dataset.schema import Item

# The lines of a rendered prompt whose words a copy replaces: the context (under any of its labels) and the question.
_PERTURBED_LINE = re.compile(r"^(?:%s): (.*)$" % "|".join(map(re.escape, {*CONTEXT_LABELS.values(), "Question"})),
                             re.MULTILINE)


@dataclass(frozen=True)
class STRIPOptions:
    """The strip defense's settings."""

    copies: int = option(16, "perturbed copies of each prompt (all scored in one batched call)", min=2, max=256)
    share: float = option(0.3, "share of the context's and question's words replaced in each copy", min=0.05,
                          max=1.0)
    seed: int = option(0, "seed of the perturbations (with the prompt's text: a prompt always gets the same copies)",
                       min=0)


def perturbed_words(prompt_text: str) -> list[tuple[int, int]]:
    """Character spans of the words a copy may replace: those of the context and question lines."""
    return [(line.start(1) + word.start(), line.start(1) + word.end())
            for line in _PERTURBED_LINE.finditer(prompt_text) for word in re.finditer(r"\S+", line.group(1))]


def donor_words(items: list[Item]) -> list[list[str]]:
    """Per item, the words of its context and question: what perturbed copies draw from."""
    return [f"{item.context} {item.question}".split() for item in items]


@lru_cache(maxsize=1)
def _bundled_donors() -> tuple[tuple[str, ...], ...]:
    from dataset.corpus import load_split

    return tuple(tuple(words) for words in donor_words(load_split("calibration")))


def perturbed_copies(prompt_text: str, donors, copies: int, share: float, seed: int = 0) -> list[str]:
    """``copies`` copies of a rendered prompt, each with ``share`` of its context and question words (at least one)
    replaced by words of other items (``donors``: per item its words; an item whose words are all in this prompt
    is its own and is skipped). Seeded by ``seed`` and the text: the same arguments give the same copies."""
    spans = perturbed_words(prompt_text)
    own = {prompt_text[a:b] for a, b in spans}
    pool = [words for words in donors if words and not set(words) <= own]
    if not spans or not pool:
        return [prompt_text] * copies
    rng = random.Random(f"{seed}:{prompt_text}")
    count = max(1, round(share * len(spans)))
    out = []
    for _ in range(copies):
        chosen = sorted(rng.sample(range(len(spans)), count), reverse=True)
        text = prompt_text
        for index in chosen:  # from the end, so earlier spans keep their places
            start, end = spans[index]
            text = text[:start] + rng.choice(rng.choice(pool)) + text[end:]
        out.append(text)
    return out


def strip_scores(scorer, prompt_text: str, arms: list[str], options: STRIPOptions, donors) -> list[float]:
    """Per arm, the mean option entropy over the prompt's perturbed copies; every copy under every arm is scored
    in one :meth:`Scorer.option_probs` call."""
    texts = [scorer.model_text(copy) for copy in perturbed_copies(prompt_text, donors, options.copies, options.share,
                                                                   options.seed)]
    probs = scorer.option_probs(texts * len(arms), [arm for arm in arms for _ in texts])  # [A * copies, 6]
    return [float(e.mean()) for e in uncertainty.entropy(probs).reshape(len(arms), len(texts))]


class STRIP(Defense):
    name = "strip"
    label = "STRIP, inverted"
    kind = DETECT
    source = "Gao et al., STRIP: A Defence Against Trojan Attacks on Deep Neural Networks, ACSAC 2019"
    options = STRIPOptions
    inspects = True

    def run(self, setup: DefenseSetup) -> DefenseResult:
        started = time.perf_counter()
        scorer = setup.scorer
        arms = detector_arms(setup)
        donors = donor_words(setup.calibration)
        seen = score_prompts(setup, lambda text: strip_scores(scorer, text, arms, setup.options, donors))
        by_arm = [np.array(group).reshape(len(group), len(arms)).T for group in seen]  # per group: [arms, N]
        report, rows = with_control_beside(setup, *by_arm)
        return DefenseResult({**described(self, setup, started), **report}, rows)

    def inspect(self, scorer, adapter: str, prompt_text: str, options, threshold: float | None) -> Inspection:
        """The prompt's score under ``adapter`` and its verdict at ``threshold`` (copies draw from the bundled
        calibration split's words)."""
        score = strip_scores(scorer, prompt_text, [adapter], options, _bundled_donors())[0]
        return Inspection(prompt_text, (), score, threshold, None if threshold is None else score > threshold)
