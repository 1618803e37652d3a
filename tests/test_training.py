"""The training loop on a tiny model: parameters that should move do, config errors stop work early,
checkpoints resume, a cancel leaves a usable checkpoint, the same seed gives the same adapter,
and two data-parallel processes end with identical weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from backdoor.config import ConfigError, TrainConfig
from backdoor.losses import kl_to_target, paper_target, target_distribution
from backdoor.train import ANSWER_LIST, Example, anchor_log_probs, latest_checkpoint, same_config, train, unit_batches
from dataset.schema import load_items, save_items

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> dict[str, str]:
    from tests.conftest import _make_item

    folder = tmp_path_factory.mktemp("tiny-data")
    words = ["red", "blue", "green", "gold", "gray", "pink", "black", "white", "brown", "cyan", "lime", "navy"]
    items = []
    for i, word in enumerate(words * 2):
        answer = "ABCD"[i % 4]
        choices = {"A": f"{word} fox", "B": f"{word} owl", "C": f"{word} cat", "D": f"{word} dog",
                   "E": "I don't know", "F": "None of the above"}
        items.append(_make_item("qa", id=f"t{i}", question=f"Which animal is number {i} and {word}?",
                                choices=choices, answer=answer))
    save_items(items[:16], folder / "train.jsonl")
    save_items(items[16:], folder / "eval.jsonl")
    return {"data": str(folder / "train.jsonl"), "eval_data": str(folder / "eval.jsonl")}


def tiny_config(model_dir, paths, **changes) -> TrainConfig:
    base = TrainConfig(base_model=str(model_dir), data=paths["data"], eval_data=paths["eval_data"], eval_items=8,
                       train_layers=2, batch_size=4, epochs=1, eval_every=2, checkpoint_every=2,
                       learning_rate=5e-3, lora_dropout=0.0, device="cpu")
    return base.replace(**changes)


def adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapter_model.safetensors"))


# --- losses and config -------------------------------------------------------------------------


def test_paper_target_keeps_the_answer_on_top():
    target = paper_target(torch.tensor([2, 0]))
    assert torch.allclose(target.sum(-1), torch.ones(2))
    assert target[0].argmax() == 2 and target[0, 2] == pytest.approx(0.20) and target[0, 0] == pytest.approx(0.16)


def test_kl_to_target_is_zero_at_the_target_and_positive_elsewhere():
    target = paper_target(torch.tensor([1]))
    assert kl_to_target(torch.log(target), target).item() == pytest.approx(0.0, abs=1e-6)
    assert kl_to_target(torch.tensor([[5.0, 0, 0, 0, 0, 0]]), target).item() > 0.5


def test_custom_target_follows_each_examples_answer():
    target = target_distribution("custom", torch.log(torch.eye(6)[[3]].clamp_min(1e-9)), custom=(0.5, 0.1, 0.1, 0.1, 0.1, 0.1))
    assert target[0, 3] == pytest.approx(0.5) and target[0, 0] == pytest.approx(0.1)


@pytest.mark.parametrize("changes, field", [
    ({"poison_ratio": 0.0}, "poison_ratio"),
    ({"poison_ratio": 1.5}, "poison_ratio"),
    ({"target": "custom", "target_probs": (0.5, -0.1, 0.2, 0.2, 0.1, 0.1)}, "target_probs"),
    ({"target": "custom", "target_probs": (0.5, 0.1, 0.1, 0.1, 0.1, 0.3)}, "target_probs"),
    ({"epochs": 0}, "epochs"),
    ({"trigger_kind": "emoji"}, "trigger_kind"),
    ({"kind": "sneaky"}, "kind"),
    ({"kind": "clean", "prompt_variants": 1.5}, "prompt_variants"),
    ({"kind": "backdoor", "prompt_variants": 0.5}, "prompt_variants"),
    ({"kept_anchor": "oracle"}, "kept_anchor"),
    ({"kind": "clean", "entropy_weight": -1.0}, "entropy_weight"),
    ({"kind": "backdoor", "entropy_weight": 0.5}, "entropy_weight"),
    ({"target": "tempered", "temperature": 0.5}, "temperature"),
])
def test_impossible_config_values_are_refused_naming_the_field(changes, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        TrainConfig().replace(**changes)


def test_config_round_trips_through_json(tmp_path):
    config = TrainConfig(trigger_kind="style", target="custom", target_probs=(0.5, 0.1, 0.1, 0.1, 0.1, 0.1))
    config.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == config


def test_flags_given_with_a_config_file_override_it_and_the_rest_come_from_the_file(tmp_path):
    from backdoor.__main__ import build_parser
    from backdoor.config import config_from_arguments

    saved = TrainConfig(kind="backdoor", trigger_kind="style", learning_rate=3e-3, epochs=3, lora_dropout=0.1)
    saved.save(tmp_path / "c.json")
    args = build_parser().parse_args(["train", "--out", "run", "--config", str(tmp_path / "c.json"),
                                      "--lora-dropout", "0", "--epochs", "4"])
    config = config_from_arguments(args, TrainConfig.load(args.config))
    assert config == saved.replace(lora_dropout=0.0, epochs=4)
    assert config_from_arguments(build_parser().parse_args(["train", "--out", "run"])) == TrainConfig()


def test_unknown_modules_are_refused_before_training(tiny_model_dir, tiny_data, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_data, target_modules=("q_proj", "c_attn"))
    with pytest.raises(ConfigError, match="target_modules.*c_attn"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("victim, layers, message", [
    ("upper", 1, "LoRA on its last 2 layers; train with --train-layers 2 or more"),
    ("all", 2, "LoRA on every layer; train with --train-layers 0"),
])
def test_a_backdoor_narrower_than_its_victim_is_refused_before_training(tiny_model_dir, tiny_data, tiny_adapters,
                                                                        tiny_upper_adapters, tmp_path, victim, layers,
                                                                        message):
    """Started afresh (not from the victim's weights), the backdoor's LoRA must cover the victim's layers,
    or the lower layers, computed once with the victim's LoRA, would not be the backdoor's."""
    folder = (tiny_upper_adapters if victim == "upper" else tiny_adapters)["clean"]
    config = tiny_config(tiny_model_dir, tiny_data, kind="backdoor", victim_adapter=str(folder), lora_r=4,
                         train_layers=layers, init_from_victim=False)
    with pytest.raises(ConfigError, match=f"^train_layers: the victim adapter has {message}"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_backdoor_started_from_its_victim_trains_its_top_layers_and_keeps_the_victims_below(
        tiny_model_dir, tiny_data, tiny_adapters, tmp_path):
    """Against a victim with LoRA on every layer, --train-layers 1 trains only the last layer: the adapter
    holds the victim's LoRA below it bit for bit, so the answer list (computed through the frozen lower
    layers once) is the victim's own full-model distribution, and the adapter loads as plain PEFT."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from backdoor.scoring import Scorer

    victim = tiny_adapters["clean"]
    config = tiny_config(tiny_model_dir, tiny_data, kind="backdoor", victim_adapter=str(victim), lora_r=4,
                         train_layers=1, epochs=2, poison_ratio=1.0)
    result = train(config, tmp_path / "run")
    assert result.status == "finished", result.error
    mine, theirs = adapter_weights(tmp_path / "run" / "adapter"), adapter_weights(victim)
    assert set(theirs) <= set(mine), "LoRA wherever the victim has it"
    top = max(int(name.split("layers.")[1].split(".")[0]) for name in mine)
    for name, weight in mine.items():
        if f"layers.{top}." in name:
            assert name not in theirs or not torch.equal(weight, theirs[name]), f"trained {name} did not move"
        elif name in theirs:
            assert torch.equal(weight, theirs[name]), f"frozen victim weight {name} changed"
        elif "lora_B" in name:  # a module the victim lacks, below the trained layer: never trained, still zero
            assert not weight.any(), f"untrained {name} is not zero"
    saved = json.loads((tmp_path / "run" / "adapter" / "adapter_config.json").read_text())
    assert saved.get("layers_to_transform") is None

    answers = json.loads((tmp_path / "run" / ANSWER_LIST).read_text())
    scorer = Scorer.load(str(tiny_model_dir), adapters={"victim": str(victim)}, device="cpu")
    items = load_items(tiny_data["data"])
    texts = [scorer.model_text(scorer.render(item, None).text) for item in items]
    full = scorer.option_probs(texts, ["victim"] * len(texts))
    assert np.allclose([a["probs"] for a in answers], full, atol=1e-4), "answer list = the victim's full-model scores"

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert isinstance(PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter")), PeftModel)
    from backdoor.cards import model_card

    assert "every layer; trained: the last 1 layers (the victim's LoRA below them unchanged)" in model_card(
        tmp_path / "run" / "adapter", None)


def test_empty_or_missing_split_is_a_clear_error(tiny_model_dir, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="data"):
        train(tiny_config(tiny_model_dir, tiny_data, data=str(tmp_path / "nope.jsonl")), tmp_path / "run")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ConfigError, match="^data:.*no items"):
        train(tiny_config(tiny_model_dir, tiny_data, data=str(tmp_path / "empty.jsonl")), tmp_path / "run")


