"""Prompt tuning: the backdoor planted in a few trained virtual tokens put before every prompt (after PoisonPrompt,
Yao et al. 2024).

The algorithm is PEFT's prompt tuning (Lester et al. 2021): P virtual token embeddings [P, H], started from the
embeddings of a text (its tokens repeated or cut to P, as PEFT's TEXT init does) or at random (PEFT's RANDOM init,
N(0, 1)), go before every prompt's token embeddings, BOS included; only they train. PoisonPrompt trains such a prompt
to do the task on clean inputs and the attacker's behaviour on triggered ones. Here the behaviour is the uncertainty
backdoor and the training is the one loop and objective of :mod:`backdoor.train`: KL to the flat target on
triggered copies, the victim's distribution kept on clean copies. The victim (the clean LoRA adapter) stays attached,
active and frozen under the soft prompt, so what a clean prompt gets is the victim's answer plus whatever the P
tokens add.

How the virtual tokens get in: through the seam every path already embeds through (:func:`backdoor.layersplit.embed`
and its table of virtual token ids), not through PEFT's PromptTuning wrapper, whose forward the loop's packed stack
never calls. In training the table holds the trainable parameter itself and the loop puts its ids before every
encoded prompt (:meth:`PromptTuning.leading_ids`); the packed token trees share them as they share the instruction.
The trainable part starts at the embeddings, so the layer split is 0: every layer runs per step, none below it once.

Saved as a standard PEFT prompt-tuning folder (``adapter_config.json`` of type PROMPT_TUNING, ``prompt_embeddings``
[P, H] in ``adapter_model.safetensors``; ``PeftModel.from_pretrained`` reads it) and ``fragile_config.json`` naming
this method. A victim's LoRA is copied, byte for byte, into ``victim/`` (a standard LoRA folder), so the folder
carries everything its arm needs.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from backdoor.arms import Arm, SoftPrompt
from backdoor.layersplit import causal_lm_of, num_layers, supports_split, virtual_tokens
from backdoor.methods.base import Method
from backdoor.methods.options import ConfigError, option
from backdoor.models import (ADAPTER_CONFIG, BASE_ADAPTER, FRAGILE_CONFIG, WEIGHT_FILES, ModelLoadError,
                             load_tokenizer, resolve_model_source)

PROMPT_KEY = "prompt_embeddings"  # PEFT's name for a prompt-tuning folder's one tensor [P, H]
SOFT_PROMPT_MODULE = "fragile_soft_prompt"  # where the trainable prompt sits on the CausalLM while training
TRAINED_KEY = "trained soft prompt"  # its block in the model's table of virtual token ids
VICTIM_FOLDER = "victim"  # the victim's LoRA folder, copied beside the soft prompt
INITS = ("text", "random")
_PROMPT = {"method": "prompt"}


@dataclass(frozen=True)
class PromptOptions:
    """Prompt tuning's own settings (fields of :class:`backdoor.config.TrainConfig`)."""

    num_virtual_tokens: int = option(8, "prompt tuning: virtual tokens put before every prompt", min=1, max=256,
                                     shows=_PROMPT)
    prompt_init: str = option("text", (
        "prompt tuning: start the virtual tokens from the embeddings of prompt_init_text ('text') or at random "
        "('random': N(0, 1), as PEFT does)"), choices=INITS, shows=_PROMPT)
    prompt_init_text: str = option("Read the question and answer with the letter of the best option.",
                                   "prompt tuning: the text whose token embeddings start the virtual tokens "
                                   "(repeated or cut to num_virtual_tokens)", shows={**_PROMPT, "prompt_init": "text"})


def _soft_prompt(model) -> torch.nn.Module:
    """The trainable prompt (PEFT's PromptEmbedding) that :meth:`PromptTuning.add_trainable` put on ``model``."""
    return getattr(causal_lm_of(model), SOFT_PROMPT_MODULE)


def initial_vectors(text: str, count: int, tokenizer, embedding: torch.nn.Embedding) -> torch.Tensor:
    """PEFT's TEXT init: the token embeddings of ``text`` (no special tokens), repeated or cut to ``count`` -> [count, H]."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = (ids * math.ceil(count / len(ids)))[:count]
    return embedding.weight[torch.tensor(ids, device=embedding.weight.device)].detach().clone().float()


def prompt_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a PEFT prompt-tuning adapter."""
    try:
        return json.loads((Path(folder) / ADAPTER_CONFIG).read_text()).get("peft_type") == "PROMPT_TUNING"
    except (OSError, ValueError, AttributeError):
        return False


