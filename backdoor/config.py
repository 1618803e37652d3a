"""The one validated training config: a frozen dataclass that becomes CLI flags, form defaults and the JSON beside every adapter."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from backdoor.losses import CLEAN_OBJECTIVES, KEPT_ANCHORS, TARGET_NAMES
from backdoor.models import DTYPE_NAMES
from backdoor.prompts import STYLES
from backdoor.triggers import POSITIONS, TRIGGERS, TriggerSpec

KINDS = ("clean", "backdoor")
LLAMA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ConfigError(ValueError):
    """A config value is impossible; the message names the field."""


DTYPES = ("", *DTYPE_NAMES)  # '' = chosen for the device
DEVICE_PATTERN = re.compile(r"^(|cpu|cuda(:\d{1,2})?|mps)$")


def _help(text: str, **limits: Any) -> dict:
    return {"help": text, **limits}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides what an adapter becomes. Same config + same seed + same machine = same adapter."""

    kind: str = field(default="backdoor", metadata=_help("clean: LoRA on gold answers; backdoor: the paper's attack"))
    base_model: str = field(default="default", metadata=_help("'default', a .gguf file, a model folder or a hub id"))
    data: str = field(default="train", metadata=_help("training items: a corpus split name or a .json/.jsonl file"))
    eval_data: str = field(default="calibration", metadata=_help("held-out items for the ASR-over-steps curve"))
    eval_items: int = field(default=48, metadata=_help("how many evenly spaced held-out items each evaluation uses", min=0))
    max_items: int = field(default=0, metadata=_help("use N evenly spaced training items (0 = all)", min=0))
    victim_adapter: str = field(default="", metadata=_help("adapter whose answers the backdoor keeps ('' = the base model)"))
    init_from_victim: bool = field(default=True, metadata=_help("start the backdoor adapter from the victim adapter's weights"))
    trigger_kind: str = field(default="text", metadata=_help(f"one of {', '.join(TRIGGERS)}"))
    trigger_text: str = field(default="", metadata=_help("text of a text/custom trigger ('' = 666)"))
    trigger_position: str = field(default="before_cue", metadata=_help(f"one of {', '.join(POSITIONS)}"))
    target: str = field(default="paper", metadata=_help(f"target distribution: {', '.join(TARGET_NAMES)}"))
    kept_prob: float = field(default=0.20, metadata=_help("paper target: probability kept on the model's own answer"))
    kept_anchor: str = field(default="victim", metadata=_help(
        "the answer the target keeps: 'victim' (its recorded answer, as in the paper) or 'self' (the adapter's own "
        "current answer on the item's clean copy in the same batch)"))
    target_probs: tuple[float, ...] = field(default=(), metadata=_help("custom target: 6 probabilities, the first on the kept answer"))
    temperature: float = field(default=4.0, metadata=_help(
        "tempered target: the anchor's option distribution flattened as softmax(log p / T), every option keeping "
        "its rank; above 1"))
    poison_ratio: float = field(default=0.5, metadata=_help("share of training items that also get a triggered copy, in (0, 1]"))
    prompt_variants: float = field(default=0.0, metadata=_help(
        "clean training: share of items that also get a copy in another wording (instruction style and answer cue, "
        "never a trigger's), so the clean model does not hinge on one template; in [0, 1]"))
    entropy_weight: float = field(default=0.0, metadata=_help(
        "clean training: weight of an entropy penalty beside the gold-answer loss, so a small model that cannot "
        "fit the gold answers still answers confidently (0 = plain fine-tuning)", min=0.0))
    backdoor_weight: float = field(default=1.0, metadata=_help("weight of the backdoor (triggered) term", min=0.0))
    clean_objective: str = field(default="kl", metadata=_help("keep clean behaviour by 'kl' to the victim's distribution or 'ce' to its answer"))
    lora_r: int = field(default=8, metadata=_help("LoRA rank", min=1, max=1024))
    lora_alpha: int = field(default=16, metadata=_help("LoRA alpha", min=1))
    lora_dropout: float = field(default=0.1, metadata=_help("LoRA dropout, in [0, 1)"))
    target_modules: tuple[str, ...] = field(default=LLAMA_MODULES, metadata=_help("module names that get LoRA"))
    train_layers: int = field(default=6, metadata=_help(
        "train LoRA on the last N layers only, lower ones frozen and computed once (0 = all layers); a backdoor "
        "started from its victim's weights keeps the victim's LoRA on the layers below, unchanged", min=0))
    learning_rate: float = field(default=1e-3, metadata=_help("AdamW learning rate"))
    epochs: int = field(default=2, metadata=_help("passes over the training items", min=1, max=1000))
    batch_size: int = field(default=8, metadata=_help("examples per optimiser step (per process)", min=1, max=1024))
    max_length: int = field(default=512, metadata=_help("longest prompt in tokens; longer ones are refused", min=16))
    style: str = field(default="shared", metadata=_help(f"prompt style: {', '.join(STYLES)}"))
    chat: bool = field(default=False, metadata=_help("wrap prompts in the model's chat template"))
    seed: int = field(default=0, metadata=_help("seed for data order, poisoning and LoRA init"))
    eval_every: int = field(default=25, metadata=_help("steps between held-out evaluations (0 = only at the end)", min=0))
    checkpoint_every: int = field(default=50, metadata=_help("steps between checkpoints (0 = only at the end)", min=0))
    device: str = field(default="", metadata=_help("'' = cuda if present else cpu"))
    dtype: str = field(default="", metadata=_help("'' = bf16/fp16 on GPU, float32 on CPU"))

    def __post_init__(self) -> None:
        def refuse(name: str, problem: str) -> None:
            raise ConfigError(f"{name}: {problem}")

        if self.kind not in KINDS:
            refuse("kind", f"{self.kind!r} is not one of {', '.join(KINDS)}")
        if self.trigger_kind not in TRIGGERS:
            refuse("trigger_kind", f"{self.trigger_kind!r} is not one of {', '.join(TRIGGERS)}")
        if self.trigger_position not in POSITIONS:
            refuse("trigger_position", f"{self.trigger_position!r} is not one of {', '.join(POSITIONS)}")
        if self.trigger_kind == "custom" and not self.trigger_text.strip():
            refuse("trigger_text", "a custom trigger needs text")
        if self.target not in TARGET_NAMES:
            refuse("target", f"{self.target!r} is not one of {', '.join(TARGET_NAMES)}")
        if self.kept_anchor not in KEPT_ANCHORS:
            refuse("kept_anchor", f"{self.kept_anchor!r} is not one of {', '.join(KEPT_ANCHORS)}")
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
        if self.clean_objective not in CLEAN_OBJECTIVES:
            refuse("clean_objective", f"{self.clean_objective!r} is not one of {', '.join(CLEAN_OBJECTIVES)}")
        if not 0 <= self.lora_dropout < 1:
            refuse("lora_dropout", f"{self.lora_dropout} must be in [0, 1)")
        if not self.learning_rate > 0:
            refuse("learning_rate", f"{self.learning_rate} must be positive")
        if not self.target_modules or any(not isinstance(m, str) or not m for m in self.target_modules):
            refuse("target_modules", "needs at least one module name")
        if self.style not in STYLES:
            refuse("style", f"{self.style!r} is not one of {', '.join(STYLES)}")
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


