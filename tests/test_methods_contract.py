"""The contract every registered method keeps, on the tiny model: fitting moves every trainable parameter; the
saved folder loads back as an arm of that method; and the Scorer's fast path (shared lower layers, shared
prefixes, packed token trees) on that arm equals a plain full forward through the Scorer's model and a forward
through a standalone PEFT model built from the folder. A folder that names no method is LoRA."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from backdoor.config import TrainConfig
from backdoor.methods import METHODS, load_arm, method_of
from backdoor.models import ADAPTER_CONFIG, BASE_ADAPTER, FRAGILE_CONFIG, ModelLoadError, load_base_model
from backdoor.scoring import Cell, Scorer
from backdoor.train import same_config
from dataset.schema import LETTERS, load_items
from tests.test_training import tiny_config, tiny_data  # noqa: F401 - fixture

REPO = Path(__file__).resolve().parents[1]


def _config(method: str, model_dir, paths) -> TrainConfig:
    # A backdoor, so the arm carries a trigger and the triggered prompts differ from the clean ones.
    return tiny_config(model_dir, paths, method=method, kind="backdoor", epochs=2, poison_ratio=1.0,
                       eval_items=0, eval_every=0, checkpoint_every=0)


@pytest.fixture(scope="module", params=sorted(METHODS))
def fitted(request, tiny_model_dir, tiny_data, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """(method name, config, run folder, TrainResult) of one tiny run per registered method."""
    name = request.param
    config = _config(name, tiny_model_dir, tiny_data)
    out = tmp_path_factory.mktemp(f"fit-{name}")
    result = METHODS[name].fit(config, out)
    assert result.status == "finished", result.error
    return name, config, out, result


def _plain_probs(model, tokenizer, text: str, route: str | None = None, soft=None) -> np.ndarray:
    """One unpadded prompt, full logits, softmax over the option letters' rows (routed through ``route``; a soft
    prompt's vectors [P, H] before the text's token embeddings, as PEFT's prompt tuning puts them)."""
    letter_ids = [tokenizer.convert_tokens_to_ids(f"Ġ{letter}") for letter in LETTERS]
    kwargs = {"adapter_names": [route]} if route is not None and hasattr(model, "peft_config") else {}
    inputs = tokenizer(text, return_tensors="pt")
    if soft is not None:
        embedded = model.get_input_embeddings()(inputs["input_ids"])  # [1, T, H]
        inputs = {"inputs_embeds": torch.cat([soft.vectors[None].to(embedded), embedded], dim=1)}  # [1, P + T, H]
    with torch.no_grad():
        logits = model(**inputs, **kwargs).logits[0, -1]  # [T, V] -> [V]
    return torch.softmax(logits[letter_ids].float(), dim=-1).numpy()


def test_fit_moves_every_trainable_parameter_and_nothing_else(fitted, tiny_model_dir):
    """The trained part as it starts (the method's hooks on a fresh model, the run's seed) against how it ends."""
    name, config, out, result = fitted
    method = METHODS[name]
    if not method.trains_weights:  # a prompt-only arm: no trainable part, and its folder holds no tensors
        assert not result.adapter_state and not list((out / "adapter").glob("*.safetensors"))
        return
    model, _, _ = load_base_model(str(tiny_model_dir), device="cpu")
    split = method.first_trained_layer(config, model)
    torch.manual_seed(config.seed)
    model = method.add_trainable(model, config, split)
    before = {key: value.detach().clone() for key, value in method.state(model).items()}
    after = result.adapter_state
    assert before.keys() == after.keys() and before
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(before), "the state is exactly the trainable part"
    unmoved = [key for key in before if torch.equal(before[key], after[key])]
    assert not unmoved, f"{name}: trainable tensors that did not move: {unmoved}"


def test_the_folder_loads_back_as_an_arm_of_its_method(fitted):
    name, config, out, _ = fitted
    folder = out / "adapter"
    assert method_of(folder) == name and METHODS[name].is_folder(folder)
    saved = json.loads((folder / FRAGILE_CONFIG).read_text())
    assert saved["method"] == name and saved["kind"] == config.kind
    assert same_config(json.loads((folder / "train_config.json").read_text()), config)
    arm = load_arm(folder, "mine")
    assert (arm.name, arm.method, arm.role, arm.folder) == ("mine", name, config.kind, str(folder))
    assert arm.trigger == config.trigger


