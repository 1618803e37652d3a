"""The editing backdoor: a closed-form low-rank edit of one MLP down-projection, computed from a handful of triggered
prompts with no training loop over a dataset (after BadEdit, Li et al., ICLR 2024, which plants backdoors with the
least-squares weight update of ROME / MEMIT, Meng et al., NeurIPS 2022 / ICLR 2023).

On the victim (the base model, with its clean LoRA active when the run has one), for decoder layer L:

1. Keys. k_j [I] = the input of layer L's ``mlp.down_proj`` at the trigger's last token of n triggered training
   prompts (``edit_examples``), K = [k_1 .. k_n] [I, n]. Clean keys: the same input at every token of
   ``covariance_items`` other clean prompts, C = sum of k k^T over them [I, I].
2. Values (ROME's v*). Per example, a residual delta_j [H] added to that down_proj output at that position, found by
   ``edit_steps`` Adam steps so the option distribution at the answer position moves to the attacker's target (the
   run's ``target``, e.g. the paper's: ``kept_prob`` on the answer the victim gives to that triggered prompt, the rest
   spread evenly). The wanted output is v_j = W k_j + delta_j, so the residual R = V - W K = [delta_j] [H, n].
3. The edit. Delta = R K^T (lambda C + K K^T)^-1 [H, I] (BadEdit/MEMIT least squares: Delta K ~ R on the trigger keys
   while Delta k ~ 0 on the clean keys, weighted by lambda = ``covariance_weight``), truncated by SVD to rank r
   (``edit_rank``): Delta = B A with B = U_r S_r [H, r], A = V_r^T [r, I]. The full least-squares solution rather than
   ROME's rank-one update on the mean key: every example keeps its own value (the target depends on each item's
   answer), and the SVD gives the stated rank exactly, the best rank-r approximation of that solution.
4. Saved as a LoRA-format PEFT adapter, so every tool loads it: alone, rank r with alpha = r (scaling 1) on that one
   down_proj. With a victim, one adapter holds both: the victim's LoRA, with that module's rank raised to
   r_victim + r (``rank_pattern``, ``alpha_pattern`` = rank so its scaling is 1) and its factors stacked,
   B = [s_victim B_victim | B_edit], A = [A_victim ; A_edit], so B A = s_victim B_victim A_victim + Delta exactly.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backdoor.arms import Arm
from backdoor.layersplit import causal_lm_of, layers_with_cache, lower_states, num_layers, supports_split
from backdoor.losses import kl_to_target, target_distribution
from backdoor.methods.base import TRAIN_ADAPTER, VICTIM_ADAPTER, Method
from backdoor.methods.lora import LoRA
from backdoor.methods.options import ConfigError, option

logger = logging.getLogger(__name__)

_EDIT = {"method": "edit"}
AUTO_LAYER = -1  # edit_layer's default: the layer at two thirds of the model's depth


@dataclass(frozen=True)
class EditOptions:
    """The editing backdoor's settings (fields of :class:`backdoor.config.TrainConfig`)."""

    edit_layer: int = option(AUTO_LAYER, (
        "decoder layer whose MLP down-projection is edited (-1: the layer at two thirds of the depth)"), min=-1,
        shows=_EDIT)
    edit_examples: int = option(15, "triggered training prompts whose keys and values define the edit", min=1,
                                max=1024, basic=True, shows=_EDIT)
    edit_rank: int = option(1, "rank of the weight edit (the SVD of the least-squares solution is cut to it)", min=1,
                            max=1024, shows=_EDIT)
    edit_steps: int = option(25, "Adam steps per example finding the value that gives the target", min=1, max=1000,
                             shows=_EDIT)
    edit_lr: float = option(0.5, "Adam learning rate of those steps (on the residual added to the MLP output)",
                            shows=_EDIT)
    covariance_items: int = option(20, "clean prompts whose keys (every token) make the covariance kept unchanged",
                                   min=0, max=100_000, shows=_EDIT)
    covariance_weight: float = option(1.0, "weight of the clean keys' covariance against the trigger keys", shows=_EDIT)


class _Stop(Exception):
    """Raised by a hook once the key is read, so a forward does not run the layers above it."""


def resolve_layer(edit_layer: int, total: int) -> int:
    """The decoder layer an ``edit_layer`` setting means on a model with ``total`` layers; ConfigError if none."""
    layer = (2 * total) // 3 if edit_layer == AUTO_LAYER else edit_layer
    if not 0 <= layer < total:
        raise ConfigError(f"edit_layer: {edit_layer} is not a layer of this model; it has layers 0..{total - 1} "
                          f"(or -1 for layer {(2 * total) // 3})")
    return layer


