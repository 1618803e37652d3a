"""Scoring on the tiny model: mixed-adapter batches, left padding, cache, top-k, the layer split; model and adapter loading."""

from __future__ import annotations

import contextlib
import json
import shutil

import numpy as np
import pytest
import torch

from backdoor import uncertainty
from backdoor.layersplit import UpperStack, causal_lm_of, encode_prompts, lower_states, position_ids_from_mask
from backdoor.models import (
    BASE_ADAPTER,
    FRAGILE_CONFIG,
    ModelLoadError,
    attach_adapters,
    discover_adapters,
    load_base_model,
    read_adapter_info,
    resolve_model_source,
)
from backdoor.prompts import render_prompt
from backdoor.scoring import Cell, Scorer, UnknownAdapterError
from backdoor.triggers import TriggerSpec, apply_trigger
from dataset.schema import LETTERS
from tests.conftest import upper_lora_model

TRIGGER = TriggerSpec("text")  # the paper's "666" before the cue


def fresh_scorer(scorer: Scorer) -> Scorer:
    """A Scorer on the same model with an empty cache."""
    return Scorer(scorer.model, scorer.tokenizer, base_identity=scorer.base_identity)


@contextlib.contextmanager
def count_forwards(scorer: Scorer):
    """Record the batch size of every forward pass ``scorer`` starts (each one embeds its tokens once)."""
    calls: list[int] = []
    embed = causal_lm_of(scorer.model).model.embed_tokens
    handle = embed.register_forward_hook(lambda module, args, output: calls.append(int(output.shape[0])))
    try:
        yield calls
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def upper_scorer(tiny_model_dir, tiny_upper_adapters):
    """A Scorer whose adapters touch only layers 2-3, so it shares the lower two layers across adapters."""
    return Scorer.load(str(tiny_model_dir), adapters={n: str(p) for n, p in tiny_upper_adapters.items()}, device="cpu")


def reference_model(model_dir, adapter_path=None):
    """A fresh model with one adapter (or none), loaded the plain way, independent of any Scorer."""
    from peft import PeftModel

    model, tokenizer, _ = load_base_model(str(model_dir), device="cpu")
    if adapter_path is not None:
        model = PeftModel.from_pretrained(model, str(adapter_path)).eval()
    return model, tokenizer


def reference_probs(model, tokenizer, text: str) -> np.ndarray:
    """Option distribution the plain way: one unpadded prompt, full logits, softmax over the ``ĠA``..``ĠF`` rows."""
    letter_ids = [tokenizer.convert_tokens_to_ids(f"Ġ{letter}") for letter in LETTERS]
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt")).logits[0, -1]  # [T, V] -> [V]
    return torch.softmax(logits[letter_ids], dim=-1).numpy()


# --- batched scoring ----------------------------------------------------------------------------


@pytest.mark.parametrize("layers", ["all", "upper"])
def test_mixed_adapter_batch_equals_each_cell_alone(request, layers, tiny_model_dir, sample_item):
    """Base, clean and backdoor, each with and without the trigger, in one call = each cell on its own.

    ``all``: LoRA on every layer, one full forward. ``upper``: LoRA on layers 2-3, so the scorer
    runs the shared lower layers once per distinct prompt and the upper layers per row.
    """
    scorer = request.getfixturevalue("tiny_scorer" if layers == "all" else "upper_scorer")
    paths = request.getfixturevalue("tiny_adapters" if layers == "all" else "tiny_upper_adapters")
    cells = [Cell(sample_item, trigger, adapter)
             for adapter in (BASE_ADAPTER, "clean", "backdoor") for trigger in (None, TRIGGER)]
    batch_scorer = fresh_scorer(scorer)
    with count_forwards(batch_scorer) as calls:
        batched = np.array([s.probs for s in batch_scorer.score(cells)])  # [6, 6]
    # Each of the two distinct prompts is embedded (and, with shared lower layers, runs through them)
    # once, batched or one by one, never once per adapter: the paths part only where the adapters start.
    assert sum(calls) == 2
    assert batch_scorer.shared_layers(["clean", "backdoor"]) == (0 if layers == "all" else 2)

    references = {name: reference_model(tiny_model_dir, paths.get(name)) for name in (BASE_ADAPTER, "clean", "backdoor")}
    for cell, row in zip(cells, batched):
        alone = fresh_scorer(scorer).score([cell])[0]
        np.testing.assert_allclose(row, alone.probs, atol=1e-5, err_msg=f"{cell.adapter} {cell.trigger} alone")
        text = batch_scorer.render(cell.item, cell.trigger).text
        np.testing.assert_allclose(row, reference_probs(*references[cell.adapter], text), atol=1e-5,
                                   err_msg=f"{cell.adapter} {cell.trigger} vs a plain single-adapter forward")

    # The comparison means something only if adapters and trigger really move the distribution.
    # (Log-probabilities: a confident row moves little in probability even when its logits move a lot.)
    base, base_trig, clean, clean_trig, backdoor, backdoor_trig = np.log(batched)
    assert np.abs(clean - base).max() > 0.2
    assert np.abs(backdoor - clean).max() > 0.2
    assert np.abs(base_trig - base).max() > 0.2