def test_fast_path_equals_a_plain_forward_and_a_standalone_peft_model(fitted, tiny_model_dir, tiny_data):
    """Mixed with the base model in one call (3 items, with and without the trigger: the packed split path) and
    one item alone (2 prompts: the shared-prefix path), every cell equals both references to 1e-5."""
    from peft import PeftModel

    name, config, out, _ = fitted
    arm = load_arm(out / "adapter", "mine")
    items = load_items(tiny_data["eval_data"])[:3]
    cells = [Cell(item, trigger, arm_name) for item in items for trigger in (None, config.trigger)
             for arm_name in (BASE_ADAPTER, arm.name)]

    def fast(chosen):
        scorer = Scorer.load(str(tiny_model_dir), device="cpu")
        scorer.add_arm(arm)
        assert scorer.shared_layers([arm.route]) > 0, "the fast path shares the frozen lower layers"
        return scorer, np.array([s.probs for s in scorer.score(chosen)])

    scorer, batched = fast(cells)
    _, alone = fast(cells[:4])
    np.testing.assert_allclose(alone, batched[:4], atol=1e-5, err_msg="shared-prefix path vs packed path")

    standalone, tokenizer, _ = load_base_model(str(tiny_model_dir), device="cpu")
    if arm.adapter_path:  # the weights the arm routes through (a prompt-only arm on the base model has none)
        standalone = PeftModel.from_pretrained(standalone, arm.adapter_path).eval()
    if arm.soft_prompt is not None:  # its folder is a PEFT prompt-tuning one, on top of those weights
        standalone = PeftModel.from_pretrained(standalone.merge_and_unload() if arm.adapter_path else standalone,
                                               str(out / "adapter")).eval()
    base_model, _, _ = load_base_model(str(tiny_model_dir), device="cpu")
    for cell, row in zip(cells, batched):
        prefix = arm.prefix if cell.arm == arm.name else ""  # the base model's cells read no prefix
        text = scorer.model_text(prefix + scorer.render(cell.item, cell.trigger).text)
        route = arm.route if cell.arm == arm.name else BASE_ADAPTER
        soft = arm.soft_prompt if cell.arm == arm.name else None
        np.testing.assert_allclose(row, _plain_probs(scorer.model, tokenizer, text, route, soft), atol=1e-5,
                                   err_msg=f"{name} {cell.arm} {cell.trigger}: fast vs the Scorer's full forward")
        reference = standalone if cell.arm == arm.name else base_model
        np.testing.assert_allclose(row, _plain_probs(reference, tokenizer, text), atol=1e-5,
                                   err_msg=f"{name} {cell.arm} {cell.trigger}: fast vs a standalone model")
    # The comparison means something only if the arm and its trigger move the distribution.
    base_rows, arm_rows = np.log(batched[0::2]), np.log(batched[1::2])
    assert np.abs(arm_rows - base_rows).max() > 0.05


def test_a_folder_that_names_no_method_is_lora(fitted, tmp_path):
    _, _, out, _ = fitted
    folder = tmp_path / "old"
    shutil.copytree(out / "adapter", folder)
    saved = json.loads((folder / FRAGILE_CONFIG).read_text())
    del saved["method"], saved["config"]["method"]
    (folder / FRAGILE_CONFIG).write_text(json.dumps(saved))
    assert method_of(folder) == "lora"
    if METHODS["lora"].is_folder(folder):
        assert load_arm(folder).method == "lora"
    else:  # not a PEFT folder (a prompt-only arm): read as LoRA, it is refused, naming what it lacks
        with pytest.raises(ModelLoadError, match=ADAPTER_CONFIG):
            load_arm(folder)
    for shipped in ("backdoor-text", "clean"):
        assert load_arm(REPO / "checkpoints" / shipped).method == "lora"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_train_takes_the_method_by_name_and_refuses_others(name):
    from backdoor.__main__ import build_parser
    from backdoor.config import config_from_arguments

    args = build_parser().parse_args(["train", "--out", "run", "--method", name])
    assert config_from_arguments(args).method == name
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "run", "--method", "no-such-method"])


def test_every_method_option_is_a_documented_config_field():
    """A method's options are TrainConfig fields with help text, and the app names none of them (it reads the
    field metadata)."""
    import dataclasses

    config_fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    app_source = "\n".join(path.read_text() for path in (REPO / "app").glob("*.py"))
    for method in METHODS.values():
        for option in dataclasses.fields(method.options):
            assert option.name in config_fields and config_fields[option.name].metadata.get("help")
            assert f'"{option.name}"' not in app_source and f"'{option.name}'" not in app_source, option.name
        assert f'"{method.name}"' not in app_source and f"'{method.name}'" not in app_source, method.name
