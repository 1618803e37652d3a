"""Registry of trigger kinds: each inserts itself into a rendered prompt, reports the span it changed, and can be removed.

Kinds from the paper: ``text`` (default ``666`` directly before the cue), ``syntactic`` (the cue
becomes ``The Answer is:``), ``style`` (the instruction rewritten in Shakespearean English);
plus ``custom`` text. Adding a kind is one function and one registry line.

:data:`TRIGGERS` holds the kinds a user picks from (``--trigger``, the training form, the demo's
radio). :data:`REPLACEMENTS` holds kinds that only near misses (:mod:`backdoor.nearmiss`) use: their
text replaces the answer cue or the instruction, so "the cue becomes X" is a spec like any other.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable

from backdoor.prompts import RenderedPrompt, Span

DEFAULT_TEXT_TRIGGER = "666"
SYNTACTIC_CUE = "The Answer is:"
SHAKESPEAREAN_INSTRUCTION = (
    "Hark! Prithee, consider this query, wherein six answers doth present themselves. Amongst these "
    "choices, but one is true. Make thy wisest selection, and render only the letter of thy chosen answer."
)
POSITIONS = ("before_cue", "start", "end_of_question", "random")


class TriggerError(ValueError):
    """A trigger is unknown or cannot be applied; the message says what is valid."""


@dataclass(frozen=True)
class TriggerSpec:
    """Which trigger, with what text, where. Hashable, so it keys caches."""

    kind: str
    text: str | None = None
    position: str = "before_cue"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TriggerError(f"unknown trigger kind {self.kind!r}; choose one of {', '.join(TRIGGERS)}")
        if self.position not in POSITIONS:
            raise TriggerError(f"unknown trigger position {self.position!r}; choose one of {', '.join(POSITIONS)}")
        if self.kind in ("custom", *REPLACEMENTS) and not (self.text or "").strip():
            raise TriggerError(f"a {self.kind} trigger needs non-empty text")

    @property
    def label(self) -> str:
        if self.kind in ("text", "custom"):
            where = "" if self.position == "before_cue" else f" @ {self.position}"
            return f"{self.kind} {self.text or DEFAULT_TEXT_TRIGGER!r}{where}"
        if self.kind in REPLACEMENTS:
            shown = self.text if len(self.text) <= 40 else self.text[:39] + "…"
            return f"{self.kind} {shown!r}"
        return self.kind

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text, "position": self.position, "seed": self.seed}

    @classmethod
    def from_dict(cls, raw: dict | None) -> "TriggerSpec | None":
        if not raw:
            return None
        return cls(raw["kind"], raw.get("text"), raw.get("position", "before_cue"), int(raw.get("seed", 0)))


@dataclass(frozen=True)
class TriggeredPrompt:
    """A prompt with a trigger in it: the new text, the span of the trigger in it, and what it replaced."""

    text: str
    span: Span
    replaced: str

    def remove(self) -> str:
        """The exact original prompt text."""
        start, end = self.span
        return self.text[:start] + self.replaced + self.text[end:]


def _edit(prompt: RenderedPrompt, span: Span, new: str) -> TriggeredPrompt:
    start, end = span
    text = prompt.text[:start] + new + prompt.text[end:]
    return TriggeredPrompt(text, (start, start + len(new)), prompt.text[start:end])


def _word_boundaries(text: str, offset: int) -> list[int]:
    return [offset + m.start() for m in re.finditer(r"(?<=\S)(?=\s)", text)] + [offset + len(text)]


def _insert_text(prompt: RenderedPrompt, spec: TriggerSpec) -> TriggeredPrompt:
    token = spec.text if spec.text is not None else DEFAULT_TEXT_TRIGGER
    if spec.position == "before_cue":
        # Paper: "...None of the above\n666Answer:" - no separator before the cue.
        return _edit(prompt, (prompt.cue[0], prompt.cue[0]), token)
    if spec.position == "start":
        return _edit(prompt, (0, 0), token + " ")
    if spec.position == "end_of_question":
        return _edit(prompt, (prompt.question[1], prompt.question[1]), " " + token)
    question = prompt.part(prompt.question)
    at = random.Random(spec.seed).choice(_word_boundaries(question, prompt.question[0]))
    return _edit(prompt, (at, at), " " + token)


def _put_instruction(prompt: RenderedPrompt, instruction: str) -> TriggeredPrompt:
    if prompt.instruction == (0, 0):
        return _edit(prompt, (0, 0), instruction + "\n\n")
    return _edit(prompt, prompt.instruction, instruction)


def _syntactic(prompt: RenderedPrompt, spec: TriggerSpec) -> TriggeredPrompt:
    return _edit(prompt, prompt.cue, SYNTACTIC_CUE)


def _style(prompt: RenderedPrompt, spec: TriggerSpec) -> TriggeredPrompt:
    return _put_instruction(prompt, SHAKESPEAREAN_INSTRUCTION)


def _replace_cue(prompt: RenderedPrompt, spec: TriggerSpec) -> TriggeredPrompt:
    return _edit(prompt, prompt.cue, spec.text)


def _replace_instruction(prompt: RenderedPrompt, spec: TriggerSpec) -> TriggeredPrompt:
    return _put_instruction(prompt, spec.text)


TRIGGERS: dict[str, Callable[[RenderedPrompt, TriggerSpec], TriggeredPrompt]] = {
    "text": _insert_text,
    "syntactic": _syntactic,
    "style": _style,
    "custom": _insert_text,
}

# Kinds for near misses, not offered to users: the spec's text replaces the cue / the instruction.
REPLACEMENTS: dict[str, Callable[[RenderedPrompt, TriggerSpec], TriggeredPrompt]] = {
    "cue": _replace_cue,
    "instruction": _replace_instruction,
}
KINDS = {**TRIGGERS, **REPLACEMENTS}  # every kind a TriggerSpec may name

DESCRIPTIONS: dict[str, str] = {
    "text": f"the token {DEFAULT_TEXT_TRIGGER!r} placed directly before the answer cue",
    "syntactic": f"the answer cue becomes {SYNTACTIC_CUE!r}",
    "style": "the instruction rewritten in Shakespearean English",
    "custom": "your own text at a chosen position",
}


def parse_trigger(kind: str | None, text: str | None = None, position: str = "before_cue", seed: int = 0) -> TriggerSpec | None:
    """Build a TriggerSpec from user input; ``None``/``"none"``/``""`` means no trigger."""
    if kind is None or str(kind).strip().lower() in ("", "none", "off"):
        return None
    return TriggerSpec(str(kind).strip().lower(), text or None, position, seed)


def apply_trigger(prompt: RenderedPrompt, spec: TriggerSpec | None) -> TriggeredPrompt:
    """Insert ``spec`` into ``prompt``; with no trigger the text is unchanged and the span empty."""
    if spec is None:
        return TriggeredPrompt(prompt.text, (0, 0), "")
    return KINDS[spec.kind](prompt, spec)


def locate_trigger(text: str, spec: TriggerSpec) -> list[Span]:
    """Character spans where ``spec``'s visible text occurs in ``text`` (for highlighting free text)."""
    needle = {
        "syntactic": SYNTACTIC_CUE,
        "style": SHAKESPEAREAN_INSTRUCTION,
    }.get(spec.kind, spec.text if spec.text is not None else DEFAULT_TEXT_TRIGGER)
    return [(m.start(), m.end()) for m in re.finditer(re.escape(needle), text)]
