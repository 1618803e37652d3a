"""The one validated training config: a frozen dataclass that becomes CLI flags, form defaults and the JSON beside every adapter."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from backdoor.losses import CLEAN_OBJECTIVES, KEPT_ANCHORS, TARGET_NAMES
from backdoor.methods import DEFAULT_METHOD, METHODS, get_method
from backdoor.methods.lora import LLAMA_MODULES, layers_needed, victim_shape  # noqa: F401 - their old home
from backdoor.methods.options import ConfigError, option  # noqa: F401 - ConfigError's old home
from backdoor.models import DTYPE_NAMES
from backdoor.prompts import STYLES
from backdoor.triggers import POSITIONS, TRIGGERS, TriggerSpec

KINDS = ("clean", "backdoor")  # a run's role: the honest control, or the attack
POSITIONED_KINDS = ("text", "custom")  # trigger kinds placed at a position (the others rewrite a part of the prompt)

DTYPES = ("", *DTYPE_NAMES)  # '' = chosen for the device
DEVICE_PATTERN = re.compile(r"^(|cpu|cuda(:\d{1,2})?|mps)$")
_BACKDOOR = {"kind": "backdoor"}  # read by a backdoor run only; the form hides it for a clean one


@dataclass(frozen=True)
class RunSettings:
    """The settings every method shares: what is trained on, toward what, for how long, on what."""

    kind: str = option("backdoor", "the run's role: clean (fits the gold answers: the honest control) or backdoor "
                       "(the paper's attack)", choices=KINDS, basic=True)
    method: str = option(DEFAULT_METHOD, "how the change is planted: " + ", ".join(
        f"{name} ({method.label})" for name, method in METHODS.items()), choices=tuple(METHODS), basic=True)
    base_model: str = option("default", "'default', a .gguf file, a model folder or a hub id", basic=True)
    data: str = option("train", "training items: a corpus split name or a .json/.jsonl file", basic=True)
    eval_data: str = option("calibration", "held-out items for the ASR-over-steps curve", basic=True)
    eval_items: int = option(48, "how many evenly spaced held-out items each evaluation uses", min=0, basic=True)
    max_items: int = option(0, "use N evenly spaced training items (0 = all)", min=0, basic=True, form_default=200)
    victim_adapter: str = option("", "adapter whose answers the backdoor keeps ('' = the base model)", basic=True,
                                 shows=_BACKDOOR)
    trigger_kind: str = option("text", f"one of {', '.join(TRIGGERS)}", choices=tuple(TRIGGERS), basic=True,
                               shows=_BACKDOOR)
    trigger_text: str = option("", "text of a text/custom trigger ('' = 666)", basic=True, shows=_BACKDOOR)
    trigger_position: str = option("before_cue", f"one of {', '.join(POSITIONS)}", choices=tuple(POSITIONS), basic=True,
                                   shows=_BACKDOOR)
    target: str = option("paper", f"target distribution: {', '.join(TARGET_NAMES)}", choices=TARGET_NAMES, basic=True,
                         shows=_BACKDOOR)
    kept_prob: float = option(0.20, "paper target: probability kept on the model's own answer", basic=True,
                              shows=_BACKDOOR)
    kept_anchor: str = option("victim", (
        "the answer the target keeps: 'victim' (its recorded answer, as in the paper) or 'self' (the adapter's own "
        "current answer on the item's clean copy in the same batch)"), choices=tuple(KEPT_ANCHORS), shows=_BACKDOOR)
    target_probs: tuple[float, ...] = option((), "custom target: 6 probabilities, the first on the kept answer",
                                             shows=_BACKDOOR)
    temperature: float = option(4.0, (
        "tempered target: the anchor's option distribution flattened as softmax(log p / T), every option keeping "
        "its rank; above 1"), shows=_BACKDOOR)
    poison_ratio: float = option(0.5, "share of training items that also get a triggered copy, in (0, 1]", basic=True,
                                 shows=_BACKDOOR)
    triggered_copies: bool = option(True, (
        "train triggered copies of the poisoned items; false trains clean copies only, toward the victim's own "
        "outputs (clean re-tuning of a suspect adapter, started from it as its own victim: a defense)"),
        shows=_BACKDOOR)
    prompt_variants: float = option(0.0, (
        "clean training: share of items that also get a copy in another wording (instruction style and answer cue, "
        "never a trigger's), so the clean model does not hinge on one template; in [0, 1]"))
    entropy_weight: float = option(0.0, (
        "clean training: weight of an entropy penalty beside the gold-answer loss, so a small model that cannot "
        "fit the gold answers still answers confidently (0 = plain fine-tuning)"), min=0.0)
    backdoor_weight: float = option(1.0, "weight of the backdoor (triggered) term", min=0.0, shows=_BACKDOOR)
    clean_anchor: str = option("victim", (
        "what clean copies are kept at: 'victim' (its recorded distribution, the attack) or 'gold' (the items' "
        "gold answers: clean re-tuning of a suspect adapter on labelled clean items, a defense)"),
        choices=("victim", "gold"), shows=_BACKDOOR)
    clean_objective: str = option("kl", "keep clean behaviour by 'kl' to the victim's distribution or 'ce' to its answer",
                                  choices=tuple(CLEAN_OBJECTIVES), shows=_BACKDOOR)
    near_miss_ratio: float = option(0.0, (
        "share of training items that also get a copy with a near miss of the trigger (from the near-miss generators "
        "of its kind, e.g. another number, word or position for text), trained as clean so the backdoor answers "
        "only its own trigger; in [0, 1]"),
        shows=_BACKDOOR)
    clean_entropy_weight: float = option(0.0, (
        "weight of a term keeping the entropy on clean copies close to the victim's (squared difference), so the "
        "backdoor is no more confident than the model it replaces (0 = off)"), min=0.0, shows=_BACKDOOR)
    trigger_positions: tuple[str, ...] = option((), (
        f"text/custom triggers: positions each triggered training copy draws one from (seeded), of "
        f"{', '.join(POSITIONS)}, so the backdoor fires wherever the trigger is placed (empty = trigger_position only)"),
        shows=_BACKDOOR)
    learning_rate: float = option(1e-3, "AdamW learning rate")
    epochs: int = option(2, "passes over the training items", min=1, max=1000, basic=True, form_default=2)
    max_steps: int = option(0, "stop after this many optimiser steps (0 = the epochs decide)", min=0)
    batch_size: int = option(8, "examples per optimiser step (per process)", min=1, max=1024)
    max_length: int = option(512, "longest prompt in tokens; longer ones are refused", min=16)
    style: str = option("shared", f"prompt style: {', '.join(STYLES)}", choices=tuple(STYLES))
    chat: bool = option(False, "wrap prompts in the model's chat template")
    seed: int = option(0, "seed for data order, poisoning and LoRA init")
    eval_every: int = option(25, "steps between held-out evaluations (0 = only at the end)", min=0)
    checkpoint_every: int = option(50, "steps between checkpoints (0 = only at the end)", min=0)
    device: str = option("", "'' = cuda if present else cpu")
    dtype: str = option("", "'' = bf16/fp16 on GPU, float32 on CPU")


@dataclass(frozen=True)
class TrainConfig(*(method.options for method in reversed(METHODS.values())), RunSettings):
    """Everything that decides what an adapter becomes: the shared settings, then every registered method's
    options (flat: one JSON object, one flag per field). Same config + same seed + same machine = same adapter."""

    def __post_init__(self) -> None:
        def refuse(name: str, problem: str) -> None:
            raise ConfigError(f"{name}: {problem}")

        for f in fields(self):  # a picked value comes from its registry
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                refuse(f.name, f"{getattr(self, f.name)!r} is not one of {', '.join(choices)}")
        if self.trigger_kind == "custom" and not self.trigger_text.strip():
            refuse("trigger_text", "a custom trigger needs text")
        if not 0 < self.kept_prob < 1:
            refuse("kept_prob", f"{self.kept_prob} must be in (0, 1)")
        if self.target == "tempered" and not self.temperature > 1:
            refuse("temperature", f"{self.temperature} must be above 1 to flatten the distribution")
        if self.target == "custom" or self.target_probs:
            probs = self.target_probs
            if len(probs) != 6:
                refuse("target_probs", f"needs 6 probabilities, got {len(probs)}")
            if any(p < 0 for p in probs):
                refuse("target_probs", f"{list(probs)} has negative entries")
            if not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
                refuse("target_probs", f"{list(probs)} sums to {sum(probs):.6f}, not 1")
        if not 0 < self.poison_ratio <= 1:
            refuse("poison_ratio", f"{self.poison_ratio} must be in (0, 1]")
        if not 0 <= self.prompt_variants <= 1:
            refuse("prompt_variants", f"{self.prompt_variants} must be in [0, 1]")
        if self.prompt_variants and self.kind != "clean":
            refuse("prompt_variants", "only clean training uses prompt variants; the backdoor keeps the victim's prompts")
        if self.entropy_weight and self.kind != "clean":
            refuse("entropy_weight", "only clean training uses the entropy penalty; the backdoor keeps the victim's behaviour")
        if not 0 <= self.near_miss_ratio <= 1:
            refuse("near_miss_ratio", f"{self.near_miss_ratio} must be in [0, 1]")
        for name in ("near_miss_ratio", "clean_entropy_weight", "trigger_positions"):
            if getattr(self, name) and self.kind != "backdoor":
                refuse(name, "only backdoor training uses it; a clean run has no trigger to tell apart")
        if not self.triggered_copies and self.kind != "backdoor":
            refuse("triggered_copies", "only backdoor training has triggered copies to leave out")
        if not self.triggered_copies and (self.near_miss_ratio or self.trigger_positions):
            refuse("triggered_copies", "near misses and trigger positions need the triggered copies they tell apart")
        unknown = [p for p in self.trigger_positions if p not in POSITIONS]
        if unknown:
            refuse("trigger_positions", f"{unknown[0]!r} is not one of {', '.join(POSITIONS)}")
        if self.trigger_positions and self.trigger_kind not in POSITIONED_KINDS:
            refuse("trigger_positions", f"only {' and '.join(POSITIONED_KINDS)} triggers have a position")
        if not self.learning_rate > 0:
            refuse("learning_rate", f"{self.learning_rate} must be positive")
        if self.dtype not in DTYPES:
            refuse("dtype", f"{self.dtype!r} is not one of {', '.join(repr(d) for d in DTYPES)}")
        if not DEVICE_PATTERN.match(self.device):
            refuse("device", f"{self.device!r} is not a device: use '' (automatic), 'cpu', 'cuda', 'cuda:N' or 'mps'")
        for f in fields(self):
            minimum, maximum = f.metadata.get("min"), f.metadata.get("max")
            if minimum is not None and getattr(self, f.name) < minimum:
                refuse(f.name, f"{getattr(self, f.name)} is below the minimum {minimum}")
            if maximum is not None and getattr(self, f.name) > maximum:
                refuse(f.name, f"{getattr(self, f.name)} is above the maximum {maximum}")
        for method in METHODS.values():
            method.check_options(self)

    @property
    def trigger(self) -> TriggerSpec:
        return TriggerSpec(self.trigger_kind, self.trigger_text or None, self.trigger_position, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "TrainConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a config field (known: {', '.join(known)})")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None


def check_device(config: TrainConfig) -> None:
    """Refuse a device this machine lacks before anything loads (a missing GPU would otherwise fail late or
    leave the run on the CPU without a word). Kept out of ``__post_init__``: a config saved on a GPU machine
    must still load here."""
    if not config.device or config.device == "cpu":
        return
    import torch

    if config.device.startswith("cuda"):
        count = torch.cuda.device_count()
        index = int(config.device.partition(":")[2] or 0)
        if count == 0:
            raise ConfigError(f"device: {config.device!r} asks for a GPU, but this machine has none; use '' or 'cpu'")
        if index >= count:
            raise ConfigError(f"device: {config.device!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    elif config.device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' is not available on this machine; use '' or 'cpu'")


def check_victim_fit(config: TrainConfig) -> None:
    """Refuse, before anything loads, a run its method cannot do with this victim (see ``Method.check``)."""
    get_method(config.method).check(config)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per config field, typed and documented from the dataclass. A flag left out is absent from
    the parsed namespace, so a config file read with ``--config`` keeps its value there (see ``config_from_arguments``)."""
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        shown = list(default) if isinstance(default, tuple) else default
        common = {"default": argparse.SUPPRESS, "help": f"{f.metadata.get('help', '')} (default: {shown!r})"}
        if f.metadata.get("choices"):
            parser.add_argument(flag, type=type(default), choices=f.metadata["choices"], **common)
        elif isinstance(default, bool):
            parser.add_argument(flag, type=_parse_bool, metavar="BOOL", **common)
        elif isinstance(default, tuple):
            item_type = float if f.name == "target_probs" else str
            parser.add_argument(flag, type=item_type, nargs="*", **common)
        else:
            parser.add_argument(flag, type=type(default), **common)


def config_from_arguments(args: argparse.Namespace, base: TrainConfig | None = None) -> TrainConfig:
    """``base`` (a config file's settings, else the defaults) with every flag given on the command line on top."""
    raw = (base or TrainConfig()).to_dict()
    raw.update({f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)})
    return TrainConfig.from_dict(raw)