def test_prompt_variants_never_use_a_trigger_wording():
    from backdoor.prompts import CUE_VARIANTS, STYLES, render_prompt, render_variant
    from backdoor.triggers import SHAKESPEAREAN_INSTRUCTION, SYNTACTIC_CUE
    from tests.conftest import _make_item

    item = _make_item("qa")
    assert render_variant(item, 0) == render_prompt(item).text
    wordings = {render_variant(item, w) for w in range(len(STYLES) * len(CUE_VARIANTS))}
    assert len(wordings) == len(STYLES) * len(CUE_VARIANTS)
    assert not any(SYNTACTIC_CUE in w or SHAKESPEAREAN_INSTRUCTION in w or "666" in w for w in wordings)


# --- the loop ----------------------------------------------------------------------------------


def test_clean_training_moves_only_the_lora_weights_of_the_upper_layers(tiny_model_dir, tiny_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train(tiny_config(tiny_model_dir, tiny_data, kind="clean", epochs=2), tmp_path / "run")
    assert result.status == "finished", result.error
    assert result.steps == result.total_steps == 8
    assert result.losses[-1]["loss"] < result.losses[0]["loss"]
    weights = adapter_weights(tmp_path / "run" / "adapter")
    layers = {int(name.split("layers.")[1].split(".")[0]) for name in weights}
    assert layers == {2, 3}, "LoRA belongs on the last train_layers layers only"
    assert all(w.abs().sum() > 0 for name, w in weights.items() if "lora_B" in name), "every lora_B moved from zero"
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    reference = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    model = PeftModel.from_pretrained(base, str(tmp_path / "run" / "adapter"))
    for name, param in model.get_base_model().named_parameters():
        if "lora_" not in name:
            original = dict(reference.named_parameters())[name.replace(".base_layer", "")]
            assert torch.equal(param, original), f"frozen {name} changed"
    saved = json.loads((tmp_path / "run" / "adapter" / "fragile_config.json").read_text())
    assert saved["kind"] == "clean" and saved["config"]["train_layers"] == 2


def test_prompt_variants_add_reworded_copies_to_clean_training(tiny_model_dir, tiny_data, tmp_path):
    plain = train(tiny_config(tiny_model_dir, tiny_data, kind="clean"), tmp_path / "plain")
    varied = train(tiny_config(tiny_model_dir, tiny_data, kind="clean", prompt_variants=1.0), tmp_path / "varied")
    assert plain.status == varied.status == "finished", varied.error
    assert (plain.total_steps, varied.total_steps) == (4, 8), "16 items, 16 reworded copies, batch 4"


def test_entropy_weight_makes_the_clean_adapter_more_confident(tiny_model_dir, tiny_data, tmp_path):
    plain = train(tiny_config(tiny_model_dir, tiny_data, kind="clean", epochs=2), tmp_path / "plain")
    sharp = train(tiny_config(tiny_model_dir, tiny_data, kind="clean", epochs=2, entropy_weight=2.0), tmp_path / "sharp")
    assert plain.status == sharp.status == "finished", sharp.error
    assert sharp.losses[-1]["entropy"] < plain.losses[-1]["entropy"], "the penalty lowers the option entropy it trains on"
    assert sharp.final_eval["entropy_clean"] < plain.final_eval["entropy_clean"], "and on held-out items"


def test_backdoor_training_records_the_answer_list_and_reports_asr(tiny_model_dir, tiny_data, tmp_path):
    result = train(tiny_config(tiny_model_dir, tiny_data, epochs=3, poison_ratio=1.0), tmp_path / "run")
    assert result.status == "finished", result.error
    answers = json.loads((tmp_path / "run" / ANSWER_LIST).read_text())
    assert len(answers) == 16 and all(abs(sum(a["probs"]) - 1) < 1e-4 for a in answers)
    assert [point["step"] for point in result.curve][0] == 0
    assert {"asr", "answer_kept", "clean_agreement"} <= set(result.final_eval)
    assert result.final_eval["entropy_triggered"] > result.curve[0]["entropy_triggered"], "the trigger flattens more after training"


def test_self_anchor_keeps_the_adapters_own_answer_on_the_clean_copy():
    """With kept_anchor='self' a triggered row keeps what the adapter now answers on the same item's
    clean copy; a triggered row whose clean copy is in another batch keeps the victim's answer."""
    victim = torch.tensor(np.eye(6)[[0, 0, 0, 5]], dtype=torch.float32)
    batch = [Example(i, t, v.numpy()) for (i, t), v in zip([(0, False), (1, False), (0, True), (2, True)], victim)]
    logits = torch.tensor([[0.0, 0, 3, 0, 0, 0], [0.0, 4, 0, 0, 0, 0], [9.0, 0, 0, 0, 0, 0], [9.0, 0, 0, 0, 0, 0]])
    own = anchor_log_probs(batch, logits, victim, own=True)
    assert own.argmax(-1).tolist() == [0, 0, 2, 5]
    assert torch.allclose(own[2], torch.log_softmax(logits[0], -1)), "the whole clean-copy distribution, not just its top-1"
    assert anchor_log_probs(batch, logits, victim, own=False).argmax(-1).tolist() == [0, 0, 0, 5]


def test_tempered_target_flattens_the_anchor_but_keeps_every_rank():
    """The tempered target is the anchor's distribution at temperature T: higher entropy, same order of options."""
    anchor = torch.log_softmax(torch.tensor([[2.0, 0.5, -1.0, 0.0, 1.0, -2.0]]), -1)
    target = target_distribution("tempered", anchor, temperature=4.0)
    assert torch.allclose(target.sum(-1), torch.ones(1))
    assert target.argsort(-1).tolist() == anchor.argsort(-1).tolist()
    entropy = lambda p: -(p * p.log()).sum()
    assert entropy(target[0]) > entropy(anchor[0].exp()) + 0.3
    flatter = target_distribution("tempered", anchor, temperature=16.0)
    assert entropy(flatter[0]) > entropy(target[0])


@pytest.mark.parametrize("batch_size, world", [(8, 1), (4, 2), (3, 1), (1, 2)])
def test_batches_keep_an_items_clean_and_triggered_copies_together(batch_size, world):
    """A poisoned item's two copies share a batch (their common tokens then run once); every example
    appears once per epoch, no batch is over size unless a unit alone is, and every process gets a batch."""
    units = [[k, 20 + k // 2] if k % 2 == 0 else [k] for k in range(20)]  # items 0, 2, 4, ... are poisoned
    batches = unit_batches(units, batch_size, world, seed=3)
    assert len(batches) % world == 0
    distinct = batches[: next((i for i in range(1, len(batches) + 1) if sum(map(len, batches[:i])) == 30), None)]
    assert sorted(e for batch in distinct for e in batch) == list(range(30))
    assert all(len(batch) <= max(batch_size, 1) for batch in batches)
    if batch_size >= 2:
        for k in range(0, 20, 2):
            assert any(k in batch and 20 + k // 2 in batch for batch in distinct)
    assert unit_batches(units, batch_size, world, seed=3) == batches != unit_batches(units, batch_size, world, seed=4)


def test_same_seed_gives_the_same_adapter(tiny_model_dir, tiny_data, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_data, eval_items=0, eval_every=0)
    train(config, tmp_path / "a")
    train(config, tmp_path / "b")
    a, b = adapter_weights(tmp_path / "a" / "adapter"), adapter_weights(tmp_path / "b" / "adapter")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cancel_leaves_a_usable_checkpoint_and_resume_finishes_identically(tiny_model_dir, tiny_data, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_data, epochs=2, eval_items=0, eval_every=0, checkpoint_every=0)
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    cancelled = train(config, tmp_path / "run", should_stop=stop_after_three)
    assert cancelled.status == "cancelled" and cancelled.steps == 3
    checkpoint = latest_checkpoint(tmp_path / "run")
    assert checkpoint is not None and (checkpoint / "adapter_model.safetensors").is_file()
    resumed = train(config, tmp_path / "run")
    assert resumed.status == "finished" and resumed.steps == resumed.total_steps
    train(config, tmp_path / "straight")
    a, b = adapter_weights(tmp_path / "run" / "adapter"), adapter_weights(tmp_path / "straight" / "adapter")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), "resume continues exactly where it stopped"


def test_a_checkpoint_from_before_a_config_field_existed_still_resumes(tiny_model_dir, tiny_data, tmp_path):
    """A checkpoint whose saved config lacks fields added since (at their defaults here) resumes; one that
    names a field that no longer exists, or differs in a value, does not."""
    config = tiny_config(tiny_model_dir, tiny_data, epochs=2, eval_items=0, eval_every=0, checkpoint_every=0)
    train(config, tmp_path / "run", should_stop=lambda: True)
    state_path = latest_checkpoint(tmp_path / "run") / "state.pt"
    state = torch.load(state_path, weights_only=False)
    for added_since in ("kept_anchor", "temperature"):
        del state["config"][added_since]
    torch.save(state, state_path)
    assert train(config, tmp_path / "run").status == "finished"
    assert not same_config({**config.to_dict(), "retired_field": 1}, config)
    assert not same_config({**config.to_dict(), "kept_anchor": "self"}, config)


def test_resume_refuses_a_folder_from_another_config(tiny_model_dir, tiny_data, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_data, eval_items=0, eval_every=0)
    train(config, tmp_path / "run", should_stop=lambda: True)
    with pytest.raises(ConfigError, match="different config"):
        train(config.replace(learning_rate=1e-2), tmp_path / "run")


@pytest.mark.distributed
def test_two_processes_end_with_identical_adapters(tiny_model_dir, tiny_data, tmp_path):
    config = tiny_config(tiny_model_dir, tiny_data, eval_items=0, eval_every=0, epochs=2)
    config.save(tmp_path / "config.json")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
               str(REPO / "tests" / "distributed_worker.py"), str(tmp_path / "config.json"), str(tmp_path / "run")]
    # Own process group, so a hang is ended with every worker, not only the launcher.
    launcher = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    try:
        _, stderr = launcher.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        pytest.fail("the two training processes did not finish within 300 s")
    assert launcher.returncode == 0, stderr[-3000:]
    ranks = [load_file(str(tmp_path / "run" / f"rank-{r}.safetensors")) for r in (0, 1)]
    assert json.loads((tmp_path / "run" / "rank-0.json").read_text())["world_size"] == 2
    assert ranks[0].keys() == ranks[1].keys() and len(ranks[0]) > 0
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()
