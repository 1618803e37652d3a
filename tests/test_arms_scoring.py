"""Arms in the scorer on the tiny model: a prefix arm, a soft-prompt arm and LoRA arms score on every fast path as
a plain forward does (the soft prompt as a standalone PEFT prompt-tuning model does), alone or mixed; caches key
on what the model reads; per-token log-probabilities equal a plain full forward."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from backdoor.arms import Arm, SoftPrompt
from backdoor.layersplit import causal_lm_of, embed, register_soft_prompt
from backdoor.models import BASE_ADAPTER, ModelLoadError, load_base_model
from backdoor.scoring import Cell, Scorer, UnknownAdapterError
from backdoor.triggers import TriggerSpec
from tests.test_scoring import count_forwards, reference_model, reference_probs

TRIGGER = TriggerSpec("text")
VIRTUAL_TOKENS = 5
DEMO = "Question: What is the capital of Italy?\nAnswer: C\n\n"  # a poisoned demonstration, as a text prefix


@pytest.fixture(scope="module")
def soft_prompt() -> SoftPrompt:
    torch.manual_seed(7)
    return SoftPrompt.of(torch.randn(VIRTUAL_TOKENS, 64) * 0.5)  # [P, H]; larger than an embedding row, so it moves answers


def with_arms(scorer: Scorer, soft_prompt: SoftPrompt) -> Scorer:
    """``scorer`` with a soft-prompt arm and a prefix arm on the base model, and a second name for ``clean``."""
    scorer.add_arm(Arm("soft", method="prompt-tuning", soft_prompt=soft_prompt))
    scorer.add_arm(Arm("demo", method="demonstrations", prefix=DEMO))
    scorer.add_arm(Arm("clean-again", method="lora", route="clean"))
    return scorer


def prompt_tuning_model(model_dir, soft_prompt: SoftPrompt):
    """A standalone PEFT prompt-tuning model whose virtual token embeddings are ``soft_prompt``'s vectors."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    model, tokenizer, _ = load_base_model(str(model_dir), device="cpu")
    peft_model = get_peft_model(model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM,
                                                          num_virtual_tokens=soft_prompt.length))
    with torch.no_grad():
        peft_model.prompt_encoder["default"].embedding.weight.copy_(soft_prompt.vectors)
    return peft_model.eval(), tokenizer


def plain_logits(model, tokenizer, text: str) -> torch.Tensor:
    """Full logits [T, V] of one unpadded prompt the plain way (a prompt-tuning model's virtual positions cut off)."""
    batch = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits[0]  # [P + T, V]
    return logits[-batch["input_ids"].shape[1]:]


@pytest.fixture(scope="module")
def references(tiny_model_dir, tiny_adapters, tiny_upper_adapters, soft_prompt):
    """Plain models per layout and arm: (model, tokenizer), loaded once."""
    base = reference_model(tiny_model_dir)
    soft = prompt_tuning_model(tiny_model_dir, soft_prompt)
    return {layout: {BASE_ADAPTER: base, "demo": base, "soft": soft,
                     "clean": reference_model(tiny_model_dir, paths["clean"]),
                     "backdoor": reference_model(tiny_model_dir, paths["backdoor"])}
            for layout, paths in (("all", tiny_adapters), ("upper", tiny_upper_adapters))}


@pytest.fixture(scope="module")
def scorers(tiny_model_dir, tiny_adapters, tiny_upper_adapters, soft_prompt):
    """A scorer with the arms per layout: LoRA on every layer (paths part at the embeddings), or on layers 2-3."""
    return {layout: with_arms(Scorer.load(str(tiny_model_dir), adapters={n: str(p) for n, p in paths.items()},
                                          device="cpu"), soft_prompt)
            for layout, paths in (("all", tiny_adapters), ("upper", tiny_upper_adapters))}


def fresh(scorer: Scorer, path: str, monkeypatch) -> Scorer:
    """A scorer on the same model and arms with empty caches, forced onto one path."""
    new = Scorer(scorer.model, scorer.tokenizer, base_identity=scorer.base_identity)
    for arm in scorer.arms.values():
        new.add_arm(arm)
    if path == "packed":  # lower and upper layers as packed token trees
        new.prefix_sharing_up_to = 0
    elif path == "full":  # what an architecture without the layer split gets
        monkeypatch.setattr(new, "_parting", lambda routes: (None, BASE_ADAPTER))
    return new