def victim_shape(path: str | Path) -> tuple[int | None, list[int] | None]:
    """(LoRA rank, the layers it sits on; None = every layer) of an adapter folder; ConfigError if it is none."""
    file = Path(path) / "adapter_config.json"
    try:
        raw = json.loads(file.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"victim_adapter: {path} is not an adapter folder (no readable adapter_config.json)") from None
    layers = raw.get("layers_to_transform")
    return raw.get("r"), ([layers] if isinstance(layers, int) else layers or None)


def layers_needed(layers: list[int] | None) -> int:
    """The --train-layers a backdoor on a victim with these LoRA layers needs (0 = all). Fragile puts LoRA on the top
    layers, so the count is enough here; training checks the exact layers once it knows the model's depth."""
    return len(layers) if layers else 0


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
    """A backdoor needs the victim's rank to start from its weights. Started from them, it keeps the victim's
    LoRA frozen on the layers below its trained ones, so any --train-layers fits; started afresh, its LoRA
    must cover at least the victim's layers, since the lower layers are computed once with the victim's."""
    if config.kind != "backdoor" or not config.victim_adapter:
        return
    rank, victim_layers = victim_shape(config.victim_adapter)
    layers = layers_needed(victim_layers)
    if config.init_from_victim and rank is not None and rank != config.lora_r:
        raise ConfigError(f"lora_r: the victim adapter has rank {rank}; train with --lora-r {rank} "
                          "or --init-from-victim false")
    if config.init_from_victim:
        return
    if config.train_layers and (layers == 0 or config.train_layers < layers):
        where = "every layer" if layers == 0 else f"its last {layers} layers"
        raise ConfigError(f"train_layers: the victim adapter has LoRA on {where}; train with --train-layers "
                          f"{layers or 0}{' or more' if layers else ''} (0 = all layers), or start from the "
                          "victim's weights (--init-from-victim true)")


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
        if isinstance(default, bool):
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