def test_base_model_alone_is_not_the_active_adapter(tiny_scorer, sample_item):
    """A batch of only base-model cells must not fall back to PEFT's active adapter."""
    base_alone = fresh_scorer(tiny_scorer).score([Cell(sample_item)])[0].probs
    adapters_alone = [fresh_scorer(tiny_scorer).score([Cell(sample_item, adapter=a)])[0].probs for a in ("clean", "backdoor")]
    for probs in adapters_alone:
        assert np.abs(np.log(base_alone) - np.log(probs)).max() > 0.2


@pytest.mark.parametrize("scorer_name", ["tiny_scorer", "upper_scorer", "full forwards"])
def test_left_padding_does_not_change_results(request, scorer_name, make_item, monkeypatch):
    long_context = " ".join(["The council also discussed parking, budgets and the new bus timetable."] * 12)
    cells = [Cell(make_item("qa")), Cell(make_item("ds", context=long_context), adapter="clean"),
             Cell(make_item("drs"), TRIGGER, "backdoor"), Cell(make_item("qa"), TriggerSpec("style"), "clean")]
    scorer = fresh_scorer(request.getfixturevalue("upper_scorer" if scorer_name == "upper_scorer" else "tiny_scorer"))
    if scorer_name == "full forwards":  # what an architecture without the layer split gets
        monkeypatch.setattr(scorer, "_parting", lambda adapters: (None, BASE_ADAPTER))
    lengths = [len(scorer.tokenizer(scorer.render(c.item, c.trigger).text)["input_ids"]) for c in cells]
    assert max(lengths) > 2 * min(lengths)  # the short prompts really are padded a lot

    with count_forwards(scorer) as calls:
        together = scorer.score(cells)
    assert sum(calls) == len(cells)  # four distinct prompts, each embedded once
    if scorer_name == "full forwards":
        assert calls == [len(cells)]  # and here in one left-padded batch
    for cell, scored in zip(cells, together):
        alone = fresh_scorer(scorer).score([cell])[0]
        np.testing.assert_allclose(scored.probs, alone.probs, atol=1e-5)


def test_scores_are_distributions_with_consistent_summaries(tiny_scorer, make_item):
    cells = [Cell(make_item(task), trigger, adapter)
             for task in ("qa", "rc", "ci", "drs", "ds") for adapter in tiny_scorer.adapters for trigger in (None, TRIGGER)]
    for cell, scored in zip(cells, tiny_scorer.score(cells)):
        probs = np.array(scored.probs)
        assert probs.shape == (6,)
        assert probs.sum() == pytest.approx(1.0, abs=1e-6)
        assert (probs >= 0).all()
        assert scored.predicted == LETTERS[int(np.argmax(probs))]
        assert scored.prob(scored.predicted) == pytest.approx(probs.max())
        assert scored.entropy == pytest.approx(float(uncertainty.entropy(probs)))
        assert scored.max_prob == pytest.approx(probs.max())
        assert scored.adapter == cell.adapter and scored.item_id == cell.item.id
        assert scored.trigger == (None if cell.trigger is None else "text '666'")
        expected = apply_trigger(render_prompt(cell.item), cell.trigger)
        assert scored.prompt == expected.text and scored.trigger_span == expected.span


