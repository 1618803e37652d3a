"""ONION (Qi et al., EMNLP 2021): find the words whose removal most lowers the prompt's perplexity, flag and filter.

The algorithm. The base model is the language model (no extra download). For a prompt p with candidate
words w_1..w_n, the suspicion of w_i is ``ppl(p) - ppl(p without w_i)``, where ``ppl(x) = exp(-mean log
p(t_j | t_<j))`` over every token after the first of the text the base model reads. An out-of-place word
(a rare token glued before the answer cue) raises the perplexity of the whole prompt, so taking it out
lowers it a lot. The **detector** score is the largest suspicion; the **filter** removes every word
whose suspicion is above the threshold and the filtered prompt is what the suspect model then answers.

Candidate words (what a user's input can hold): runs of non-space characters, cut where digits meet
other characters (so a number glued to a word, as in ``666Answer:``, is a word of its own), except the
template's frame: the labels that open a line (``Question:``, ``Choices:``, the context's label, the
option letters ``A.``..``F.``) and the prompt's last word (the answer cue the model answers after), so
the options stay parseable and the question stays answerable. ``scope="prompt"`` takes the instruction
paragraph's words too (a style trigger lives there); ``scope="input"`` only what follows it.

The threshold (detector and filter alike) is the conformal quantile of the largest suspicions of the
defender's clean calibration prompts at :data:`~backdoor.defenses.base.FALSE_POSITIVE_RATE`: the filter
then touches at most that share of clean prompts, and a word it removes is one a clean prompt seldom has.

Speed. The leave-one-word-out texts all share the prompt's tokens up to the removed word. The prompt
runs once, keeping every layer's keys and values; each variant then runs only its own tokens from the
first one that differs, attending to the kept prefix, the variants side by side in a few packed rows
(:meth:`Scorer.leave_one_out_logprobs`). With ``window`` 0 that is exact (:func:`suspicions_per_word`, one
full forward per word, gives the same numbers), but a prompt of T tokens and n words still costs about
n x T / 2 tokens: the tokens after a removed word sit at other positions after other tokens and must run
again. ``window`` w (the default) runs only w of them; the rest read the full prompt's log-probabilities,
so a prompt costs about n x w tokens. benchmarks/bench_defenses.py measures both against the loop and how
far the windowed suspicions are from the exact ones.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from backdoor.conditions import CLEAN
from backdoor.defenses.base import (
    DETECT,
    REMOVAL_METRICS,
    Defense,
    DefenseResult,
    DefenseSetup,
    Inspection,
    described,
    detection_report,
    detector_rows,
    measure,
    option,
    score_prompts,
)
from backdoor.metrics import Scores, compute, select
from backdoor.models import BASE_ADAPTER
from backdoor.prompts import CONTEXT_LABELS
from dataset.schema import LETTERS

Span = tuple[int, int]
# Labels of the prompt template that open a line: never candidates (see the module docstring).
FRAME_LABELS = frozenset({"Question:", "Choices:", *(f"{label}:" for label in CONTEXT_LABELS.values()),
                          *(f"{letter}." for letter in LETTERS)})
SCOPES = ("prompt", "input")
# Tokens after a removed word that run again by default: see ONIONOptions.window and benchmarks/bench_defenses.py
# for what it saves and how far the suspicions then are from the exact ones.
WINDOW = 32
_WORD = re.compile(r"\d+|[^\s\d]+")  # inside a run of non-space characters: digits apart from the rest


@dataclass(frozen=True)
class ONIONOptions:
    """The onion defense's settings."""

    scope: str = option("prompt", "which words may be removed: 'prompt' (every word but the template's labels and "
                        "the answer cue, the instruction's too) or 'input' (only after the instruction paragraph)",
                        choices=SCOPES)
    window: int = option(WINDOW, "tokens after a removed word that run again (the rest read the full prompt's "
                         "log-probabilities; 0 = all of them, exact but quadratic in the prompt's length)", min=0,
                         max=4096)


def candidate_words(prompt_text: str, scope: str = "prompt") -> list[Span]:
    """Character spans of the words ONION may remove from a rendered prompt (see the module docstring)."""
    start = 0
    if scope == "input":
        blank = prompt_text.find("\n\n")
        start = blank + 2 if blank >= 0 else 0
    spans: list[Span] = []
    for run in re.finditer(r"\S+", prompt_text[start:]):
        opens_line = run.start() + start == 0 or prompt_text[run.start() + start - 1] == "\n"
        if opens_line and run.group() in FRAME_LABELS:
            continue
        spans += [(start + run.start() + m.start(), start + run.start() + m.end()) for m in _WORD.finditer(run.group())]
    return spans[:-1]  # the last word is the answer cue


def _cut(text: str, span: Span) -> Span:
    """The characters removing the word at ``span`` takes: the word and one space beside it (the one before
    when there is one, so the next word keeps its leading space as a tokenizer expects)."""
    start, end = span
    if start > 0 and text[start - 1] == " ":
        return start - 1, end
    if end < len(text) and text[end] == " ":
        return start, end + 1
    return span


def without(text: str, spans: list[Span]) -> str:
    """``text`` with the words at ``spans`` (non-overlapping, any order) removed."""
    for start, end in sorted((_cut(text, span) for span in spans), reverse=True):
        text = text[:start] + text[end:]
    return text


def perplexity(logprobs: np.ndarray) -> float:
    """exp(-mean log p) of a text's token log-probabilities [T - 1]."""
    return float(np.exp(-np.mean(logprobs)))


