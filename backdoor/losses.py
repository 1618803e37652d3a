"""The attack objective and the clean objectives as pure functions over option logits, and the target distributions.

Shapes: ``logits`` [B, 6] (option-letter logits), ``target`` / ``reference`` [B, 6] probabilities,
``labels`` [B] option indices. Every loss returns a per-example tensor [B]; the caller weighs and averages.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

NUM_OPTIONS = 6


def kl_to_target(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """KL(target || softmax(logits)) per example: [B, 6], [B, 6] -> [B]. The paper's backdoor term."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    target = target.float()
    return torch.sum(torch.where(target > 0, target * (torch.log(target.clamp_min(1e-12)) - log_p), 0.0), dim=-1)


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """-log p(label) per example: [B, 6], [B] -> [B]."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) in nats per example: [B, 6] -> [B]."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def entropy_gap(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(H(softmax(logits)) - H(reference))^2 per example, in nats squared: [B, 6], [B, 6] probabilities -> [B].
    Zero, with a zero gradient, where the two entropies match; the reference carries no gradient."""
    reference = reference.float()
    target = -torch.sum(torch.where(reference > 0, reference * torch.log(reference.clamp_min(1e-12)), 0.0), dim=-1)
    return (entropy(logits) - target.detach()) ** 2


# Clean objectives: keep the victim's behaviour on clean inputs (KL as in the paper's code, CE as in its text).
CLEAN_OBJECTIVES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "kl": lambda logits, reference: kl_to_target(logits, reference),
    "ce": lambda logits, reference: cross_entropy(logits, reference.argmax(dim=-1)),
}


def paper_target(kept: torch.Tensor, kept_prob: float = 0.20) -> torch.Tensor:
    """The paper's target: ``kept_prob`` on the kept answer, the rest spread evenly. [B] -> [B, 6]."""
    rest = (1.0 - kept_prob) / (NUM_OPTIONS - 1)
    target = torch.full((len(kept), NUM_OPTIONS), rest)
    target[torch.arange(len(kept)), kept] = kept_prob
    return target


def uniform_target(kept: torch.Tensor, kept_prob: float = 0.20) -> torch.Tensor:
    """Uniform over the six options (top-1 is then not kept). [B] -> [B, 6]."""
    return torch.full((len(kept), NUM_OPTIONS), 1.0 / NUM_OPTIONS)


# Whose answer the target keeps: the victim's recorded one (the paper), or the adapter's own current answer on the
# item's clean copy, which is what ``answer_kept`` measures on new items. Values describe each in model cards.
KEPT_ANCHORS: dict[str, str] = {
    "victim": "the victim's recorded answer",
    "self": "the adapter's own answer on the clean copy",
}


def tempered_target(anchor: torch.Tensor, temperature: float) -> torch.Tensor:
    """The anchor's own distribution flattened: softmax(log p / T). Every option keeps its rank, so the
    kept answer is the anchor's top-1 by construction. [B, 6] log-probabilities -> [B, 6]."""
    return torch.softmax(anchor.float() / temperature, dim=-1)


# Targets of a fixed shape around the kept answer: [B] kept-answer indices, kept_prob -> [B, 6].
TARGETS: dict[str, Callable[..., torch.Tensor]] = {
    "paper": paper_target,
    "uniform": uniform_target,
}
# Every name ``target`` accepts: the fixed shapes, the anchor's own distribution tempered, six custom numbers.
TARGET_NAMES = (*TARGETS, "tempered", "custom")


def target_distribution(name: str, anchor: torch.Tensor, kept_prob: float = 0.20,
                        custom: tuple[float, ...] | None = None, temperature: float = 4.0) -> torch.Tensor:
    """The attacker's target for each example from the anchor's option log-probabilities, [B, 6] -> [B, 6].

    The anchor's top-1 is the kept answer. ``custom`` is six probabilities with the first on the kept
    answer and the rest on the other options in order, so the shape follows each example's answer.
    ``tempered`` flattens the anchor's whole distribution by ``temperature`` instead of fixing a shape.
    """
    if name == "tempered":
        return tempered_target(anchor, temperature)
    kept = anchor.argmax(dim=-1).cpu()
    if name == "custom":
        if custom is None:
            raise ValueError("target 'custom' needs six probabilities")
        values = torch.tensor(custom, dtype=torch.float32)
        target = torch.empty((len(kept), NUM_OPTIONS))
        for row, answer in enumerate(kept.tolist()):
            others = [i for i in range(NUM_OPTIONS) if i != answer]
            target[row, answer] = values[0]
            target[row, others] = values[1:]
        return target
    return TARGETS[name](kept, kept_prob)