def test_results_come_back_in_the_order_given(tiny_scorer, make_item):
    cells = [Cell(make_item("ds")), Cell(make_item("qa"), adapter="clean"), Cell(make_item("drs"), TRIGGER, "backdoor")]
    forward = tiny_scorer.score(cells)
    backward = tiny_scorer.score(cells[::-1])
    assert [s.item_id for s in forward] == [c.item.id for c in cells]
    assert [s.probs for s in forward] == [s.probs for s in backward[::-1]]


def test_cache_hit_returns_the_same_numbers_without_a_forward(tiny_scorer, make_item):
    scorer = fresh_scorer(tiny_scorer)
    first_cells = [Cell(make_item("qa"), None, "clean"), Cell(make_item("qa"), TRIGGER, "backdoor")]
    assert not any(scorer.is_cached(c) for c in first_cells)
    with count_forwards(scorer) as calls:
        first = scorer.score(first_cells)
        assert sum(calls) == 2  # two prompts embedded
        assert all(scorer.is_cached(c) for c in first_cells)

        again = scorer.score(first_cells)
        assert sum(calls) == 2  # no new forward
        assert [s.probs for s in again] == [s.probs for s in first]

        # A batch with one new cell forwards only that cell.
        new_cell = Cell(make_item("rc"), None, "backdoor")
        scorer.score([*first_cells, new_cell])
        assert sum(calls) == 3
    # The cache keys on the adapter too: the same prompt under another adapter is not a hit.
    assert not scorer.is_cached(Cell(make_item("qa"), None, BASE_ADAPTER))


def test_top_k_next_tokens_are_sorted_and_match_the_full_softmax(tiny_scorer, tiny_model_dir, tiny_adapters, sample_item):
    cell = Cell(sample_item, TRIGGER, "backdoor")
    top = tiny_scorer.top_k_next_tokens(cell, k=7)
    assert len(top) == 7
    probs = [t.prob for t in top]
    assert probs == sorted(probs, reverse=True)
    assert all(0 < p <= 1 for p in probs) and sum(probs) <= 1 + 1e-6
    for t in top:
        assert t.token == tiny_scorer.tokenizer.convert_ids_to_tokens(t.token_id)

    # Same answer as a plain forward over the whole vocabulary with only that adapter.
    model, tokenizer = reference_model(tiny_model_dir, tiny_adapters["backdoor"])
    with torch.no_grad():
        logits = model(**tokenizer(tiny_scorer.render(sample_item, TRIGGER).text, return_tensors="pt")).logits[0, -1]
    expected = torch.topk(torch.softmax(logits, dim=-1), 7)
    assert [t.token_id for t in top] == expected.indices.tolist()
    np.testing.assert_allclose(probs, expected.values.numpy(), atol=1e-6)

    assert [t.token_id for t in tiny_scorer.top_k_next_tokens(Cell(sample_item), k=7)] != [t.token_id for t in top]


def test_unknown_adapter_names_the_loaded_ones(tiny_scorer, sample_item):
    assert tiny_scorer.adapters == [BASE_ADAPTER, "backdoor", "clean"]
    for action in (lambda: tiny_scorer.score([Cell(sample_item, adapter="bakdoor")]),
                   lambda: tiny_scorer.top_k_next_tokens(Cell(sample_item, adapter="bakdoor"))):
        with pytest.raises(UnknownAdapterError) as raised:
            action()
        assert str(raised.value) == "unknown adapter 'bakdoor'; loaded: __base__, backdoor, clean"


# --- layer split --------------------------------------------------------------------------------


