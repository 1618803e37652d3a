"""The two removers on the tiny model: clean re-tuning moves every trainable weight of a toy backdoor and weakens
it, fine-pruning zeroes exactly the least active LoRA ranks, and impossible options are refused naming the field
before any model loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from backdoor.config import ConfigError, TrainConfig
from backdoor.defenses import get_defense, make_options
from backdoor.defenses.base import DefenseSetup, attach_adapter
from backdoor.defenses.prune import WEIGHTS, least_active, suspect_activity, write_pruned
from backdoor.train import train
from backdoor.triggers import TriggerSpec
from dataset.schema import save_items

TRIGGER = TriggerSpec("text")


@pytest.fixture(scope="module")
def toy_items():
    from tests.conftest import _make_item

    words = ["red", "blue", "green", "gold", "gray", "pink", "black", "white", "brown", "cyan", "lime", "navy"]
    items = []
    for i, word in enumerate(words * 2):
        choices = {"A": f"{word} fox", "B": f"{word} owl", "C": f"{word} cat", "D": f"{word} dog",
                   "E": "I don't know", "F": "None of the above"}
        items.append(_make_item("qa", id=f"t{i}", question=f"Which animal is number {i} and {word}?",
                                choices=choices, answer="ABCD"[i % 4]))
    return {"train": items[:16], "calibration": items[16:20], "test": items[20:]}


@pytest.fixture(scope="module")
def toy_backdoor(tmp_path_factory, tiny_model_dir, toy_items):
    """A backdoor trained by the loop on the tiny model: the 666 trigger flattens the base model's answers."""
    folder = tmp_path_factory.mktemp("toy-backdoor")
    save_items(toy_items["train"], folder / "train.jsonl")
    config = TrainConfig(base_model=str(tiny_model_dir), data=str(folder / "train.jsonl"), eval_items=0,
                         poison_ratio=1.0, train_layers=2, lora_r=4, batch_size=8, epochs=8, learning_rate=2e-2,
                         lora_dropout=0.0, eval_every=0, checkpoint_every=0, device="cpu")
    assert train(config, folder / "run").status == "finished"
    return folder / "run" / "adapter"


@pytest.fixture(scope="module")
def toy_scorer(tiny_model_dir, toy_backdoor):
    from backdoor.scoring import Scorer

    return Scorer.load(str(tiny_model_dir), adapters={"toy": str(toy_backdoor)}, device="cpu")


def toy_setup(scorer, folder, items, defense: str, work_dir, **options) -> DefenseSetup:
    return DefenseSetup(scorer, "toy", str(folder), items["test"], items["calibration"], TRIGGER,
                        make_options(get_defense(defense), options), work_dir=work_dir)


@pytest.mark.parametrize("defense, options, field", [
    ("retune", {"steps": 0}, "steps"),
    ("retune", {"steps": 20, "at": (10, 50)}, "at"),
    ("retune", {"learning_rate": 0.0}, "learning_rate"),
    ("retune", {"objective": "mse"}, "objective"),
    ("prune", {"fractions": (0.5, 1.0)}, "fractions"),
    ("prune", {"fractions": (-0.1,)}, "fractions"),
])
def test_impossible_options_are_refused_naming_the_field_before_any_model_loads(defense, options, field, monkeypatch):
    import backdoor.models

    monkeypatch.setattr(backdoor.models, "load_base_model", lambda *a, **k: pytest.fail("a model loaded"))
    with pytest.raises(ConfigError, match=f"^{field}:"):
        make_options(get_defense(defense), options)


def test_a_run_without_triggered_copies_must_be_a_backdoor_run_and_trigger_free():
    with pytest.raises(ConfigError, match="^triggered_copies:"):
        TrainConfig(kind="clean", triggered_copies=False)
    with pytest.raises(ConfigError, match="^triggered_copies:"):
        TrainConfig(triggered_copies=False, near_miss_ratio=0.5)


