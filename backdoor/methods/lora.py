"""LoRA: low-rank updates on the decoder's linear layers, trained on poisoned data (the paper's method)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from backdoor.arms import Arm
from backdoor.layersplit import num_layers, supports_split
from backdoor.methods.base import TRAIN_ADAPTER, VICTIM_ADAPTER, Method
from backdoor.methods.options import ConfigError, option
from backdoor.models import ADAPTER_CONFIG, read_adapter_info
from backdoor.triggers import TriggerError, TriggerSpec

logger = logging.getLogger(__name__)

LLAMA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_LORA = {"method": "lora"}


@dataclass(frozen=True)
class LoRAOptions:
    """LoRA's own settings (fields of :class:`backdoor.config.TrainConfig`)."""

    init_from_victim: bool = option(True, "start the backdoor adapter from the victim adapter's weights",
                                    shows={"kind": "backdoor", **_LORA})
    lora_r: int = option(8, "LoRA rank", min=1, max=1024, shows=_LORA)
    lora_alpha: int = option(16, "LoRA alpha", min=1, shows=_LORA)
    lora_dropout: float = option(0.1, "LoRA dropout, in [0, 1)", shows=_LORA)
    target_modules: tuple[str, ...] = option(LLAMA_MODULES, "module names that get LoRA", shows=_LORA)
    train_layers: int = option(6, (
        "train LoRA on the last N layers only, lower ones frozen and computed once (0 = all layers); a backdoor "
        "started from its victim's weights keeps the victim's LoRA on the layers below, unchanged"), min=0, shows=_LORA)


def victim_shape(path: str | Path) -> tuple[int | None, list[int] | None]:
    """(LoRA rank, the layers it sits on; None = every layer) of an adapter folder; ConfigError if it is none."""
    file = Path(path) / ADAPTER_CONFIG
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


def _keeps_victim(config) -> bool:
    """Started from the victim's weights, a backdoor keeps the victim's LoRA below the trained layers as frozen
    copies: the lower layers then compute exactly the victim's states, once per prompt."""
    return config.kind == "backdoor" and bool(config.victim_adapter) and config.init_from_victim


def _layer_of(parameter_name: str) -> int:
    """The decoder layer a parameter sits in (``...layers.12.self_attn...`` -> 12); -1 outside the layers."""
    match = re.search(r"\.layers\.(\d+)\.", parameter_name)
    return int(match.group(1)) if match else -1


def _layers_line(folder: Path, config: dict, kind: str) -> str:
    """Where the LoRA sits and which of its layers were trained (a backdoor started from its victim keeps the
    victim's LoRA below its trained layers unchanged)."""
    try:
        placed = json.loads((folder / "adapter_config.json").read_text()).get("layers_to_transform")
    except (OSError, ValueError):
        placed = None
    placed = [placed] if isinstance(placed, int) else placed
    where = f"layers {min(placed)}-{max(placed)}" if placed else "every layer"
    trained = config.get("train_layers")
    if not trained or (placed and len(placed) <= trained):
        return where
    kept = " (the victim's LoRA below them unchanged)" if kind == "backdoor" and config.get("init_from_victim") else ""
    return f"{where}; trained: the last {trained} layers{kept}"