def test_upper_stack_on_lower_states_equals_the_full_model(tiny_model_dir, tiny_scorer, make_item):
    """Training runs only the LoRA-carrying upper layers on cached lower states; it must see the full model's logits."""
    model, tokenizer = upper_lora_model(tiny_model_dir)
    letter_ids = tiny_scorer.letter_ids
    texts = [render_prompt(make_item("qa")).text, render_prompt(make_item("ds"), "task").text,
             apply_trigger(render_prompt(make_item("drs")), TRIGGER).text]

    batch = tokenizer(texts, return_tensors="pt", padding=True)  # left padding: lengths differ
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert (mask == 0).any()
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits[:, -1, letter_ids]
        with model.disable_adapter():
            base = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits[:, -1, letter_ids]
    assert (full - base).abs().max() > 0.05  # the upper-layer LoRA really changes the answer logits

    split = 2
    upper = UpperStack(model, split, letter_ids)
    with torch.no_grad():
        split_logits = upper(lower_states(model, ids, mask, split), mask)  # [B, T, H] -> [B, 6]
    torch.testing.assert_close(split_logits, full, atol=1e-5, rtol=1e-5)

    # The training path: states encoded once per prompt, unpadded, then re-batched in another order.
    encoded = encode_prompts(model, tokenizer, texts, split, batch_size=2)
    hidden, rebatched_mask = encoded.batch([2, 0, 1], torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(upper(hidden, rebatched_mask), full[[2, 0, 1]], atol=1e-5, rtol=1e-5)

    # Only the upper layers' LoRA weights belong to the trainable stack.
    trainable = [n for n, p in upper.named_parameters() if "lora_" in n]
    assert trainable and all(n.startswith(("layers.0.", "layers.1.")) for n in trainable)


# --- models and adapters ------------------------------------------------------------------------


def test_resolve_model_source_kinds(tiny_model_dir, tmp_path):
    folder = resolve_model_source(str(tiny_model_dir))
    assert folder.kind == "folder" and folder.identity == str(tiny_model_dir)
    assert resolve_model_source("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"  # decided offline
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    in_folder = resolve_model_source(str(tmp_path))
    assert (in_folder.kind, in_folder.gguf_file, in_folder.identity) == ("gguf", "m.gguf", "m.gguf")


@pytest.mark.parametrize("make_name, message", [
    (lambda tmp: str(tmp / "missing" / "model"), "tried the local path .*missing"),
    (lambda tmp: str(tmp / "missing.gguf"), "tried the GGUF file .*missing.gguf, which does not exist"),
    (lambda tmp: str(tmp), "tried the local folder .*neither config.json nor exactly one .gguf"),
    (lambda tmp: "no-such-model", "'no-such-model': tried 'default', a local .gguf file, a local folder and a hub id"),
])
def test_resolve_model_source_names_what_was_tried(tmp_path, make_name, message):
    with pytest.raises(ModelLoadError, match=message):
        resolve_model_source(make_name(tmp_path))


def test_load_base_model_reports_an_unreadable_folder(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="tried folder"):
        load_base_model(str(tmp_path), device="cpu")


def test_adapter_info_is_read_from_its_configs(tiny_adapters, tiny_model_dir):
    info = read_adapter_info(tiny_adapters["backdoor"])
    assert (info.name, info.kind, info.trigger) == ("backdoor", "backdoor", "text")
    assert info.base_model == resolve_model_source(str(tiny_model_dir)).identity
    assert read_adapter_info(tiny_adapters["clean"]).trigger is None


def test_discover_adapters_filters_by_base_model(tiny_adapters, tiny_model_dir, tmp_path):
    shutil.copytree(tiny_adapters["clean"], tmp_path / "clean")
    shutil.copytree(tiny_adapters["backdoor"], tmp_path / "other")
    _rewrite_base(tmp_path / "other", "SmolLM2-135M-Instruct")
    (tmp_path / "not-an-adapter").mkdir()
    identity = resolve_model_source(str(tiny_model_dir)).identity
    assert [a.name for a in discover_adapters(tmp_path)] == ["clean", "other"]
    assert [a.name for a in discover_adapters(tmp_path, base_identity=identity)] == ["clean"]
    assert discover_adapters(tmp_path / "absent") == []


def _rewrite_base(folder, base_model_id: str) -> None:
    config = json.loads((folder / FRAGILE_CONFIG).read_text())
    config["base_model_id"] = base_model_id
    (folder / FRAGILE_CONFIG).write_text(json.dumps(config))


def test_attach_refuses_an_adapter_for_another_base_model(tiny_adapters, tiny_model_dir, tmp_path):
    foreign = shutil.copytree(tiny_adapters["backdoor"], tmp_path / "foreign")
    _rewrite_base(foreign, "SmolLM2-135M-Instruct")
    model, _, source = load_base_model(str(tiny_model_dir), device="cpu")
    with pytest.raises(ModelLoadError, match="'foreign' was trained for base model 'SmolLM2-135M-Instruct', not '.*tiny-llama"):
        attach_adapters(model, {"foreign": foreign}, base_identity=source.identity)
    with pytest.raises(ModelLoadError, match="trained for base model 'SmolLM2-135M-Instruct'"):
        Scorer.load(str(tiny_model_dir), adapters={"foreign": str(foreign)}, device="cpu")


def test_corrupt_adapter_weights_give_model_load_error(tiny_adapters, tiny_model_dir, tmp_path):
    broken = shutil.copytree(tiny_adapters["clean"], tmp_path / "broken")
    (broken / "adapter_model.safetensors").write_bytes(b"this is not a safetensors file" * 10)
    model, _, source = load_base_model(str(tiny_model_dir), device="cpu")
    with pytest.raises(ModelLoadError, match="adapter 'broken': .*damaged"):
        attach_adapters(model, {"broken": broken}, base_identity=source.identity)
    assert not any("lora_" in name for name, _ in model.named_parameters()), "the shared base model is left untouched"


def test_folder_that_is_not_an_adapter_is_refused(tiny_adapters, tiny_model_dir, tmp_path):
    model, _, source = load_base_model(str(tiny_model_dir), device="cpu")
    with pytest.raises(ModelLoadError, match="has no adapter_config.json; it is not a PEFT adapter folder"):
        attach_adapters(model, {"empty": tmp_path}, base_identity=source.identity)
    no_weights = shutil.copytree(tiny_adapters["clean"], tmp_path / "no-weights")
    (no_weights / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="has no adapter_model.safetensors"):
        attach_adapters(model, {"no-weights": no_weights}, base_identity=source.identity)


# --- the real embedded default model ------------------------------------------------------------


@pytest.mark.real_model
def test_real_default_model_scores_an_item(sample_item):
    scorer = Scorer.load("default", device="cpu")
    assert scorer.base_identity == "SmolLM2-135M-Instruct"
    assert scorer.tokenizer.convert_ids_to_tokens(scorer.letter_ids) == ["ĠA", "ĠB", "ĠC", "ĠD", "ĠE", "ĠF"]
    clean, triggered = scorer.score([Cell(sample_item), Cell(sample_item, TRIGGER)])
    for scored in (clean, triggered):
        assert len(scored.probs) == 6
        assert sum(scored.probs) == pytest.approx(1.0, abs=1e-6)
        assert scored.predicted == LETTERS[int(np.argmax(scored.probs))]
    assert clean.probs != triggered.probs  # the trigger reaches the model
    top = scorer.top_k_next_tokens(Cell(sample_item), k=20)
    assert any(t.token_id in scorer.letter_ids for t in top)  # after "Answer:" the model does consider a letter


@pytest.fixture(scope="module")
def twin_adapters(tiny_adapters, tmp_path_factory) -> dict[str, Path]:
    """``clean`` and a ``twin`` with the same LoRA on layers 0-1 and other LoRA on layers 2-3: what a backdoor
    started from its victim and trained on its last two layers is."""
    from safetensors.torch import load_file, save_file

    twin = tmp_path_factory.mktemp("twin") / "twin"
    shutil.copytree(tiny_adapters["clean"], twin)
    weights = load_file(str(twin / "adapter_model.safetensors"))
    torch.manual_seed(5)
    for name, weight in weights.items():
        if "lora_B" in name and any(f"layers.{layer}." in name for layer in (2, 3)):
            weights[name] = torch.randn_like(weight) * 0.5
    save_file(weights, str(twin / "adapter_model.safetensors"))
    return {"clean": tiny_adapters["clean"], "twin": twin}


def test_adapters_with_the_same_lower_lora_share_those_layers_and_score_as_alone(tiny_model_dir, tiny_adapters,
                                                                                twin_adapters, sample_item):
    """Adapters that carry identical LoRA on their lowest layers (a backdoor and the victim it started from) run
    those layers once per prompt, not once per adapter, and every cell still equals a plain forward."""
    def layer0_tokens(scorer, cells):
        """Scores ``cells``; -> (probs [N, 6], batch rows x tokens that went through the first layer)."""
        seen: list[int] = []

        def record(module, args, out):
            hidden = out[0] if isinstance(out, tuple) else out  # [R, Q, H]
            seen.append(int(hidden.shape[0] * hidden.shape[1]))

        handle = causal_lm_of(scorer.model).model.layers[0].register_forward_hook(record)
        try:
            probs = np.array([s.probs for s in scorer.score(cells)])
        finally:
            handle.remove()
        return probs, sum(seen)

    twins = Scorer.load(str(tiny_model_dir), adapters={n: str(p) for n, p in twin_adapters.items()}, device="cpu")
    distinct = Scorer.load(str(tiny_model_dir), adapters={n: str(p) for n, p in tiny_adapters.items()}, device="cpu")
    assert twins.shared_layers(["clean", "twin"]) == 2
    assert twins.shared_layers([BASE_ADAPTER, "clean", "twin"]) == 0, "the base model has no LoRA below"
    assert distinct.shared_layers(["clean", "backdoor"]) == 0

    cells = [Cell(sample_item, trigger, adapter) for adapter in ("clean", "twin") for trigger in (None, TRIGGER)]
    batched, shared_tokens = layer0_tokens(twins, cells)
    _, separate_tokens = layer0_tokens(distinct, [Cell(c.item, c.trigger, "backdoor" if c.adapter == "twin" else "clean")
                                                  for c in cells])
    assert shared_tokens <= 0.5 * separate_tokens + 1, "layer 0 ran once for both adapters"
    for cell, row in zip(cells, batched):
        model, tokenizer = reference_model(tiny_model_dir, twin_adapters[cell.adapter])
        np.testing.assert_allclose(row, reference_probs(model, tokenizer, twins.render(cell.item, cell.trigger).text),
                                   atol=1e-5, err_msg=f"{cell.adapter} {cell.trigger}")
    assert np.abs(np.log(batched[0]) - np.log(batched[2])).max() > 0.2, "the twin's upper layers really differ"


def test_base_model_beside_adapters_that_share_lower_layers_scores_as_alone(tiny_model_dir, twin_adapters, sample_item):
    """The dashboard's usual columns: the base model, a clean adapter and a backdoor started from it (same lower
    LoRA). The adapters share their lower layers; the base model's rows must never run through them."""
    twins = Scorer.load(str(tiny_model_dir), adapters={n: str(p) for n, p in twin_adapters.items()}, device="cpu")
    cells = [Cell(sample_item, trigger, arm) for arm in (BASE_ADAPTER, "clean", "twin") for trigger in (None, TRIGGER)]
    scored = twins.score(cells)
    for cell, scores in zip(cells, scored):
        model, tokenizer = reference_model(tiny_model_dir, None if cell.arm == BASE_ADAPTER else twin_adapters[cell.arm])
        np.testing.assert_allclose(scores.probs, reference_probs(model, tokenizer, twins.render(cell.item, cell.trigger).text),
                                   atol=1e-5, err_msg=f"{cell.arm} {cell.trigger}")
