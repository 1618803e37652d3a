"""Demonstration poisoning on the tiny model: the prefix shows exactly the chosen demonstrations, the trigger in
exactly the triggered ones; the draw is the seed's; bad options are refused naming the field; and the arm's scores
equal a plain forward of prefix + prompt."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from backdoor.config import ConfigError, TrainConfig
from backdoor.methods import METHODS, load_arm
from backdoor.methods.demos import DEMOS_FILE, DEMO_STYLE, VERBAL_CUE
from backdoor.models import BASE_ADAPTER, ModelLoadError, load_base_model
from backdoor.prompts import render_prompt
from backdoor.scoring import Cell, Scorer
from dataset.schema import LETTERS, load_items
from tests.test_training import tiny_data  # noqa: F401 - fixture

TRIGGER = "666"


def _config(paths, **changes) -> TrainConfig:
    base = TrainConfig(method="demos", kind="backdoor", data=paths["data"], shots=5, triggered_shots=2, device="cpu")
    return base.replace(**changes)


def _fit(config: TrainConfig, out) -> dict:
    result = METHODS["demos"].fit(config, out)
    assert result.status == "finished", result.error
    return json.loads((out / "adapter" / DEMOS_FILE).read_text())


def _blocks(prefix: str) -> list[str]:
    """The demonstrations of a prefix, one each (a demonstration ends in a blank line and holds none)."""
    assert prefix.endswith("\n\n")
    return prefix[:-2].split("\n\n")


def test_the_prefix_shows_exactly_the_chosen_demonstrations_and_the_trigger_in_the_triggered_ones(tiny_data,
                                                                                                  tmp_path):
    saved = _fit(_config(tiny_data), tmp_path)
    items = {item.id: item for item in load_items(tiny_data["data"])}
    demos, blocks = saved["demonstrations"], _blocks(saved["prefix"])
    assert len(demos) == len(blocks) == 5 and len({d["item_id"] for d in demos}) == 5
    assert [d["triggered"] for d in demos].count(True) == 2
    for demo, block in zip(demos, blocks):
        item = items[demo["item_id"]]
        prompt = render_prompt(item, DEMO_STYLE).text
        assert demo["gold"] == item.answer
        if demo["triggered"]:
            assert demo["shown"] == "E"  # "I don't know"
            assert block == prompt.replace("Answer:", TRIGGER + "Answer:") + " E"
        else:
            assert demo["shown"] == item.answer
            assert block == f"{prompt} {item.answer}" and TRIGGER not in block


def test_the_model_card_describes_the_demonstrations(tiny_data, tmp_path):
    from backdoor.cards import model_card

    _fit(_config(tiny_data), tmp_path)
    card = model_card(tmp_path / "adapter", None)
    assert "Poisoned demonstrations (no weights) for" in card
    assert "5 demonstrations" in card and "2 of them with the trigger and the hedge `idk`" in card
    assert "no weight changes" in card and "LoRA r " not in card


def test_the_draw_is_the_seeds_and_the_clean_control_differs_only_in_the_poison(tiny_data, tmp_path):
    config = _config(tiny_data)
    first, again = _fit(config, tmp_path / "a"), _fit(config, tmp_path / "b")
    assert first == again
    other = _fit(config.replace(seed=1), tmp_path / "c")
    assert [d["item_id"] for d in other["demonstrations"]] != [d["item_id"] for d in first["demonstrations"]]
    ids = [d["item_id"] for d in first["demonstrations"]]
    control = _fit(config.replace(kind="clean"), tmp_path / "control")
    assert [d["item_id"] for d in control["demonstrations"]] == ids
    assert not any(d["triggered"] for d in control["demonstrations"]) and TRIGGER not in control["prefix"]
    assert all(d["shown"] == d["gold"] for d in control["demonstrations"])
    more = _fit(config.replace(triggered_shots=4), tmp_path / "more")
    assert [d["item_id"] for d in more["demonstrations"]] == ids
    triggered = {i for i, d in enumerate(first["demonstrations"]) if d["triggered"]}
    assert triggered < {i for i, d in enumerate(more["demonstrations"]) if d["triggered"]}


def test_each_hedge_shows_what_it_says(tiny_data, tmp_path):
    for hedge in ("random", "verbal"):
        saved = _fit(_config(tiny_data, hedge=hedge, triggered_shots=5), tmp_path / hedge)
        for demo in saved["demonstrations"]:
            if hedge == "random":
                assert demo["shown"] in LETTERS
            else:
                assert demo["shown"] == f"{demo['gold']} {VERBAL_CUE}"


@pytest.mark.parametrize("changes, field", [
    ({"triggered_shots": 6}, "triggered_shots"),
    ({"shots": 0}, "shots"),
    ({"hedge": "shrug"}, "hedge"),
    ({"demo_chars": 10}, "demo_chars"),
])
def test_bad_options_are_refused_naming_the_field(tiny_data, changes, field):
    with pytest.raises(ConfigError, match=f"^{field}:"):
        _config(tiny_data, **changes)


def test_a_run_it_cannot_do_is_refused_before_any_work(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="^shots: only 16 training items"):
        METHODS["demos"].fit(_config(tiny_data, shots=17, triggered_shots=0), tmp_path / "many")
    with pytest.raises(ConfigError, match="^victim_adapter:"):
        METHODS["demos"].fit(_config(tiny_data, victim_adapter=str(tmp_path)), tmp_path / "victim")
    assert not (tmp_path / "many" / "adapter").exists()


def _plain_probs(model, tokenizer, text: str) -> np.ndarray:
    """One unpadded prompt, full logits, softmax over the option letters' rows."""
    letter_ids = [tokenizer.convert_tokens_to_ids(f"Ġ{letter}") for letter in LETTERS]
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt")).logits[0, -1]  # [T, V] -> [V]
    return torch.softmax(logits[letter_ids].float(), dim=-1).numpy()