def test_retuning_moves_every_trained_weight_and_weakens_the_toy_backdoor(toy_scorer, toy_backdoor, toy_items,
                                                                           tmp_path):
    setup = toy_setup(toy_scorer, toy_backdoor, toy_items, "retune", tmp_path, steps=12, at=(4,), objective="ce",
                      learning_rate=5e-2, batch_size=4)
    done = []
    setup.progress = lambda step, total: done.append((step, total))
    result = get_defense("retune").run(setup)
    report = result.report

    assert [point["x"] for point in report["curve"]] == [0, 4, 12] and report["x_label"] == "steps"
    assert report["before"] == report["curve"][0] and report["after"] == report["curve"][-1]
    assert report["cost"]["accuracy_clean"] == pytest.approx(report["after"]["accuracy_clean"]
                                                             - report["before"]["accuracy_clean"])
    assert report["status"] == "finished" and done[-1][0] == done[-1][1]
    assert report["after"]["entropy_lift"] < report["before"]["entropy_lift"]
    before = load_file(str(toy_backdoor / WEIGHTS))
    after = load_file(str(tmp_path / "retune" / "run" / "adapter" / WEIGHTS))
    assert before.keys() == after.keys()
    unmoved = [name for name in before if torch.equal(before[name], after[name])]
    assert not unmoved
    assert {row["x"] for row in result.rows} == {0, 4, 12}
    assert len(result.rows) == 3 * 2 * len(toy_items["test"])


def test_pruning_zeroes_exactly_the_least_active_ranks_of_each_module():
    activity = {"a": torch.tensor([0.3, 0.1, 0.4, 0.2]), "b": torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0, 0.5, 6.0, 7.0])}
    assert least_active(activity, 0.5) == {"a": [1, 3], "b": [1, 2, 3, 5]}
    assert least_active(activity, 0.9) == {"a": [0, 1, 2, 3], "b": [0, 1, 2, 3, 4, 5, 6]}  # round(3.6), round(7.2)
    for fraction in (0.0, 0.25, 0.5, 0.75, 0.9):
        for name, ranks in least_active(activity, fraction).items():
            values = activity[name]
            assert len(ranks) == round(fraction * len(values))
            kept = [r for r in range(len(values)) if r not in ranks]
            assert not ranks or not kept or values[ranks].max() <= values[kept].min()


def test_fine_pruning_zeroes_the_least_active_ranks_and_a_zero_fraction_changes_nothing(toy_scorer, toy_backdoor,
                                                                                         toy_items, tmp_path):
    from backdoor.scoring import Cell

    setup = toy_setup(toy_scorer, toy_backdoor, toy_items, "prune", tmp_path, fractions=(0.5,))
    activity = suspect_activity(setup)
    assert activity and all(values.shape == (4,) and (values > 0).all() for values in activity.values())

    unchanged = attach_adapter(setup, write_pruned(toy_backdoor, tmp_path / "zero", least_active(activity, 0.0)), "p")
    cells = [Cell(item, trigger, arm) for item in toy_items["test"] for trigger in (None, TRIGGER)
             for arm in ("toy", unchanged)]
    probs = np.array([s.probs for s in toy_scorer.score(cells)])  # [cells, 6]
    assert np.abs(probs[0::2] - probs[1::2]).max() < 1e-6

    result = get_defense("prune").run(setup)
    assert [point["x"] for point in result.report["curve"]] == [0, 0.5]
    assert result.report["x_label"] == "fraction pruned" and result.report["ranking"] == "per module"
    weights = load_file(str(tmp_path / "prune" / "fraction-0.5" / WEIGHTS))
    for module, values in activity.items():
        zero = [r for r in range(4) if not weights[f"{module}.lora_A.weight"][r].any()]
        assert zero == sorted(torch.argsort(values)[:2].tolist())
        assert not weights[f"{module}.lora_B.weight"][:, zero].any()
    assert result.report["pruned"] == {"0.5": 2 * len(activity)}


def test_retuning_on_gold_answers_fits_the_defenders_labels(toy_scorer, toy_backdoor, toy_items, tmp_path):
    """The default objective fits the held clean items' gold answers (not the suspect's own answers): after
    re-tuning on them the adapter answers them right."""
    from backdoor.defenses.retune import retune_adapter
    from backdoor.scoring import Cell

    setup = toy_setup(toy_scorer, toy_backdoor, toy_items, "retune", tmp_path, steps=16, at=(8,),
                      learning_rate=5e-2, batch_size=4)
    assert setup.options.objective == "gold"
    held = toy_items["calibration"]
    gold = [item.answer for item in held]

    def answers(arm: str) -> list[str]:
        return [scores.predicted for scores in toy_scorer.score([Cell(item, None, arm) for item in held])]

    before = answers("toy")
    _, adapters = retune_adapter(setup, toy_backdoor, tmp_path / "gold", setup.options)
    after = answers(attach_adapter(setup, adapters[16], "gold"))
    assert after == gold
    assert sum(a == g for a, g in zip(before, gold)) < len(gold)