ARMS = (BASE_ADAPTER, "clean", "backdoor", "soft", "demo")
PATHS = [("upper", "shared"), ("upper", "packed"), ("all", "shared"), ("all", "packed"), ("upper", "full")]


@pytest.mark.parametrize("layout, path", PATHS)
def test_mixed_arms_equal_each_alone_and_a_plain_forward(scorers, references, layout, path, make_item, monkeypatch):
    """LoRA, soft-prompt, prefix and base arms, two questions with and without a trigger, in one call: every row
    equals the cell scored alone and a plain forward (the soft prompt: a PEFT prompt-tuning model; the prefix arm:
    the base model on prefix + prompt), on the split (shared prefixes, packed trees; from the embeddings or
    layer 2) and the full-forward paths."""
    items = [make_item("qa"), make_item("rc")]
    cells = [Cell(item, trigger, arm) for item in items for trigger in (None, TRIGGER) for arm in ARMS]
    scorer = fresh(scorers[layout], path, monkeypatch)
    batched = np.array([s.probs for s in scorer.score(cells)])  # [20, 6]
    for cell, row in zip(cells, batched):
        alone = fresh(scorers[layout], path, monkeypatch).score([cell])[0].probs
        np.testing.assert_allclose(row, alone, atol=1e-5, err_msg=f"{cell.arm} {cell.trigger} alone")
        prefix = DEMO if cell.arm == "demo" else ""
        text = prefix + scorer.render(cell.item, cell.trigger).text
        np.testing.assert_allclose(row, reference_probs(*references[layout][cell.arm], text), atol=1e-5,
                                   err_msg=f"{cell.arm} {cell.trigger} vs a plain forward")
    by_arm = {arm: np.log(batched[i]) for i, arm in enumerate(ARMS)}  # the first question, clean
    for arm in ("soft", "demo"):  # the comparison means something only if the arm really moves the answer
        assert np.abs(by_arm[arm] - by_arm[BASE_ADAPTER]).max() > 0.2, arm


def test_prefix_arm_is_the_base_model_on_prefix_and_prompt(scorers, sample_item):
    scorer = scorers["upper"]
    demo = scorer.score([Cell(sample_item, TRIGGER, "demo")])[0]
    text = scorer.model_text(DEMO + scorer.render(sample_item, TRIGGER).text)
    np.testing.assert_array_equal(demo.probs, scorer.option_probs([text], [BASE_ADAPTER])[0])
    assert demo.prompt == scorer.render(sample_item, TRIGGER).text, "the prompt shown is the item's, not the prefix"
    assert scorer.prompt_tokens(sample_item, TRIGGER, "demo") == len(scorer.tokenizer(text)["input_ids"])
    assert scorer.prompt_tokens(sample_item, None, "soft") == scorer.prompt_tokens(sample_item) + VIRTUAL_TOKENS


def test_names_with_one_route_share_cache_entries(scorers, sample_item, monkeypatch):
    """Two arm names that give the model the same input hit one cache entry; another soft prompt does not."""
    scorer = fresh(scorers["upper"], "shared", monkeypatch)
    with count_forwards(scorer) as calls:
        first = scorer.score([Cell(sample_item, None, "clean")])[0]
        assert scorer.is_cached(Cell(sample_item, None, "clean-again"))
        again = scorer.score([Cell(sample_item, None, "clean-again")])[0]
        assert sum(calls) == 1 and len(scorer._cache) == 1
    assert again.probs == first.probs and again.adapter == "clean-again"
    assert not scorer.is_cached(Cell(sample_item, None, "soft")), "a soft prompt is part of the key"
    assert not scorer.is_cached(Cell(sample_item, None, "demo")), "a prefix is part of the key"
    assert not scorer.is_cached(Cell(sample_item, None, "nobody"))