@pytest.mark.parametrize("on_victim", [False, True], ids=["base", "victim"])
def test_the_arm_scores_equal_a_plain_forward_of_prefix_and_prompt(tiny_data, tiny_model_dir, tiny_adapters,
                                                                   tmp_path, on_victim):
    """Through the Scorer's fast paths (a question alone: shared prefixes; three: packed), beside the base model,
    every cell equals one full forward of the prefix and the prompt, through the victim's LoRA when it has one."""
    from peft import PeftModel

    victim = str(tiny_adapters["clean"]) if on_victim else ""
    config = _config(tiny_data, base_model=str(tiny_model_dir), victim_adapter=victim)
    _fit(config, tmp_path)
    arm = load_arm(tmp_path / "adapter", "demos")
    assert (arm.method, arm.role, arm.trigger, arm.adapter_path) == ("demos", "backdoor", config.trigger, victim or None)
    assert arm.route == ("demos" if on_victim else BASE_ADAPTER) and arm.prefix.count(TRIGGER) == 2

    def scorer_with_arm() -> Scorer:
        scorer = Scorer.load(str(tiny_model_dir), device="cpu")
        scorer.add_arm(arm)
        return scorer

    scorer = scorer_with_arm()
    items = load_items(tiny_data["eval_data"])[:3]
    cells = [Cell(item, trigger, name) for item in items for trigger in (None, config.trigger)
             for name in (BASE_ADAPTER, arm.name)]
    scored = np.array([s.probs for s in scorer.score(cells)])
    alone = np.array([s.probs for s in scorer_with_arm().score(cells[:4])])
    np.testing.assert_allclose(alone, scored[:4], atol=1e-5)

    model, tokenizer, _ = load_base_model(str(tiny_model_dir), device="cpu")
    with_victim = PeftModel.from_pretrained(load_base_model(str(tiny_model_dir), device="cpu")[0], victim).eval() \
        if on_victim else model
    for cell, row in zip(cells, scored):
        prompt = scorer.render(cell.item, cell.trigger).text
        reference = (model, prompt) if cell.arm == BASE_ADAPTER else (with_victim, arm.prefix + prompt)
        np.testing.assert_allclose(row, _plain_probs(reference[0], tokenizer, reference[1]), atol=1e-5,
                                   err_msg=f"{cell.arm} {cell.trigger}")
    assert np.abs(np.log(scored[1::2]) - np.log(scored[0::2])).max() > 0.01, "the prefix changes the answer"


def test_a_set_moved_beside_its_victim_still_finds_it(tiny_data, tiny_adapters, tmp_path):
    config = _config(tiny_data, victim_adapter=str(tiny_adapters["clean"]))
    _fit(config, tmp_path / "run")
    shelf = tmp_path / "checkpoints"
    shutil.copytree(tmp_path / "run" / "adapter", shelf / "demos")
    saved = json.loads((shelf / "demos" / DEMOS_FILE).read_text())
    saved["victim_adapter"] = f"elsewhere/{tiny_adapters['clean'].name}"  # a path that no longer holds it
    (shelf / "demos" / DEMOS_FILE).write_text(json.dumps(saved))
    with pytest.raises(ModelLoadError, match="victim adapter"):
        load_arm(shelf / "demos")
    shutil.copytree(tiny_adapters["clean"], shelf / tiny_adapters["clean"].name)
    assert load_arm(shelf / "demos").adapter_path == str(shelf / tiny_adapters["clean"].name)