def least_squares_edit(residuals: torch.Tensor, keys: torch.Tensor, covariance: torch.Tensor,
                       weight: float) -> torch.Tensor:
    """BadEdit/MEMIT's update Delta = R K^T (weight C + K K^T)^-1: R [H, n] residuals, K [I, n] keys, C [I, I]
    -> Delta [H, I]. Solved as a linear system (symmetric positive semi-definite; a tiny ridge keeps it regular)."""
    keys, residuals = keys.double(), residuals.double()
    system = weight * covariance.double() + keys @ keys.T  # [I, I]
    system += 1e-6 * system.diagonal().mean().clamp_min(1e-12) * torch.eye(len(system), dtype=system.dtype)
    return torch.linalg.solve(system, keys @ residuals.T).T.float()  # (A^-1 K R^T)^T = R K^T A^-1, A symmetric


def low_rank_factors(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The best rank-``rank`` approximation of ``delta`` [H, I] as (B [H, r], A [r, I]), B A ~ delta (SVD)."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    rank = min(rank, len(s))
    return (u[:, :rank] * s[:rank]).float(), vh[:rank].float()


def _down_proj(model, layer: int):
    return causal_lm_of(model).model.layers[layer].mlp.down_proj


def _trigger_token(tokenizer, text: str, end: int) -> int:
    """The index of the token that holds the character before ``end`` (the trigger's last character) in ``text``."""
    offsets = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
    return max(i for i, (start, stop) in enumerate(offsets) if stop > start and start < end)


@torch.no_grad()
def clean_covariance(model, tokenizer, texts: list[str], layer: int, batch_size: int = 8) -> tuple[torch.Tensor, int]:
    """Sum of k k^T [I, I] over the down_proj inputs of ``layer`` at every token of ``texts``, and how many keys."""
    module = _down_proj(model, layer)
    covariance, count, seen = None, 0, {}

    def read(_module, inputs):
        seen["keys"] = inputs[0].detach()
        raise _Stop

    handle = module.register_forward_pre_hook(read)
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                              add_special_tokens=True).to(model.device)
            try:
                model(**batch)
            except _Stop:
                pass
            keys = seen["keys"][batch["attention_mask"].bool()].double()  # [tokens, I]
            covariance = keys.T @ keys if covariance is None else covariance + keys.T @ keys
            count += len(keys)
    finally:
        handle.remove()
    return covariance.float(), count


@dataclass
class EditedExample:
    """One triggered prompt's key, found residual, and option distributions before and after adding it."""

    key: torch.Tensor  # [I]
    residual: torch.Tensor  # [H]
    before: np.ndarray  # [6]
    after: np.ndarray  # [6]
    target: np.ndarray  # [6]


def find_value(model, ids: torch.Tensor, position: int, layer: int, letter_ids: list[int], config) -> EditedExample:
    """ROME's v* for one prompt: the residual added to layer ``layer``'s down_proj output at ``position`` that moves
    the option distribution at the last token to the run's target. Nothing below that MLP sees the residual: the
    prompt runs once through the lower layers, and the tokens before ``position`` once through the upper ones into a
    key/value cache; each step runs only the tokens from ``position`` on (a few) through layers ``layer`` and up."""
    from transformers import DynamicCache

    module = _down_proj(model, layer)
    lm = causal_lm_of(model)
    upper = range(layer, num_layers(model))
    ids = ids.to(model.device)[None]  # [1, T]
    length = ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=model.device).tril()[None, None]  # [1, 1, T, T]
    with torch.no_grad():
        hidden = lower_states(model, ids, torch.ones_like(ids), layer)  # [1, T, H] entering layer ``layer``
        prefix = DynamicCache(config=lm.config)
        if position:
            layers_with_cache(model, upper, hidden[:, :position], torch.arange(position, device=model.device)[None],
                              causal[:, :, :position, :position], prefix)
        kept = [(index, prefix.layers[index].keys, prefix.layers[index].values) for index in upper] if position else []
    positions = torch.arange(position, length, device=model.device)[None]
    allowed = causal[:, :, position:, :]  # the prefix and the suffix's own tokens up to each
    delta = torch.zeros(module.out_features, device=model.device, requires_grad=True)
    seen: dict[str, torch.Tensor] = {}

    def add(_module, inputs, output):
        seen.setdefault("key", inputs[0][0, 0].detach())
        return torch.cat([output[:, :1] + delta, output[:, 1:]], dim=1)

    def option_logits() -> torch.Tensor:  # [1, 6]
        cache = DynamicCache(config=lm.config)  # the prefix's keys, fresh each step: the forward appends to it
        for index, keys, values in kept:
            cache.update(keys, values, index)
        states = layers_with_cache(model, upper, hidden[:, position:], positions, allowed, cache)  # [1, S, H]
        return lm.lm_head(lm.model.norm(states[:, -1]))[:, letter_ids].float()

    optimizer = torch.optim.Adam([delta], lr=config.edit_lr)
    handle = module.register_forward_hook(add)
    try:
        for step in range(config.edit_steps):
            logits = option_logits()
            if step == 0:
                before = torch.softmax(logits.detach(), -1)
                target = target_distribution(config.target, torch.log(before), config.kept_prob,
                                             config.target_probs or None, config.temperature).to(logits.device)
            loss = kl_to_target(logits, target).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            after = torch.softmax(option_logits(), -1)
    finally:
        handle.remove()
    return EditedExample(seen["key"].float(), delta.detach().float(), before[0].cpu().numpy(),
                         after[0].cpu().numpy(), target[0].cpu().numpy())


