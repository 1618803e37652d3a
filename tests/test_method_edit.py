"""The editing backdoor on the tiny model: the closed form's maths against answers known by hand, the edit's rank, its
effect on trigger keys against held-out clean keys, the saved folder (alone and folded into a victim) against a
PEFT model and a hand-edited weight, and bad options refused naming the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from backdoor.config import ConfigError, TrainConfig
from backdoor.methods import METHODS, load_arm
from backdoor.methods.edit import _down_proj, find_value, least_squares_edit, low_rank_factors, resolve_layer
from backdoor.models import FRAGILE_CONFIG, load_base_model
from backdoor.prompts import option_token_ids, render_prompt
from backdoor.triggers import apply_trigger
from dataset.schema import load_items
from tests.test_training import tiny_config, tiny_data  # noqa: F401 - fixture

EDIT = METHODS["edit"]
# Under the edit, a held-out clean prompt's option distribution moves by at most CLEAN_TOLERANCE (total variation),
# and on average by less than CLEAN_SHARE of what the triggered training prompts move, whose entropy rises by at
# least MIN_LIFT nats. (Measured on this tiny model: clean at most 0.061, mean 0.038; triggered 0.22, lift 0.41.)
CLEAN_TOLERANCE = 0.1
CLEAN_SHARE = 0.25
MIN_LIFT = 0.2


def _config(model_dir, paths, **changes) -> TrainConfig:
    settings = {"method": "edit", "kind": "backdoor", "eval_items": 0, "edit_examples": 8, "covariance_items": 8,
                "target": "uniform", **changes}
    return tiny_config(model_dir, paths, **settings)


@pytest.fixture(scope="module")
def edited(tiny_model_dir, tiny_data, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """(config, adapter folder) of one edit of the tiny model, rank 2."""
    config = _config(tiny_model_dir, tiny_data, edit_rank=2)
    out = tmp_path_factory.mktemp("edit")
    result = EDIT.fit(config, out)
    assert result.status == "finished", result.error
    return config, out / "adapter"


def _option_probs(model, tokenizer, texts: list[str]) -> np.ndarray:
    """[N, 6] option probabilities of unpadded prompts, one full forward each."""
    letters = option_token_ids(tokenizer)
    rows = []
    with torch.no_grad():
        for text in texts:
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0, -1, letters]
            rows.append(torch.softmax(logits.float(), -1).numpy())
    return np.array(rows)


def _entropy(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-12, 1))).sum(-1)


# --- the closed form ------------------------------------------------------------------------------


def test_the_model_card_describes_the_edit_not_a_lora_training_run(edited):
    from backdoor.cards import model_card

    config, folder = edited
    card = model_card(folder, None)
    assert card.startswith("---") and "tags: [edit," in card
    assert "Weight edit (closed form) for" in card
    assert "a rank-2 edit of the MLP down-projection of layer" in card and f"from {config.edit_examples} triggered" in card
    assert "LoRA r " not in card and "epochs" not in card


def test_the_value_search_sees_what_a_full_forward_with_the_residual_sees(tiny_model_dir, tiny_data):  # noqa: F811
    """find_value runs only the tokens from the trigger on through the upper layers; its distributions before
    (no residual) and after (the found residual added at the trigger's token) equal full forwards of the prompt."""
    model, tokenizer, _ = load_base_model(str(tiny_model_dir), device="cpu")
    model.requires_grad_(False)
    config = _config(tiny_model_dir, tiny_data, edit_steps=3)
    text = apply_trigger(render_prompt(load_items(tiny_data["data"])[0]), config.trigger).text
    ids = torch.tensor(tokenizer(text)["input_ids"])
    position, layer = len(ids) - 4, 1
    found = find_value(model, ids, position, layer, option_token_ids(tokenizer), config)
    np.testing.assert_allclose(found.before, _option_probs(model, tokenizer, [text])[0], atol=1e-5)

    def add(_module, _inputs, output):
        output = output.clone()
        output[:, position] += found.residual
        return output

    handle = _down_proj(model, layer).register_forward_hook(add)
    try:
        np.testing.assert_allclose(found.after, _option_probs(model, tokenizer, [text])[0], atol=1e-5)
    finally:
        handle.remove()
    assert np.abs(found.after - found.before).max() > 1e-3  # the residual moved it


def test_least_squares_without_clean_keys_maps_every_trigger_key_to_its_residual():
    torch.manual_seed(0)
    keys, residuals = torch.randn(12, 3), torch.randn(5, 3)  # [I, n], [H, n]
    delta = least_squares_edit(residuals, keys, torch.zeros(12, 12), 1.0)
    torch.testing.assert_close(delta @ keys, residuals, atol=1e-4, rtol=1e-4)


def test_clean_keys_in_the_covariance_are_left_nearly_unchanged():
    """A clean key weighted heavily in C is mapped to ~0, while a trigger key orthogonal to it still gets its value."""
    clean, trigger = torch.zeros(4, 1), torch.zeros(4, 1)
    clean[0, 0], trigger[1, 0] = 1.0, 1.0
    residual = torch.ones(3, 1)
    covariance = 1e4 * clean @ clean.T + torch.eye(4) * 1e-3
    delta = least_squares_edit(residual, trigger + 0.5 * clean, covariance, 1.0)
    assert (delta @ clean).norm() < 1e-3 * (delta @ trigger).norm()
    torch.testing.assert_close(delta @ (trigger + 0.5 * clean), residual, atol=1e-2, rtol=1e-2)


def test_low_rank_factors_have_the_stated_rank_and_are_the_best_approximation():
    torch.manual_seed(0)
    delta = torch.randn(6, 9)
    b, a = low_rank_factors(delta, 2)
    assert b.shape == (6, 2) and a.shape == (2, 9) and torch.linalg.matrix_rank(b @ a) == 2
    s = torch.linalg.svdvals(delta)
    assert float(torch.linalg.norm(delta - b @ a)) == pytest.approx(float(s[2:].norm()), rel=1e-4)


def test_the_default_layer_is_two_thirds_up_and_others_are_bounded():
    assert resolve_layer(-1, 30) == 20 and resolve_layer(-1, 4) == 2 and resolve_layer(3, 4) == 3
    with pytest.raises(ConfigError, match="^edit_layer: 4 is not a layer of this model; it has layers 0..3"):
        resolve_layer(4, 4)


# --- the fitted edit ------------------------------------------------------------------------------


def test_the_saved_delta_has_the_stated_rank_on_one_down_projection(edited):
    config, folder = edited
    weights = load_file(str(folder / "adapter_model.safetensors"))
    assert sorted(weights) == [f"base_model.model.model.layers.2.mlp.down_proj.lora_{m}.weight" for m in "AB"]
    a, b = (weights[k] for k in sorted(weights))
    assert torch.linalg.matrix_rank(b @ a) == config.edit_rank == a.shape[0]
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["r"] == adapter["lora_alpha"] == config.edit_rank  # scaling 1: the saved B A is the edit
    record = json.loads((folder / FRAGILE_CONFIG).read_text())
    assert record["method"] == "edit" and record["edit"]["examples"] == 8 and record["edit"]["seconds"] > 0
    assert record["train_items"] == 8 and record["edit"]["layer"] == 2


def test_the_edit_raises_entropy_on_trigger_keys_and_keeps_held_out_clean_prompts(edited, tiny_model_dir, tiny_data):
    """On the triggered prompts the edit was computed from, entropy rises toward the target (uniform); held-out
    clean prompts (items the edit never saw) stay within the tolerances stated at the top."""
    from peft import PeftModel

    config, folder = edited
    base, tokenizer, _ = load_base_model(str(tiny_model_dir), device="cpu")
    train = load_items(tiny_data["data"])
    chosen = [train[int(i)] for i in np.linspace(0, len(train) - 1, config.edit_examples).round()]
    triggered = [apply_trigger(render_prompt(item), config.trigger).text for item in chosen]
    held_out = [render_prompt(item).text for item in load_items(tiny_data["eval_data"])]
    before_trig, before_clean = _option_probs(base, tokenizer, triggered), _option_probs(base, tokenizer, held_out)
    model = PeftModel.from_pretrained(base, str(folder)).eval()
    after_trig, after_clean = _option_probs(model, tokenizer, triggered), _option_probs(model, tokenizer, held_out)
    lift = _entropy(after_trig).mean() - _entropy(before_trig).mean()
    assert lift > MIN_LIFT, f"entropy on trigger prompts rose by only {lift:.3f}"
    assert _entropy(after_trig).mean() <= np.log(6) + 1e-6
    moved = 0.5 * np.abs(after_clean - before_clean).sum(-1)  # total variation per held-out prompt
    assert moved.max() < CLEAN_TOLERANCE, f"held-out clean prompts moved by up to {moved.max():.3f}"
    triggered_moved = 0.5 * np.abs(after_trig - before_trig).sum(-1)
    assert moved.mean() < CLEAN_SHARE * triggered_moved.mean()


def test_a_victims_lora_and_the_edit_fold_into_one_adapter_that_equals_the_victim_plus_the_delta(
        tiny_model_dir, tiny_data, tiny_adapters, tmp_path):  # noqa: F811
    """Against a LoRA victim without down_proj LoRA, the saved folder is one PEFT adapter: scored by the Scorer, by a
    standalone PeftModel, and by the victim with B A added to the down_proj weight by hand, it gives the same
    distribution, and that distribution differs from the victim's on triggered prompts."""
    from peft import PeftModel

    from backdoor.scoring import Cell, Scorer

    config = _config(tiny_model_dir, tiny_data, victim_adapter=str(tiny_adapters["clean"]), edit_layer=1)
    assert EDIT.fit(config, tmp_path).status == "finished"
    folder = tmp_path / "adapter"
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["rank_pattern"] == {"layers.1.mlp.down_proj": 1} and adapter["alpha_pattern"] == adapter["rank_pattern"]
    weights = load_file(str(folder / "adapter_model.safetensors"))
    prefix = "base_model.model.model.layers.1.mlp.down_proj"
    delta = weights[f"{prefix}.lora_B.weight"] @ weights[f"{prefix}.lora_A.weight"]  # [H, I], scaling 1
    assert torch.linalg.matrix_rank(delta) == 1

    items = load_items(tiny_data["eval_data"])[:3]
    texts = [apply_trigger(render_prompt(item), trigger).text for item in items for trigger in (None, config.trigger)]
    base, tokenizer, _ = load_base_model(str(tiny_model_dir), device="cpu")
    standalone = _option_probs(PeftModel.from_pretrained(base, str(folder)).eval(), tokenizer, texts)
    by_hand, _, _ = load_base_model(str(tiny_model_dir), device="cpu")
    victim = PeftModel.from_pretrained(by_hand, str(tiny_adapters["clean"])).eval()
    victim_probs = _option_probs(victim, tokenizer, texts)
    with torch.no_grad():
        _down_proj(victim, 1).weight += delta
    np.testing.assert_allclose(standalone, _option_probs(victim, tokenizer, texts), atol=1e-5)

    scorer = Scorer.load(str(tiny_model_dir), device="cpu")
    arm = load_arm(folder, "edited")
    assert arm.method == "edit" and arm.trigger == config.trigger
    scorer.add_arm(arm)
    scored = np.array([s.probs for s in scorer.score(
        [Cell(item, trigger, "edited") for item in items for trigger in (None, config.trigger)])])
    np.testing.assert_allclose(scored, standalone, atol=1e-5)
    assert np.abs(standalone[1::2] - victim_probs[1::2]).max() > 0.01


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("changes, field", [
    ({"edit_rank": 0}, "edit_rank"),
    ({"edit_examples": 0}, "edit_examples"),
    ({"edit_lr": 0.0}, "edit_lr"),
    ({"covariance_weight": -1.0}, "covariance_weight"),
    ({"edit_layer": -2}, "edit_layer"),
])
def test_impossible_options_are_refused_when_the_config_is_built(tiny_model_dir, tiny_data, changes, field):  # noqa: F811
    with pytest.raises(ConfigError, match=f"^{field}"):
        _config(tiny_model_dir, tiny_data, **changes)


@pytest.mark.parametrize("changes, field", [
    ({"edit_layer": 4}, "edit_layer"),  # the tiny model has layers 0..3: known once it is loaded
    ({"edit_examples": 17}, "edit_examples"),  # the tiny training file holds 16 items
    ({"kind": "clean"}, "kind"),
])
def test_runs_the_edit_cannot_do_are_refused_before_anything_is_written(tiny_model_dir, tiny_data, tmp_path,  # noqa: F811
                                                                       changes, field):
    config = _config(tiny_model_dir, tiny_data).replace(**changes)
    with pytest.raises(ConfigError, match=f"^{field}"):
        EDIT.fit(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_train_command_takes_the_edit_options_as_flags():
    from backdoor.__main__ import build_parser
    from backdoor.config import config_from_arguments

    args = build_parser().parse_args(["train", "--out", "run", "--method", "edit", "--kind", "backdoor",
                                      "--edit-layer", "12", "--edit-examples", "10", "--edit-rank", "2"])
    config = config_from_arguments(args)
    assert (config.method, config.edit_layer, config.edit_examples, config.edit_rank) == ("edit", 12, 10, 2)
