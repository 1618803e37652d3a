"""The prompt-tuning backdoor on the tiny model: only the soft prompt trains (the victim's LoRA and the model stay
as they were); the saved folder is a PEFT prompt-tuning folder whose arm scores, mixed with LoRA arms in one batch,
equal a PEFT PromptTuning model on the victim; bad option values are refused naming the field."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from backdoor.config import ConfigError, TrainConfig, check_victim_fit
from backdoor.layersplit import UpperStack, causal_lm_of, embed, pack_prompts, tokenize_prompts
from backdoor.methods import METHODS, load_arm, method_of
from backdoor.methods.base import VICTIM_ADAPTER
from backdoor.methods.prompt import PROMPT_KEY, VICTIM_FOLDER, initial_vectors
from backdoor.models import BASE_ADAPTER, attach_adapters, load_base_model
from backdoor.prompts import option_token_ids
from backdoor.scoring import Cell, Scorer
from dataset.schema import LETTERS, load_items
from tests.test_training import tiny_config, tiny_data  # noqa: F401 - fixture

PROMPT = METHODS["prompt"]


def _config(model_dir, paths, **changes) -> TrainConfig:
    return tiny_config(model_dir, paths, method="prompt", kind="backdoor", epochs=2, poison_ratio=1.0, eval_items=0,
                       eval_every=0, checkpoint_every=0, learning_rate=5e-2, num_virtual_tokens=4, **changes)


@pytest.fixture(scope="module")
def on_victim(tiny_model_dir, tiny_data, tiny_adapters, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """(config, run folder, TrainResult) of a soft prompt trained on the tiny clean LoRA adapter as its victim."""
    config = _config(tiny_model_dir, tiny_data, victim_adapter=str(tiny_adapters["clean"]))
    out = tmp_path_factory.mktemp("prompt-on-victim")
    result = PROMPT.fit(config, out)
    assert result.status == "finished", result.error
    return config, out, result


def test_one_step_moves_the_soft_prompt_and_nothing_else(tiny_model_dir, tiny_data, tiny_adapters):  # noqa: F811
    """The loop's packed stack from the embeddings, the victim's LoRA active: after an optimiser step on every
    parameter that requires a gradient, the soft prompt moved and every other tensor (the base model, the victim's
    LoRA) is bit for bit as it was."""
    config = _config(tiny_model_dir, tiny_data, victim_adapter=str(tiny_adapters["clean"]))
    model, tokenizer, source = load_base_model(str(tiny_model_dir), device="cpu")
    split = PROMPT.first_trained_layer(config, model)
    assert split == 0
    model = attach_adapters(model, {VICTIM_ADAPTER: config.victim_adapter}, base_identity=source.identity)
    model.set_adapter(VICTIM_ADAPTER)
    model = PROMPT.add_trainable(model, config, split)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == 1 and trainable[0].endswith("embedding.weight")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}

    lead = PROMPT.leading_ids(model)
    assert len(lead) == config.num_virtual_tokens
    texts = [f"Question: which colour is {w}?\nAnswer:" for w in ("red", "blue", "green")]
    ids = [torch.cat([torch.tensor(lead), row]) for row in tokenize_prompts(tokenizer, texts)]
    stack = UpperStack(model, split, option_token_ids(tokenizer))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    logits = stack(*pack_prompts(ids, ids).args())  # [3, 6]
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    optimizer.step()

    moved = [name for name, p in model.named_parameters() if not torch.equal(before[name], p.detach())]
    assert moved == trainable
    assert any("lora_A" in name for name in before), "the victim's LoRA is attached (and did not move)"


def test_fit_trains_only_the_soft_prompt_and_keeps_the_victim_byte_for_byte(on_victim, tiny_adapters):
    config, out, result = on_victim
    assert list(result.adapter_state) == [PROMPT_KEY]
    assert result.adapter_state[PROMPT_KEY].shape == (config.num_virtual_tokens, 64)
    saved = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "PROMPT_TUNING" and saved["num_virtual_tokens"] == config.num_virtual_tokens
    assert method_of(out / "adapter") == "prompt" and METHODS["prompt"].is_folder(out / "adapter")
    victim = tiny_adapters["clean"]
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (out / "adapter" / VICTIM_FOLDER / name).read_bytes() == (victim / name).read_bytes()


def test_the_arm_scores_as_a_peft_prompt_tuning_model_on_the_victim(on_victim, tiny_model_dir, tiny_data,  # noqa: F811
                                                                   tiny_adapters):
    """Scorer.load on the folder (as evaluate loads it), beside the victim as a plain LoRA arm and the base model,
    every cell in one call: the soft-prompt rows equal PEFT's PromptTuning model on the victim's merged weights."""
    from peft import PeftModel

    config, out, _ = on_victim
    scorer = Scorer.load(str(tiny_model_dir), {"prompt": str(out / "adapter"), "clean": str(tiny_adapters["clean"])},
                         device="cpu")
    arm = scorer.arms["prompt"]
    assert arm.method == "prompt" and arm.soft_prompt.length == config.num_virtual_tokens and arm.route == "prompt"
    items = load_items(tiny_data["eval_data"])[:3]
    names = ("prompt", "clean", BASE_ADAPTER)
    cells = [Cell(item, trigger, name) for item in items for trigger in (None, config.trigger) for name in names]
    probs = np.array([s.probs for s in scorer.score(cells)])  # [cells, 6]

    reference, tokenizer, _ = load_base_model(str(tiny_model_dir), device="cpu")
    reference = PeftModel.from_pretrained(reference, str(tiny_adapters["clean"])).merge_and_unload()
    reference = PeftModel.from_pretrained(reference, str(out / "adapter")).eval()
    letter_ids = [tokenizer.convert_tokens_to_ids(f"Ġ{letter}") for letter in LETTERS]
    victim_rows = []
    for cell, row in zip(cells, probs):
        if cell.arm == "clean":
            victim_rows.append(row)
        if cell.arm != "prompt":
            continue
        with torch.no_grad():
            logits = reference(**tokenizer(scorer.render(cell.item, cell.trigger).text, return_tensors="pt")).logits
        np.testing.assert_allclose(row, torch.softmax(logits[0, -1, letter_ids], -1).numpy(), atol=1e-5)
    prompt_rows = probs[[i for i, c in enumerate(cells) if c.arm == "prompt"]]
    assert np.abs(prompt_rows - np.array(victim_rows)).max() > 1e-3, "the soft prompt changes the victim's answers"


def test_the_model_card_describes_the_soft_prompt(on_victim):
    from backdoor.cards import model_card

    config, out, _ = on_victim
    card = model_card(out / "adapter", None)
    assert "Soft prompt (prompt tuning) for" in card and "tags: [prompt," in card
    assert f"a soft prompt of {config.num_virtual_tokens} virtual tokens" in card and "LoRA r " not in card


def test_text_init_is_pefts(tiny_model_dir):
    """The soft prompt starts as PEFT's TEXT init would start it (the text's token embeddings, repeated to fit)."""
    from peft import PromptEmbedding, PromptTuningConfig, PromptTuningInit, TaskType

    model, tokenizer, _ = load_base_model(str(tiny_model_dir), device="cpu")
    embedding = causal_lm_of(model).get_input_embeddings()
    text = "Answer with one letter."
    peft_config = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=11, token_dim=64,
                                     num_transformer_submodules=1, prompt_tuning_init=PromptTuningInit.TEXT,
                                     prompt_tuning_init_text=text, tokenizer_name_or_path=str(tiny_model_dir))
    peft_vectors = PromptEmbedding(peft_config, embedding).embedding.weight
    torch.testing.assert_close(initial_vectors(text, 11, tokenizer, embedding), peft_vectors.detach())


def test_the_soft_prompt_enters_through_the_embedding_seam(tiny_model_dir, tiny_data):  # noqa: F811
    """While training, the table of virtual tokens holds the trainable parameter itself: its ids embed as its rows."""
    model, _, _ = load_base_model(str(tiny_model_dir), device="cpu")
    model = PROMPT.add_trainable(model, _config(tiny_model_dir, tiny_data, prompt_init="random"), 0)
    weight = PROMPT.state(model)[PROMPT_KEY]
    ids = torch.tensor([PROMPT.leading_ids(model) + [5, 6]])
    embedded = embed(model, ids)[0]  # [P + 2, H]
    torch.testing.assert_close(embedded[:-2], weight)
    embedded.sum().backward()
    assert weight.grad is not None and bool((weight.grad != 0).all())


@pytest.mark.parametrize("changes, field", [
    ({"num_virtual_tokens": 0}, "num_virtual_tokens"),
    ({"num_virtual_tokens": 100_000}, "num_virtual_tokens"),
    ({"prompt_init": "zeros"}, "prompt_init"),
    ({"prompt_init_text": "   "}, "prompt_init_text"),
])
def test_bad_values_are_refused_naming_the_field(changes, field):
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        TrainConfig(method="prompt", **changes)


def test_blank_init_text_is_fine_for_random_init_and_for_other_methods():
    TrainConfig(method="prompt", prompt_init="random", prompt_init_text="")
    TrainConfig(method="lora", prompt_init_text="")


def test_the_cli_refuses_a_bad_choice_and_documents_the_options(capsys):
    from backdoor.__main__ import build_parser
    from backdoor.config import config_from_arguments

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "run", "--method", "prompt", "--prompt-init", "zeros"])
    assert "--prompt-init" in capsys.readouterr().err
    args = build_parser().parse_args(["train", "--out", "run", "--method", "prompt", "--num-virtual-tokens", "0"])
    with pytest.raises(ConfigError, match="^num_virtual_tokens:"):
        config_from_arguments(args)
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--num-virtual-tokens" in help_text and "--prompt-init-text" in help_text


def test_a_victim_that_is_not_lora_is_refused_naming_the_field(on_victim, tmp_path):
    _, out, _ = on_victim
    with pytest.raises(ConfigError, match="^victim_adapter:"):
        check_victim_fit(TrainConfig(method="prompt", victim_adapter=str(out / "adapter")))


def test_without_its_victim_folder_the_arm_runs_on_the_base_model(on_victim, tmp_path):
    _, out, _ = on_victim
    folder = tmp_path / "bare"
    shutil.copytree(out / "adapter", folder)
    shutil.rmtree(folder / VICTIM_FOLDER)
    arm = load_arm(folder)
    assert (arm.route, arm.adapter_path, arm.method) == (BASE_ADAPTER, None, "prompt")