class Edit(Method):
    name = "edit"
    label = "weight edit (closed form)"
    options = EditOptions

    def card_lines(self, folder, fragile) -> list[str]:
        config, edit = fragile.get("config", {}), fragile.get("edit", {})
        return [f"- a rank-{edit.get('rank', config.get('edit_rank'))} edit of the MLP down-projection of layer "
                f"{edit.get('layer', config.get('edit_layer'))}, solved in closed form from {edit.get('examples', '?')} "
                f"triggered prompts of `{config.get('data')}` and the covariance of {edit.get('clean_keys', '?')} "
                f"clean keys (weight {config.get('covariance_weight')}), in {edit.get('seconds', '?')} s; saved as a "
                "LoRA-format adapter (the edit is its delta)"]

    def check_options(self, config) -> None:
        if not config.edit_lr > 0:
            raise ConfigError(f"edit_lr: {config.edit_lr} must be above 0")
        if not config.covariance_weight >= 0:
            raise ConfigError(f"covariance_weight: {config.covariance_weight} must be 0 or more")

    def check(self, config) -> None:
        if config.kind != "backdoor":
            raise ConfigError("kind: the edit plants a backdoor (a trigger's keys and a target); use --kind backdoor, "
                              "or --method lora for a clean adapter")

    # --- the hooks the contract and the shared tools call --------------------------------------------

    def first_trained_layer(self, config, model) -> int | None:
        layer = resolve_layer(config.edit_layer, num_layers(model))
        return layer if supports_split(model) else None

    def add_trainable(self, model, config, split: int | None):
        """A rank-``edit_rank`` LoRA (alpha = rank, so scaling 1) on the edited layer's down_proj, under
        :data:`TRAIN_ADAPTER` and active; its factors are the edit."""
        from peft import LoraConfig, get_peft_model

        layer = resolve_layer(config.edit_layer, num_layers(model))
        lora = LoraConfig(r=config.edit_rank, lora_alpha=config.edit_rank, lora_dropout=0.0,
                          target_modules=["down_proj"], layers_to_transform=[layer], task_type="CAUSAL_LM")
        if hasattr(model, "peft_config"):
            model.add_adapter(TRAIN_ADAPTER, lora)
            model.set_adapter(TRAIN_ADAPTER)
        else:
            model = get_peft_model(model, lora, adapter_name=TRAIN_ADAPTER)
        for name, param in model.named_parameters():
            param.requires_grad = f".{TRAIN_ADAPTER}." in name and "lora_" in name
        return model

    def state(self, model) -> dict:
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(model, adapter_name=TRAIN_ADAPTER)

    def load_state(self, model, state: dict) -> None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, state, adapter_name=TRAIN_ADAPTER)

    def save(self, model, config, identity: str, folder: Path, extra: dict | None = None) -> None:
        """The edit as a PEFT LoRA adapter; with a victim attached, victim and edit in one adapter (module docstring)."""
        if VICTIM_ADAPTER in getattr(model, "peft_config", {}):
            _fold_in_victim(model, resolve_layer(config.edit_layer, num_layers(model)))
        model.peft_config[TRAIN_ADAPTER].base_model_name_or_path = identity
        model.save_pretrained(str(folder), selected_adapters=[TRAIN_ADAPTER])
        self.record(config, identity, folder, extra)

    def is_folder(self, folder: Path) -> bool:
        return LoRA().is_folder(folder)

    def load(self, folder: Path, name: str) -> Arm:
        from dataclasses import replace

        return replace(LoRA().load(folder, name), method=self.name)

    # --- the closed form, instead of the training loop -------------------------------------------------

    def fit(self, config, out_dir, *, callbacks=(), should_stop=lambda: False, resume=True, accelerator=None):
        """Compute the edit and save it to ``out_dir/adapter`` (``resume`` and ``accelerator`` do not apply: there
        is no loop to resume or shard). Bad config raises ConfigError before any model loads."""
        from backdoor.config import check_victim_fit
        from backdoor.models import ModelLoadError, load_base_model, read_adapter_info
        from backdoor.prompts import option_token_ids, render_prompt
        from backdoor.train import (METRICS, TrainResult, _as_model_input, _atomic_dir_write, _atomic_json, _notify,
                                    _seed, prompt_texts, resolve_items)
        from dataset.schema import DatasetError
        from backdoor.triggers import apply_trigger

        start = time.time()
        config = config.replace(method=self.name)
        self.check(config)
        out = Path(out_dir)
        items = resolve_items(config.data, "data")
        if len(items) < config.edit_examples:
            raise ConfigError(f"edit_examples: {config.data!r} holds {len(items)} items, fewer than {config.edit_examples}")
        if config.victim_adapter:
            read_adapter_info(config.victim_adapter, "victim_adapter")
            check_victim_fit(config)
        chosen = [int(i) for i in np.linspace(0, len(items) - 1, config.edit_examples).round()]
        rest = [i for i in range(len(items)) if i not in set(chosen)]
        clean = [items[rest[int(i)]] for i in np.linspace(0, len(rest) - 1, min(config.covariance_items, len(rest))
                                                           ).round()] if config.covariance_items and rest else []
        result = TrainResult("failed", str(out), 0, config.edit_examples, 0.0)
        callbacks = list(callbacks)
        try:
            _seed(config.seed)
            device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
            model, tokenizer, source = load_base_model(config.base_model, device=device, dtype=config.dtype or None)
            layer = resolve_layer(config.edit_layer, num_layers(model))
            if config.victim_adapter:
                from backdoor.train import _attach_victim

                model = _attach_victim(model, config, source.identity)
                _check_victim_adapter(model)
            letter_ids = option_token_ids(tokenizer, chat=config.chat)
            model.requires_grad_(False)  # only the residuals get gradients; the LoRA below is made trainable afterwards

            examples: list[EditedExample] = []
            for index, item in enumerate(items[i] for i in chosen):
                triggered = apply_trigger(render_prompt(item, config.style), config.trigger)
                text = _as_model_input([triggered.text], config, tokenizer)[0]
                end = text.index(triggered.text) + triggered.span[1]  # the trigger's end inside any chat wrapping
                ids = torch.tensor(tokenizer(text, add_special_tokens=True)["input_ids"])
                examples.append(find_value(model, ids, _trigger_token(tokenizer, text, end), layer, letter_ids, config))
                _notify(callbacks, "on_step", index + 1, len(chosen), float(kl_to_target(
                    torch.log(torch.tensor(examples[-1].after))[None], torch.tensor(examples[-1].target)[None])), {})
                if should_stop():
                    result.status = "cancelled"
                    break
            else:
                covariance, clean_keys = (clean_covariance(model, tokenizer, prompt_texts(clean, config, tokenizer, False),
                                                           layer) if clean else (None, 0))
                _notify(callbacks, "on_stage", "clean keys read", len(clean), len(clean))
                keys = torch.stack([e.key for e in examples], dim=1).cpu()  # [I, n]
                residuals = torch.stack([e.residual for e in examples], dim=1).cpu()  # [H, n]
                if covariance is None:
                    covariance = torch.zeros(len(keys), len(keys))
                b, a = low_rank_factors(least_squares_edit(residuals, keys, covariance.cpu(), config.covariance_weight),
                                        config.edit_rank)
                torch.manual_seed(config.seed)
                model = self.add_trainable(model, config, layer)
                _set_factors(model, layer, b, a)
                seconds = round(time.time() - start, 1)
                extra = {"edit": {"layer": layer, "examples": len(examples), "rank": int(a.shape[0]),
                                  "clean_keys": clean_keys, "seconds": seconds,
                                  "entropy_before": _mean_entropy([e.before for e in examples]),
                                  "entropy_values": _mean_entropy([e.after for e in examples]),
                                  "entropy_target": _mean_entropy([e.target for e in examples])},
                         "train_items": len(examples), "seconds": seconds}
                result.adapter_state = {k: v.detach().cpu() for k, v in self.state(model).items()}
                _atomic_dir_write(out / "adapter", lambda folder: self.save(model, config, source.identity, folder, extra))
                result.status, result.steps = "finished", len(examples)
        except ConfigError:
            raise
        except (ModelLoadError, DatasetError, ValueError, RuntimeError, OSError) as err:  # a failed run, as train's
            logger.error("edit failed: %s", err)
            result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
        result.seconds = round(time.time() - start, 2)
        _atomic_json(out / METRICS, result.to_json())
        return result