def suspicions(scorer, prompt_text: str, words: list[Span], window: int = 0) -> np.ndarray:
    """Suspicion of each word [n]: the base model's perplexity of the prompt minus that without the word (with
    ``window`` > 0 the tokens after the word past that many read the prompt's own log-probabilities)."""
    if not words:
        return np.zeros(0)
    text, variants = scorer.model_text(prompt_text), [scorer.model_text(without(prompt_text, [w])) for w in words]
    full, each = scorer.leave_one_out_logprobs(text, variants, window)
    return perplexity(full) - np.array([perplexity(lp) for lp in each])


def suspicions_per_word(scorer, prompt_text: str, words: list[Span]) -> np.ndarray:
    """:func:`suspicions` the plain way, one full forward per word: the reference the fast path equals."""
    full = perplexity(scorer.token_logprobs([prompt_text])[0])
    return np.array([full - perplexity(scorer.token_logprobs([without(prompt_text, [w])])[0]) for w in words])


@dataclass(frozen=True)
class Screened:
    """One prompt seen by ONION: its candidate words, their suspicions and the detector score (the largest)."""

    text: str
    words: list[Span]
    suspicion: np.ndarray

    @property
    def score(self) -> float:
        return float(self.suspicion.max()) if len(self.suspicion) else 0.0

    def removed(self, threshold: float) -> list[Span]:
        return [word for word, s in zip(self.words, self.suspicion) if s > threshold]

    def filtered(self, threshold: float) -> str:
        return without(self.text, self.removed(threshold))


# Screened prompts per scorer, by (prompt, scope): the suspicions read only the base model, so the clean prompts
# ONION screens for one suspect adapter serve every other one on the same scorer (a table of several backdoors).
_SCREENED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_SCREENED_LOCK = threading.Lock()
SCREENED_KEPT = 4096


def screen(scorer, prompt_text: str, scope: str = "prompt", window: int = 0) -> Screened:
    """How ONION sees one rendered prompt (kept per scorer: the same prompt is not screened twice)."""
    key = (prompt_text, scope, window)
    with _SCREENED_LOCK:
        kept = _SCREENED.setdefault(scorer, OrderedDict())
        seen = kept.get(key)
    if seen is None:
        words = candidate_words(prompt_text, scope)
        seen = Screened(prompt_text, words, suspicions(scorer, prompt_text, words, window))
    with _SCREENED_LOCK:
        kept[key] = seen
        kept.move_to_end(key)
        while len(kept) > SCREENED_KEPT:
            kept.popitem(last=False)
    return seen


def removal_metrics(scorer, arm: str, clean: list[str], triggered: list[str], labels: np.ndarray,
                    victim: str) -> dict:
    """:data:`REMOVAL_METRICS` of ``arm`` on rendered prompts (clean and triggered copies of the same items), the
    victim's answers read on the same clean prompts: what :func:`~backdoor.defenses.base.measure` reports for
    items, for prompts a filter changed."""
    texts = [scorer.model_text(text) for text in clean + triggered + clean]
    n = len(clean)
    probs = scorer.option_probs(texts, [arm] * 2 * n + [victim] * n)  # [3N, 6]
    scores = Scores({CLEAN: probs[:n], "trigger": probs[n : 2 * n]}, labels, victim=probs[2 * n :])
    return compute(select(REMOVAL_METRICS), scores)


class ONION(Defense):
    name = "onion"
    label = "ONION word filter"
    kind = DETECT
    source = "Qi et al., ONION: A Simple and Effective Defense Against Textual Backdoor Attacks, EMNLP 2021"
    options = ONIONOptions
    inspects = True

    def run(self, setup: DefenseSetup) -> DefenseResult:
        started = time.perf_counter()
        scorer, options = setup.scorer, setup.options
        seen = score_prompts(setup, lambda text: screen(scorer, text, options.scope, options.window))
        scores = [np.array([s.score for s in group]) for group in seen]  # calibration, clean, triggered
        report = detection_report(*scores)
        threshold = report["threshold"]
        if setup.control:  # the score reads only the base model and the prompt: the same with any adapter
            report["on_control"] = detection_report(*scores)
        labels = np.array([LETTERS.index(item.answer) for item in setup.items])
        victim = setup.control or BASE_ADAPTER
        filtered = {arm: removal_metrics(scorer, arm, [s.filtered(threshold) for s in seen[1]],
                                         [s.filtered(threshold) for s in seen[2]], labels, victim)
                    for arm in [setup.adapter] + ([setup.control] if setup.control else [])}
        report["filtered"] = filtered[setup.adapter]
        if setup.control:
            report["filtered"]["control"] = filtered[setup.control]
        report["unfiltered"] = measure(setup, setup.adapter)
        removed = [" | ".join(s.text[a:b] for a, b in s.removed(threshold)) for s in seen[1] + seen[2]]
        rows = detector_rows(setup.items, scores[1], scores[2], threshold, removed=removed)
        return DefenseResult({**described(self, setup, started), **report}, rows)

    def inspect(self, scorer, adapter: str, prompt_text: str, options, threshold: float | None) -> Inspection:
        """The prompt after filtering at ``threshold`` (nothing removed without one), the removed words' spans,
        the largest suspicion and the verdict. ``adapter`` plays no part: the base model is the language model."""
        seen = screen(scorer, prompt_text, options.scope, options.window)
        if threshold is None:
            return Inspection(prompt_text, (), seen.score, None, None)
        return Inspection(seen.filtered(threshold), tuple(seen.removed(threshold)), seen.score, threshold,
                          seen.score > threshold)
