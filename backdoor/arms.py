"""What a column of the attack demo, a row of an evaluation or a side of a comparison is: an arm.

An arm is everything the scoring core needs to put one model's answer on a prompt, and nothing
about how that model was made: a name, the PEFT adapter its rows run through (``route``; the
base model's is ``__base__``), text put before every prompt (poisoned demonstrations), virtual
tokens put before the prompt's embeddings (a soft prompt), and, for display, the trigger it was
trained with. The methods in :mod:`backdoor.methods` make arms from folders; the
:class:`~backdoor.scoring.Scorer` reads only ``prefix``, ``route``, ``soft_prompt`` and
``adapter_path`` and never asks which method made an arm.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from backdoor.models import BASE_ADAPTER
from backdoor.triggers import TriggerSpec

BASE_METHOD = "base"  # the method name of the base model's own arm (no weights, no prefix)


@dataclass(frozen=True, eq=False)
class SoftPrompt:
    """Virtual token embeddings [P, H] put before a prompt's token embeddings, as PEFT's prompt tuning does.
    ``key`` names the content (equal keys, equal vectors): caches and prefix sharing key on it."""

    vectors: torch.Tensor
    key: str

    @classmethod
    def of(cls, vectors: torch.Tensor) -> "SoftPrompt":
        data = vectors.detach().float().cpu().contiguous()
        digest = hashlib.sha256(data.numpy().tobytes() + str(tuple(data.shape)).encode()).hexdigest()[:16]
        return cls(vectors.detach(), digest)

    @property
    def length(self) -> int:
        return int(self.vectors.shape[0])

    def __eq__(self, other: object) -> bool:  # by content, so that an arm loaded twice equals itself
        return isinstance(other, SoftPrompt) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class Arm:
    """One thing to score prompts with (see the module docstring). ``role`` is clean, backdoor, base or unknown."""

    name: str
    method: str = BASE_METHOD
    route: str = BASE_ADAPTER
    prefix: str = ""
    soft_prompt: SoftPrompt | None = None
    trigger: TriggerSpec | None = None
    role: str = "base"
    adapter_path: str | None = None  # PEFT weights to attach under ``route`` before the arm is first scored
    folder: str | None = None  # where the arm was loaded from (None: the base model, or made in memory)

    @property
    def soft_key(self) -> str:
        """The soft prompt's content key ('' without one): part of every cache key."""
        return self.soft_prompt.key if self.soft_prompt is not None else ""


def base_arm(name: str = BASE_ADAPTER) -> Arm:
    """The base model itself: no adapter, no prefix, no soft prompt."""
    return Arm(name=name)