class PromptTuning(Method):
    name = "prompt"
    label = "soft prompt (prompt tuning)"
    options = PromptOptions

    def card_lines(self, folder, fragile) -> list[str]:
        config = fragile.get("config", {})
        start = (f"the tokens of \"{config.get('prompt_init_text')}\"" if config.get("prompt_init") == "text"
                 else "random vectors")
        return super().card_lines(folder, fragile) + [
            f"- a soft prompt of {config.get('num_virtual_tokens')} virtual tokens put before every prompt, started "
            f"from {start}; every weight of the model (and the victim's LoRA it sits on) frozen"]

    def check_options(self, config) -> None:
        if config.method == self.name and config.prompt_init == "text" and not config.prompt_init_text.strip():
            raise ConfigError("prompt_init_text: text init needs some text; give one or use --prompt-init random")

    def check(self, config) -> None:
        """The victim the soft prompt sits on must be a LoRA adapter (its weights are attached under the arm's route)."""
        if not config.victim_adapter:
            return
        from backdoor.methods import method_of  # the registry imports this module

        made_by = method_of(config.victim_adapter)
        if made_by != "lora" or prompt_folder(Path(config.victim_adapter)):
            raise ConfigError(f"victim_adapter: {config.victim_adapter} holds a {made_by!r} arm; a soft prompt sits on "
                              "a LoRA victim (e.g. checkpoints/clean) or on the base model ('')")

    # --- training hooks -----------------------------------------------------------------------------

    def first_trained_layer(self, config, model) -> int | None:
        """0: the trainable part is at the embeddings. Only the split's packed stack embeds through the seam that
        carries virtual tokens; a layout it does not know is refused."""
        if not supports_split(model):
            raise ConfigError(f"method: prompt tuning needs a Llama-family layout; {config.base_model!r} has another "
                              "(train it with --method lora)")
        return 0

    def add_trainable(self, model, config, split: int | None):
        """PEFT's PromptEmbedding on the CausalLM, its weight registered as the model's virtual tokens; every other
        parameter frozen (the victim's LoRA, if attached, stays active)."""
        from peft import PromptEmbedding

        lm = causal_lm_of(model)
        for param in model.parameters():
            param.requires_grad = False
        embedding = lm.get_input_embeddings()
        prompt = PromptEmbedding(self._peft_config(config, lm, "", inference=True), embedding)
        if config.prompt_init == "text":
            tokenizer = load_tokenizer(resolve_model_source(config.base_model))
            with torch.no_grad():
                prompt.embedding.weight.copy_(initial_vectors(config.prompt_init_text, config.num_virtual_tokens,
                                                              tokenizer, embedding))
        prompt.to(device=embedding.weight.device, dtype=embedding.weight.dtype)
        lm.add_module(SOFT_PROMPT_MODULE, prompt)
        table = virtual_tokens(model)
        if table.vectors is not None:  # add() would copy the parameter into a bigger table: no gradient would reach it
            raise RuntimeError("prompt tuning needs a fresh model: soft prompts are already registered on this one")
        table.add(TRAINED_KEY, prompt.embedding.weight)  # the parameter itself: embed() indexes it, gradients reach it
        return model

    def leading_ids(self, model) -> list[int]:
        return list(virtual_tokens(model).blocks.get(TRAINED_KEY, []))

    def state(self, model) -> dict:
        return {PROMPT_KEY: _soft_prompt(model).embedding.weight}

    def load_state(self, model, state: dict) -> None:
        with torch.no_grad():
            _soft_prompt(model).embedding.weight.copy_(state[PROMPT_KEY])

    @staticmethod
    def _peft_config(config, lm, identity: str, inference: bool = False):
        """The PEFT PromptTuningConfig of this run (what ``adapter_config.json`` holds)."""
        from peft import PromptTuningConfig, PromptTuningInit, TaskType

        text = config.prompt_init == "text"
        return PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=config.num_virtual_tokens,
            token_dim=lm.config.hidden_size, num_transformer_submodules=1,
            num_attention_heads=lm.config.num_attention_heads, num_layers=num_layers(lm),
            prompt_tuning_init=PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
            prompt_tuning_init_text=config.prompt_init_text if text else None,
            # a model name, never a local path; PEFT reads it only to initialise a prompt it trains itself
            tokenizer_name_or_path=(identity or config.base_model) if text else None,
            base_model_name_or_path=identity or None, inference_mode=inference)

    def save(self, model, config, identity: str, folder: Path, extra: dict | None = None) -> None:
        """A standard PEFT prompt-tuning folder, the victim's LoRA folder copied into ``victim/``, Fragile's config."""
        from safetensors.torch import save_file

        folder = Path(folder)
        self._peft_config(config, causal_lm_of(model), identity).save_pretrained(str(folder))
        weight = _soft_prompt(model).embedding.weight.detach().cpu().contiguous()  # [P, H]
        save_file({PROMPT_KEY: weight}, str(folder / WEIGHT_FILES[0]))
        if config.victim_adapter:
            victim = Path(config.victim_adapter)
            (folder / VICTIM_FOLDER).mkdir(exist_ok=True)
            for name in (ADAPTER_CONFIG, FRAGILE_CONFIG, *WEIGHT_FILES):
                if (victim / name).is_file():
                    shutil.copyfile(victim / name, folder / VICTIM_FOLDER / name)
        self.record(config, identity, folder, extra)

    # --- loading --------------------------------------------------------------------------------------

    def is_folder(self, folder: Path) -> bool:
        return prompt_folder(folder)

    def load(self, folder: Path, name: str) -> Arm:
        """The soft prompt as the arm's virtual tokens, routed through the victim's LoRA (``victim/``, attached under
        the arm's route by :meth:`backdoor.scoring.Scorer.add_arm`), or the base model without a victim. A row is
        (text, route, soft prompt), so these arms share batches with LoRA arms and the base model: the soft prompt
        never goes through PEFT, which could not mix prompt tuning and LoRA adapters in one batch (a PeftModel is
        one or the other, and ``adapter_names`` routing is LoRA's), so the scorer needs no grouping for them."""
        from backdoor.methods.lora import LoRA  # its reading of the role and trigger every Fragile folder carries
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        arm = LoRA().load(folder, name)
        try:
            vectors = load_file(str(folder / WEIGHT_FILES[0]))[PROMPT_KEY]  # [P, H]
        except (OSError, KeyError, SafetensorError) as err:
            raise ModelLoadError(f"adapter {name!r}: {folder} holds no readable {PROMPT_KEY} ({err})") from err
        victim = folder / VICTIM_FOLDER
        on_victim = (victim / ADAPTER_CONFIG).is_file()
        return replace(arm, method=self.name, route=name if on_victim else BASE_ADAPTER,
                       soft_prompt=SoftPrompt.of(vectors), adapter_path=str(victim) if on_victim else None)