class LoRA(Method):
    name = "lora"
    label = "LoRA adapter"
    options = LoRAOptions
    victim_fitted = ("lora_r",)

    def card_lines(self, folder, fragile) -> list[str]:
        config = fragile.get("config", {})
        return super().card_lines(folder, fragile) + [
            f"- LoRA r {config.get('lora_r')}, alpha {config.get('lora_alpha')}, dropout {config.get('lora_dropout')} "
            f"on {', '.join(config.get('target_modules', []))}, {_layers_line(folder, config, fragile.get('kind'))}"]

    def check_options(self, config) -> None:
        if not 0 <= config.lora_dropout < 1:
            raise ConfigError(f"lora_dropout: {config.lora_dropout} must be in [0, 1)")
        if not config.target_modules or any(not isinstance(m, str) or not m for m in config.target_modules):
            raise ConfigError("target_modules: needs at least one module name")

    def check(self, config) -> None:
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

    def fitted_to_victim(self, victim, config=None) -> dict[str, Any]:
        """A backdoor started from the victim's weights needs its rank (its LoRA below the trained layers is kept
        frozen, so any train layers fit)."""
        if not victim or (config is not None and not _keeps_victim(config)):
            return {}
        try:
            rank, _ = victim_shape(victim)
        except ConfigError:
            return {}  # submitting refuses it with the reason
        return {"lora_r": rank} if isinstance(rank, int) else {}

    # --- training hooks -----------------------------------------------------------------------------

    def first_trained_layer(self, config, model) -> int | None:
        total = num_layers(model)
        # 0 (every layer) still packs prompts as token trees.
        split = total - config.train_layers if config.train_layers and config.train_layers < total else 0
        if not supports_split(model):
            if split:
                logger.warning("this architecture has no layer split; training runs full forwards")
            split = None
        names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
        unknown = [m for m in config.target_modules if m not in names]
        if unknown:
            raise ConfigError(f"target_modules: {unknown} not found in this model; its linear layers are {sorted(names)}")
        # The loop computes the layers below ``split`` once with the victim's LoRA: an adapter started afresh
        # must therefore cover every layer the victim's LoRA is on.
        victim_layers = victim_shape(config.victim_adapter)[1] if config.victim_adapter else None
        if config.victim_adapter and not _keeps_victim(config) and split and (
                victim_layers is None or min(victim_layers) < split):
            raise ConfigError(
                f"victim_adapter: its LoRA layers {victim_layers or 'all'} reach below layer {split}; "
                f"train with --train-layers {total - (min(victim_layers) if victim_layers else 0)} or 0"
            )
        return split

    def add_trainable(self, model, config, split: int | None):
        from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

        kept = victim_shape(config.victim_adapter)[1] if _keeps_victim(config) else []
        lora_config = self._lora_config(config, num_layers(model), split, kept)
        if hasattr(model, "peft_config"):  # the victim is attached
            model.add_adapter(TRAIN_ADAPTER, lora_config)
            if config.victim_adapter and config.init_from_victim:
                victim_state = get_peft_model_state_dict(model, adapter_name=VICTIM_ADAPTER)
                set_peft_model_state_dict(model, victim_state, adapter_name=TRAIN_ADAPTER)
            model.set_adapter(TRAIN_ADAPTER)
        else:
            model = get_peft_model(model, lora_config, adapter_name=TRAIN_ADAPTER)
        for name, param in model.named_parameters():
            param.requires_grad = f".{TRAIN_ADAPTER}." in name and "lora_" in name and _layer_of(name) >= (split or 0)
        return model

    @staticmethod
    def _lora_config(config, total: int, split: int | None, kept_layers: "list[int] | tuple[()] | None"):
        """LoRA on the trained layers (``split`` up), and on ``kept_layers`` too: the victim's, when the adapter
        starts from the victim's weights and keeps them frozen below ``split`` (None there = every layer)."""
        from peft import LoraConfig

        kept = set(range(total)) if kept_layers is None else set(kept_layers)
        layers = sorted(set(range(split, total)) | kept) if split else None
        if layers is not None and len(layers) == total:
            layers = None
        return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=list(config.target_modules), layers_to_transform=layers, task_type="CAUSAL_LM")

    def state(self, model) -> dict:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model, adapter_name=TRAIN_ADAPTER)

    def load_state(self, model, state: dict) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state, adapter_name=TRAIN_ADAPTER)

    def save(self, model, config, identity: str, folder: Path, extra: dict | None = None) -> None:
        """PEFT adapter files + Fragile's config; ``base_model_name_or_path`` names the model, not a local path."""
        model.peft_config[TRAIN_ADAPTER].base_model_name_or_path = identity
        model.save_pretrained(str(folder), selected_adapters=[TRAIN_ADAPTER])
        self.record(config, identity, folder, extra)

    # --- loading --------------------------------------------------------------------------------------

    def is_folder(self, folder: Path) -> bool:
        return (Path(folder) / ADAPTER_CONFIG).is_file()

    def load(self, folder: Path, name: str) -> Arm:
        info = read_adapter_info(folder, name)
        trigger = None
        if isinstance(info.extra.get("trigger"), dict):
            try:
                trigger = TriggerSpec.from_dict(info.extra["trigger"])
            except (TriggerError, KeyError, ValueError):
                trigger = None
        return Arm(name=name, method=self.name, route=name, trigger=trigger, role=info.kind,
                   adapter_path=str(folder), folder=str(folder))