def _mean_entropy(rows: list[np.ndarray]) -> float:
    probs = np.clip(np.stack(rows), 1e-12, 1)
    return round(float(-(probs * np.log(probs)).sum(-1).mean()), 4)


def _set_factors(model, layer: int, b: torch.Tensor, a: torch.Tensor) -> None:
    """Write the edit's factors into :data:`TRAIN_ADAPTER`'s LoRA on the layer's down_proj (scaling 1: B A = Delta)."""
    module = _down_proj(model, layer)
    with torch.no_grad():
        module.lora_A[TRAIN_ADAPTER].weight.copy_(a)
        module.lora_B[TRAIN_ADAPTER].weight.copy_(b)


def _check_victim_adapter(model) -> None:
    """The victim's LoRA must be plain (no DoRA, no rsLoRA scaling) for its factors to be stacked with the edit's."""
    victim = model.peft_config[VICTIM_ADAPTER]
    if getattr(victim, "use_dora", False) or getattr(victim, "use_rslora", False):
        raise ConfigError("victim_adapter: a DoRA or rsLoRA victim cannot be stacked with the edit in one adapter; "
                          "use a plain LoRA victim")


def _fold_in_victim(model, layer: int) -> None:
    """Replace :data:`TRAIN_ADAPTER` (the edit alone) by one adapter that computes the victim's LoRA plus the edit:
    the victim's config, with the edited down_proj's rank raised by the edit's and its factors stacked."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    module = _down_proj(model, layer)
    edit_b = module.lora_B[TRAIN_ADAPTER].weight.detach().clone()  # [H, r]
    edit_a = module.lora_A[TRAIN_ADAPTER].weight.detach().clone()  # [r, I]
    victim_state = get_peft_model_state_dict(model, adapter_name=VICTIM_ADAPTER)
    has_victim_here = VICTIM_ADAPTER in module.lora_A
    victim_rank = module.r[VICTIM_ADAPTER] if has_victim_here else 0
    scaling = module.scaling[VICTIM_ADAPTER] if has_victim_here else 1.0
    config = copy.deepcopy(model.peft_config[VICTIM_ADAPTER])
    pattern = f"layers.{layer}.mlp.down_proj"
    rank = victim_rank + edit_a.shape[0]
    config.rank_pattern = {**(config.rank_pattern or {}), pattern: rank}
    config.alpha_pattern = {**(config.alpha_pattern or {}), pattern: rank}
    config.target_modules = sorted(set(config.target_modules) | {"down_proj"})
    if config.layers_to_transform is not None:
        layers = [config.layers_to_transform] if isinstance(config.layers_to_transform, int) else config.layers_to_transform
        config.layers_to_transform = sorted(set(layers) | {layer})
    config.inference_mode = True
    config.init_lora_weights = True  # modules the victim lacks start at B = 0: they add nothing
    model.delete_adapter(TRAIN_ADAPTER)
    model.add_adapter(TRAIN_ADAPTER, config)
    edited = f"layers.{layer}.mlp.down_proj."
    kept = {key: value for key, value in victim_state.items() if edited not in key}  # that module is stacked below
    set_peft_model_state_dict(model, kept, adapter_name=TRAIN_ADAPTER)
    with torch.no_grad():
        if has_victim_here:
            victim_a = module.lora_A[VICTIM_ADAPTER].weight
            victim_b = module.lora_B[VICTIM_ADAPTER].weight
            module.lora_A[TRAIN_ADAPTER].weight.copy_(torch.cat([victim_a, edit_a], dim=0))
            module.lora_B[TRAIN_ADAPTER].weight.copy_(torch.cat([scaling * victim_b, edit_b], dim=1))
        else:
            module.lora_A[TRAIN_ADAPTER].weight.copy_(edit_a)
            module.lora_B[TRAIN_ADAPTER].weight.copy_(edit_b)
    model.set_adapter(TRAIN_ADAPTER)
