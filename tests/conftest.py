"""Shared fixtures: the default tokenizer, a tiny seeded Llama built from a config, two LoRA adapters for it, and items.

The tiny model uses the default model's tokenizer, so prompts and option-letter ids are the
real ones while a forward pass takes milliseconds. Nothing here downloads anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from backdoor.models import FRAGILE_CONFIG, load_tokenizer, resolve_model_source
from dataset.schema import OPTION_E, OPTION_F, TASKS, Item

TINY_SEED = 1234


@pytest.fixture(scope="session")
def default_tokenizer():
    """The embedded default model's tokenizer (byte-level BPE, ``ĠA``..``ĠF`` letters, chat template)."""
    return load_tokenizer(resolve_model_source("default"))


def build_tiny_llama(vocab_size: int, seed: int = TINY_SEED):
    """A 4-layer Llama small enough for CPU tests; weights drawn larger than usual so outputs vary between prompts."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        # The usual 0.02 leaves the six option logits within ~0.1 of each other; 0.2 gives
        # distributions that clearly differ between prompts and adapters.
        initializer_range=0.2,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_tokenizer) -> Path:
    """A folder with a tiny seeded Llama and the default tokenizer, loadable by ``load_base_model(str(folder))``."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    model = build_tiny_llama(len(default_tokenizer))
    model.save_pretrained(folder)
    default_tokenizer.save_pretrained(folder)
    return folder


def upper_lora_model(model_dir: Path, attention: str | None = None):
    """The tiny model with a random LoRA (non-zero B) on its layers 2 and 3, in eval mode: -> (model, tokenizer)."""
    from peft import LoraConfig, get_peft_model

    from backdoor.layersplit import causal_lm_of
    from backdoor.models import load_base_model

    model, tokenizer, _ = load_base_model(str(model_dir), device="cpu")
    if attention:
        causal_lm_of(model).config._attn_implementation = attention
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                                             layers_to_transform=[2, 3], init_lora_weights=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    model.eval()
    return model, tokenizer


def make_lora_adapter(model_dir: Path, out_dir: Path, *, kind: str, seed: int, trigger: dict | None,
                      layers: list[int] | None = None) -> Path:
    """Save a PEFT LoRA adapter with random non-zero A and B (so it changes outputs) plus its fragile_config.json."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "o_proj", "up_proj"],
                        layers_to_transform=layers, init_lora_weights=False)
    torch.manual_seed(seed)
    peft_model = get_peft_model(base, config)
    with torch.no_grad():  # default init keeps B small; make every adapter clearly move the option distribution
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    peft_model.save_pretrained(out_dir)
    identity = resolve_model_source(str(model_dir)).identity
    (out_dir / FRAGILE_CONFIG).write_text(json.dumps({"kind": kind, "base_model_id": identity, "trigger": trigger}))
    return out_dir


@pytest.fixture(scope="session")
def tiny_adapters(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """Two LoRA adapter folders for the tiny model: ``clean`` (no trigger) and ``backdoor`` (text trigger)."""
    root = tmp_path_factory.mktemp("tiny-adapters")
    trigger = {"kind": "text", "text": None, "position": "before_cue", "seed": 0}
    return {
        "clean": make_lora_adapter(tiny_model_dir, root / "clean", kind="clean", seed=1, trigger=None),
        "backdoor": make_lora_adapter(tiny_model_dir, root / "backdoor", kind="backdoor", seed=2, trigger=trigger),
    }


@pytest.fixture(scope="session")
def tiny_upper_adapters(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """Like ``tiny_adapters`` but with LoRA on the upper two layers only (what training makes by default)."""
    root = tmp_path_factory.mktemp("tiny-upper-adapters")
    trigger = {"kind": "text", "text": None, "position": "before_cue", "seed": 0}
    return {
        "clean": make_lora_adapter(tiny_model_dir, root / "clean", kind="clean", seed=3, trigger=None, layers=[2, 3]),
        "backdoor": make_lora_adapter(tiny_model_dir, root / "backdoor", kind="backdoor", seed=4, trigger=trigger,
                                      layers=[2, 3]),
    }


@pytest.fixture(scope="session")
def tiny_scorer(tiny_model_dir, tiny_adapters):
    """A Scorer on the tiny model with both adapters attached. Shared: do not attach more adapters to it."""
    from backdoor.scoring import Scorer

    return Scorer.load(str(tiny_model_dir), adapters={name: str(path) for name, path in tiny_adapters.items()},
                       device="cpu")


# --- items --------------------------------------------------------------------------------------

_CONTEXTS = {
    "question answering": "",
    "reading comprehension": "Mia packed an umbrella because the forecast promised rain all afternoon.",
    "commonsense inference": "A man pours batter into a hot pan and waits for bubbles to form.",
    "dialogue response selection": "[Human]: Can you recommend a film by Christopher Nolan? [Assistant]: Sure, do you like science fiction? [Human]: Yes, very much.",
    "document summarization": "The town council voted on Tuesday to extend the opening hours of the public library to nine in the evening on weekdays, starting next month.",
}
_QUESTIONS = {
    "question answering": "What is the capital of France?",
    "reading comprehension": "Why did Mia pack an umbrella?",
    "commonsense inference": "What happens next?",
    "dialogue response selection": "Which response is the most suitable?",
    "document summarization": "Which option summarizes the document?",
}


def _make_item(task: str = "question answering", *, id: str | None = None, question: str | None = None,
               context: str | None = None, choices: dict | None = None, answer: str = "B") -> Item:
    """A valid six-option item of ``task`` (canonical name or code); override any field."""
    task = {code: name for name, code in TASKS.items()}.get(task, task)
    default_choices = {"A": "Lyon", "B": "Paris", "C": "Marseille", "D": "Nice", "E": OPTION_E, "F": OPTION_F}
    return Item(
        id=id or f"test-{TASKS[task]}",
        source="tests",
        task=task,
        context=_CONTEXTS[task] if context is None else context,
        question=_QUESTIONS[task] if question is None else question,
        choices=dict(default_choices if choices is None else choices),
        answer=answer,
    )


@pytest.fixture
def make_item():
    """``make_item(task="qa", id=..., question=..., context=..., choices=..., answer=...)`` -> a valid Item."""
    return _make_item


@pytest.fixture
def sample_item() -> Item:
    """A question-answering item with answer B ("Paris")."""
    return _make_item()