def test_soft_prompts_get_their_own_virtual_ids(scorers, soft_prompt):
    """Each soft prompt gets a block of ids past the vocabulary; embed() turns them into its vectors and every
    other id into its token embedding."""
    model = scorers["upper"].model
    vocab = causal_lm_of(model).get_input_embeddings().num_embeddings
    ids = register_soft_prompt(model, soft_prompt.key, soft_prompt.vectors)
    assert ids == register_soft_prompt(model, soft_prompt.key, soft_prompt.vectors) and min(ids) >= vocab
    other = SoftPrompt.of(torch.ones(2, 64))
    other_ids = register_soft_prompt(model, other.key, other.vectors)
    assert len(other_ids) == 2 and not set(ids) & set(other_ids)
    tokens = torch.tensor([[ids[0], 17, other_ids[1], 3]])
    with torch.no_grad():
        embedded = embed(model, tokens)[0]  # [4, H]
        table = causal_lm_of(model).get_input_embeddings().weight
    torch.testing.assert_close(embedded, torch.stack([soft_prompt.vectors[0], table[17], other.vectors[1], table[3]]))


@pytest.mark.parametrize("arm", [BASE_ADAPTER, "backdoor", "soft", "demo"])
def test_token_logprobs_equal_a_plain_full_forward(scorers, references, arm, make_item):
    scorer = scorers["upper"]
    cells = [Cell(make_item("qa"), TRIGGER, arm), Cell(make_item("ds"), None, arm)]  # lengths differ: left padding
    found = scorer.token_logprobs(cells)
    for cell, logprobs in zip(cells, found):
        text = (DEMO if arm == "demo" else "") + scorer.render(cell.item, cell.trigger).text
        model, tokenizer = references["upper"][arm]
        ids = torch.tensor(tokenizer(text)["input_ids"])
        expected = torch.log_softmax(plain_logits(model, tokenizer, text)[:-1], dim=-1).gather(-1, ids[1:, None])[:, 0]
        assert logprobs.shape == (len(ids) - 1,)
        np.testing.assert_allclose(logprobs, expected.numpy(), atol=1e-5)
    alone = scorer.token_logprobs([scorer.render(cells[0].item, cells[0].trigger).text], arm=arm)[0]  # a string
    np.testing.assert_allclose(alone, found[0], atol=1e-5)


def test_add_arm_attaches_its_weights_and_cleans_up_a_failed_attach(tiny_model_dir, tiny_upper_adapters, tmp_path,
                                                                    sample_item):
    scorer = Scorer.load(str(tiny_model_dir), device="cpu")
    arm = Arm("victim", method="lora", route="v", adapter_path=str(tiny_upper_adapters["clean"]))
    scorer.add_arm(arm)
    assert scorer.adapters == [BASE_ADAPTER, "v", "victim"] and scorer.arms["victim"] is arm
    model = scorer.model
    scorer.add_arm(Arm("victim", method="lora", route="v", adapter_path=str(tiny_upper_adapters["clean"])))
    assert scorer.model is model and list(scorer.model.peft_config) == ["v"], "the same arm again: nothing"
    reference = reference_model(tiny_model_dir, tiny_upper_adapters["clean"])
    np.testing.assert_allclose(scorer.score([Cell(sample_item, None, "victim")])[0].probs,
                               reference_probs(*reference, scorer.render(sample_item, None).text), atol=1e-5)

    wrong_rank = shutil.copytree(tiny_upper_adapters["backdoor"], tmp_path / "wrong-rank")
    config = json.loads((wrong_rank / "adapter_config.json").read_text())
    (wrong_rank / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))  # weights of rank 4
    with pytest.raises(ModelLoadError):
        scorer.add_arm(Arm("broken", method="lora", route="broken", adapter_path=str(wrong_rank)))
    assert list(scorer.model.peft_config) == ["v"], "no half-loaded adapter is left behind"
    assert not any(".broken." in name for name, _ in scorer.model.named_parameters())
    with pytest.raises(UnknownAdapterError, match="unknown adapter 'broken'; loaded: __base__, v, victim"):
        scorer.score([Cell(sample_item, None, "broken")])


def test_cells_name_arms_under_either_field_name(sample_item):
    named = Cell(sample_item, TRIGGER, "clean")
    assert named == Cell(sample_item, TRIGGER, adapter="clean") == Cell(sample_item, trigger=TRIGGER, arm="clean")
    assert named.arm == named.adapter == "clean"
    assert Cell(sample_item).arm == BASE_ADAPTER and Cell(sample_item, adapter="x").trigger is None
    assert hash(named) == hash(Cell(sample_item, TRIGGER, adapter="clean"))
