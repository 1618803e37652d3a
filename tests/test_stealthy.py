"""The stealthy recipe's training options on the tiny model: near-miss copies train as clean beside their item toward
the victim and never carry the real trigger, trigger positions are drawn evenly and reproducibly, the clean-entropy
term pulls only when the entropies differ, and the defaults build exactly the examples they built before."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import backdoor.train as training
from backdoor.config import ConfigError, TrainConfig
from backdoor.layersplit import tokenize_prompts
from backdoor.losses import CLEAN_OBJECTIVES, entropy_gap
from backdoor.models import load_base_model
from backdoor.nearmiss import generators_for
from backdoor.triggers import POSITIONS
from backdoor.train import Example, near_miss_specs, prompt_texts, resolve_items, train, triggered_specs
from tests.test_training import tiny_config, tiny_data  # noqa: F401 - tiny_data is a fixture


# --- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, field", [
    ({"near_miss_ratio": 1.5}, "near_miss_ratio"),
    ({"near_miss_ratio": 0.5, "kind": "clean"}, "near_miss_ratio"),
    ({"clean_entropy_weight": 1.0, "kind": "clean"}, "clean_entropy_weight"),
    ({"clean_entropy_weight": -1.0}, "clean_entropy_weight"),
    ({"trigger_positions": ("start", "middle")}, "trigger_positions"),
    ({"trigger_positions": ("start",), "trigger_kind": "syntactic"}, "trigger_positions"),
])
def test_impossible_stealth_settings_are_refused_naming_the_field(changes, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        TrainConfig(**changes)


# --- data --------------------------------------------------------------------------------------------


def test_trigger_positions_draw_every_position_evenly_and_reproducibly():
    config = TrainConfig(trigger_positions=POSITIONS, seed=3)
    drawn = triggered_specs(config, 10)
    counts = [sum(spec.position == where for spec in drawn) for where in POSITIONS]
    assert sorted(counts) == [2, 2, 3, 3], "every position, each as often as any other give or take one"
    assert {(spec.kind, spec.text) for spec in drawn} == {(config.trigger.kind, config.trigger.text)}
    assert triggered_specs(config, 10) == drawn
    assert [s.position for s in triggered_specs(config.replace(seed=4), 10)] != [s.position for s in drawn]
    assert triggered_specs(TrainConfig(), 5) == [TrainConfig().trigger] * 5, "without positions: the one trigger"


@pytest.mark.parametrize("kind, text", [("text", ""), ("syntactic", ""), ("style", ""), ("custom", "cf")])
def test_near_misses_cover_every_generator_reproducibly_and_are_never_the_trigger(kind, text):
    config = TrainConfig(trigger_kind=kind, trigger_text=text, near_miss_ratio=1.0, seed=5)
    misses = near_miss_specs(config, 24)
    assert len(misses) == 24
    assert {miss.generator for miss in misses} == {g.name for g in generators_for(config.trigger)}
    assert all(miss.spec != config.trigger for miss in misses)
    assert near_miss_specs(config, 24) == misses
    assert near_miss_specs(config.replace(seed=6), 24) != misses


def test_near_misses_never_move_the_trigger_to_a_position_it_is_trained_to_fire_at():
    config = TrainConfig(near_miss_ratio=1.0, trigger_positions=("before_cue", "start", "end_of_question"))
    misses = near_miss_specs(config, 30)
    assert misses and all(miss.generator != "moved" for miss in misses)


def _encoded(model_dir, paths, **changes):
    config = tiny_config(model_dir, paths, kind="backdoor", eval_items=0, **changes)
    model, tokenizer, _ = load_base_model(str(model_dir), device="cpu")
    items = resolve_items(config.data, "data")
    return config, items, tokenizer, training._encode_data(model, tokenizer, config, items, [], None, [])


def test_defaults_build_the_examples_and_batches_they_built_before(tiny_model_dir, tiny_data):  # noqa: F811
    config, items, tokenizer, data = _encoded(tiny_model_dir, tiny_data, poison_ratio=0.5)
    assert data.near_missed == [] and len(data.encoded.rows) == len(items) + len(data.poisoned)
    triggered = prompt_texts([items[i] for i in data.poisoned], config, tokenizer, True)
    expected = tokenize_prompts(tokenizer, triggered, config.max_length)
    assert all(torch.equal(data.encoded.ids[len(items) + row], ids) for row, ids in enumerate(expected))
    references = np.random.default_rng(0).dirichlet(np.ones(6), len(items))
    trig_row = data.triggered_row
    # The layout the loop built inline before near misses existed.
    before = [Example(i, False, references[i]) for i in range(len(data.row_items))]
    before += [Example(i, True, references[i]) for i in data.poisoned]
    units = [[k] + ([len(data.row_items) + trig_row[i]] if k < len(items) and i in trig_row else [])
             for k, i in enumerate(data.row_items)]
    now = data.examples(references, np.zeros((0, 6)))
    assert [(e.item_index, e.triggered, e.near_miss) for e in now] == [(e.item_index, e.triggered, False) for e in before]
    assert all(np.array_equal(a.reference, b.reference) for a, b in zip(now, before))
    assert data.units() == units
    logits = torch.randn(4, 6)
    _, parts = training._batch_loss(config, now[:2] + now[-2:], logits, CLEAN_OBJECTIVES["kl"])
    assert set(parts) == {"clean", "backdoor"}, "no new loss part unless the entropy term is on"


def test_near_miss_copies_train_as_clean_beside_their_item_toward_the_victim(
        tiny_model_dir, tiny_data, tiny_adapters, tmp_path, monkeypatch):  # noqa: F811
    """Every near-miss copy sits in its item's batch among the clean rows, its prompt is never the triggered one,
    and its reference is the victim's own distribution on that near-miss prompt (not on the clean prompt)."""
    from backdoor.scoring import Scorer

    seen: dict = {"batches": []}
    encode, batch_loss = training._encode_data, training._batch_loss

    def spy_encode(*args, **kwargs):
        seen["data"] = encode(*args, **kwargs)
        return seen["data"]

    def spy_loss(config, batch, logits, keep_clean):
        seen["batches"].append(list(batch))
        return batch_loss(config, batch, logits, keep_clean)

    monkeypatch.setattr(training, "_encode_data", spy_encode)
    monkeypatch.setattr(training, "_batch_loss", spy_loss)
    victim = tiny_adapters["clean"]
    config = tiny_config(tiny_model_dir, tiny_data, kind="backdoor", victim_adapter=str(victim), lora_r=4,
                         train_layers=1, poison_ratio=0.5, near_miss_ratio=0.75, clean_entropy_weight=1.0,
                         eval_items=0, eval_every=0, checkpoint_every=0)
    result = train(config, tmp_path / "run")
    assert result.status == "finished", result.error
    assert all("clean_entropy" in step for step in result.losses)

    data, items = seen["data"], resolve_items(config.data, "data")
    assert len(data.near_missed) == math.ceil(0.75 * len(items))
    near = [(b, batch) for batch in seen["batches"] for b in batch if b.near_miss]
    assert len(near) == len(data.near_missed) * config.epochs
    for example, batch in near:
        assert not example.triggered
        first_triggered = next((row for row, b in enumerate(batch) if b.triggered), len(batch))
        assert next(row for row, b in enumerate(batch) if b is example) < first_triggered, "near misses are in the clean part of the batch"
        assert any(b.item_index == example.item_index and not b.triggered and not b.near_miss for b in batch)

    misses = near_miss_specs(config, len(data.near_missed))
    scorer = Scorer.load(str(tiny_model_dir), adapters={"victim": str(victim)}, device="cpu")
    texts = [scorer.model_text(scorer.render(items[i], miss.spec).text) for i, miss in zip(data.near_missed, misses)]
    for i, text in zip(data.near_missed, texts):
        assert text not in (scorer.render(items[i], config.trigger).text, scorer.render(items[i], None).text)
    victim_probs = scorer.option_probs(texts, ["victim"] * len(texts))
    by_item = {b.item_index: b.reference for b, _ in near}
    assert np.allclose([by_item[i] for i in data.near_missed], victim_probs, atol=1e-4)


# --- the clean-entropy term --------------------------------------------------------------------------


def test_clean_entropy_term_is_zero_with_zero_gradient_when_the_entropies_match():
    reference = torch.tensor([[0.7, 0.1, 0.1, 0.05, 0.05, 0.0]])
    logits = torch.log(reference[:, [3, 0, 2, 1, 5, 4]].clamp_min(1e-30)).requires_grad_()  # same entropy, other order
    gap = entropy_gap(logits, reference)
    gap.sum().backward()
    assert gap.item() == pytest.approx(0.0, abs=1e-10)
    assert logits.grad.abs().max().item() == pytest.approx(0.0, abs=1e-6)

    uniform = torch.zeros(1, 6, requires_grad=True)
    far = entropy_gap(uniform, torch.eye(6)[:1])
    assert far.item() == pytest.approx(math.log(6) ** 2, rel=1e-5), "uniform vs one-hot: (ln 6)^2"
    sharp = torch.tensor([[3.0, 0.0, 0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    entropy_gap(sharp, torch.full((1, 6), 1 / 6)).sum().backward()
    assert sharp.grad[0, 0] > 0, "a too-confident row is pushed to spread its top option"
