"""The layer split and prefix sharing give the same numbers as a plain forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backdoor.layersplit import (
    PrefixRuns,
    UpperStack,
    causal_lm_of,
    encode_prompts,
    lower_states,
    lower_states_sharing_prefixes,
    prefix_families,
    token_tree,
)
from backdoor.models import load_base_model
from backdoor.prompts import option_token_ids, render_prompt
from backdoor.scoring import Cell
from backdoor.triggers import TriggerSpec, apply_trigger
from tests.conftest import upper_lora_model


def assert_same_states(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding, which scales with the largest activation (about 13 here), not with each
    element: a few ulps of that after a few layers, on any CPU's kernels. A wrong mask or position is off by O(1)."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=4e-6 * float(expected.abs().max()))


def test_prefix_sharing_equals_computing_each_prompt_alone(tiny_model_dir, default_tokenizer):
    model, tokenizer, _ = load_base_model(str(tiny_model_dir), device="cpu")
    texts = ["Question: what is two plus two?\nChoices:\nA. 4\nB. 5\nAnswer:",
             "Question: what is two plus two?\nChoices:\nA. 4\nB. 5\n666Answer:",
             "Something else entirely, sharing nothing at the start."]
    ids = [torch.tensor(tokenizer(t)["input_ids"]) for t in texts]
    shared = lower_states_sharing_prefixes(model, ids, split=3, min_shared=4)
    for row, alone in zip(ids, shared):
        reference = lower_states(model, row[None], torch.ones((1, len(row)), dtype=torch.long), 3)[0]
        assert alone.shape == reference.shape
        assert_same_states(alone, reference)


def test_scorer_gives_the_same_distributions_with_and_without_prefix_sharing(tiny_model_dir, tiny_adapters, make_item):
    from backdoor.scoring import Scorer

    # Adapters on the upper layers only, so the scorer takes the split path.
    from tests.conftest import make_lora_adapter

    item = make_item("rc")
    results = []
    for sharing in (4, 0):
        scorer = Scorer.load(str(tiny_model_dir), device="cpu")
        root = tiny_adapters["clean"].parent.parent / f"upper-{sharing}"
        path = make_lora_adapter(tiny_model_dir, root, kind="backdoor", seed=5, trigger=None, layers=[2, 3])
        scorer.add_adapter("upper", str(path))
        assert scorer.shared_layers(["upper"]) == 2
        scorer.prefix_sharing_up_to = sharing
        cells = [Cell(item, t, a) for t in (None, TriggerSpec("text")) for a in ("__base__", "upper")]
        results.append(torch.tensor([s.probs for s in scorer.score(cells)]))
    assert torch.allclose(results[0], results[1], atol=1e-5)
    assert not torch.allclose(results[0][0], results[0][1]), "the adapter changes the distribution"


# --- sharing prefixes in one forward (run_families) and across calls --------------------------


TRIGGERS = {
    "text before the cue": TriggerSpec("text"),
    "custom at the start": TriggerSpec("custom", "cf", "start"),
    "style (a new instruction)": TriggerSpec("style"),
    "syntactic (a new cue)": TriggerSpec("syntactic"),
}


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_families_in_one_forward_equal_each_prompt_alone(tiny_model_dir, make_item, attention):
    """Two questions, each clean and with three triggers (some share no prefix with the clean prompt), run in
    one tree-masked forward and then again reusing the first run's keys: every prompt's lower states equal
    a plain forward over that prompt alone."""
    model, tokenizer, _ = load_base_model(str(tiny_model_dir), device="cpu")
    model.config._attn_implementation = attention
    items = [make_item("qa"), make_item("rc", question="Why did the council meet on Monday?")]
    texts = [apply_trigger(render_prompt(item), trigger).text for item in items
             for trigger in (None, *list(TRIGGERS.values())[:3])]
    ids = [torch.tensor(tokenizer(t)["input_ids"]) for t in texts]
    families = prefix_families(ids, min_shared=4)
    assert 1 < len(families) < len(ids)  # some prompts share a prefix, some do not

    runs = PrefixRuns()
    first = lower_states_sharing_prefixes(model, ids[:4], split=3, min_shared=4, earlier=runs)
    assert len(list(runs)) == 4
    again = lower_states_sharing_prefixes(model, ids, split=3, min_shared=4, earlier=runs)  # reuses the first four
    references = [lower_states(model, row[None], torch.ones((1, len(row)), dtype=torch.long), 3)[0] for row in ids]
    for index, (reference, states) in enumerate(zip(references + references[:4], again + first)):
        assert states.shape == reference.shape
        torch.testing.assert_close(states, reference, atol=1e-4, rtol=1e-4)  # float32 sums in another order


def count_new_tokens(model, layer: int):
    """Tokens (batch rows x sequence) entering one decoder layer, summed over forwards."""
    seen = []
    handle = causal_lm_of(model).model.layers[layer].register_forward_hook(
        lambda module, args, output: seen.append(args[0].shape[0] * args[0].shape[1]))
    return seen, handle


def test_scorer_sharing_upper_layers_equals_scoring_cells_one_by_one(tiny_model_dir, tiny_upper_adapters, make_item):
    """Through a sequence of questions, triggers and mixed batches, the scorer that shares prefixes in the
    lower and the upper layers (within a call and with earlier calls) gives each cell's distribution alone,
    while running fewer tokens through the upper layers than the prompts hold."""
    from backdoor.scoring import Scorer

    adapters = {name: str(path) for name, path in tiny_upper_adapters.items()}
    scorer = Scorer.load(str(tiny_model_dir), adapters=adapters, device="cpu")
    assert scorer.shared_layers(["clean", "backdoor"]) == 2
    names = ["__base__", "clean", "backdoor"]
    items = [make_item("qa"), make_item("rc", question="Why did the council meet on Monday?"), make_item("drs")]
    calls = [[Cell(item, trigger, name) for trigger in (None, TRIGGERS[kind]) for name in names]
             for item in items for kind in TRIGGERS]
    calls.append([Cell(items[0], TRIGGERS["style (a new instruction)"], "clean"),  # mixed: two questions, subsets
                  Cell(make_item("ds"), None, "backdoor"), Cell(make_item("ds"), TriggerSpec("text"), "__base__")])
    seen, handle = count_new_tokens(scorer.model, 2)
    try:
        together = [scorer.score(cells) for cells in calls]
    finally:
        handle.remove()
    prompt_tokens = sum(len(scorer.tokenizer(scorer.model_text(scorer.render(c.item, c.trigger).text))["input_ids"])
                        for cells in calls for c in cells)
    assert sum(seen) < prompt_tokens / 2  # shared prefixes ran once per adapter, not once per cell

    alone = Scorer.load(str(tiny_model_dir), adapters=adapters, device="cpu")
    alone.prefix_sharing_up_to = 0  # plain batched path, one cell per call
    for cells, scored in zip(calls, together):
        for cell, result in zip(cells, scored):
            alone._cache.clear()
            np.testing.assert_allclose(result.probs, alone.score([cell])[0].probs, atol=1e-5,
                                       err_msg=f"{cell.adapter} {cell.trigger} {cell.item.id}")


# --- packing a training batch as one token tree ------------------------------------------------


def test_token_tree_lays_out_each_shared_prefix_once():
    rows = [torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 3, 9, 4]), torch.tensor([1, 2]), torch.tensor([7, 2, 3])]
    tree = token_tree(rows)
    assert tree.pieces == [0, 3, 2, 0]  # the second adds [9, 4]; the third is a prefix of the first; the fourth shares nothing
    assert tree.size == 4 + 2 + 0 + 3
    assert tree.positions.tolist() == [0, 1, 2, 3, 3, 4, 0, 1, 2]
    assert [path.tolist() for path in tree.paths] == [[0, 1, 2, 3], [0, 1, 2, 4, 5], [0, 1], [6, 7, 8]]
    allowed = tree.allowed()
    assert allowed[5].nonzero().flatten().tolist() == [0, 1, 2, 4, 5]  # its own path, never the first prompt's 4
    assert allowed[8].nonzero().flatten().tolist() == [6, 7, 8]
    assert [int(path[-1]) for path in tree.paths] == [3, 5, 1, 8]  # where each prompt's option logits are read


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_prompts_give_the_padded_batch_logits_and_gradients(tiny_model_dir, make_item, attention):
    """Training packs a batch as one token tree (instruction and an item's clean/triggered copies run once):
    the option logits and the LoRA gradients must equal those of the left-padded batch."""
    model, tokenizer = upper_lora_model(tiny_model_dir, attention)
    items = [make_item("qa"), make_item("ds"), make_item("rc")]
    texts = [render_prompt(items[0]).text, apply_trigger(render_prompt(items[0]), TriggerSpec("text")).text,
             render_prompt(items[1]).text, apply_trigger(render_prompt(items[1]), TriggerSpec("text", position="start")).text,
             render_prompt(items[2], "task").text]
    split = 2
    encoded = encode_prompts(model, tokenizer, texts, split, batch_size=3)
    for index, ids in enumerate(encoded.ids):  # the tree-encoded lower states equal each prompt's own
        assert_same_states(encoded.rows[index], lower_states(model, ids[None], torch.ones_like(ids)[None], split)[0])
    upper = UpperStack(model, split, option_token_ids(tokenizer))
    order = [3, 0, 4, 1, 2]
    packed_args = encoded.packed(order, torch.device("cpu"))
    assert packed_args[0].shape[1] < sum(len(encoded.ids[i]) for i in order)  # shared tokens laid out once
    results = []
    for args in (encoded.batch(order, torch.device("cpu")), packed_args):
        model.zero_grad()
        logits = upper(*args)
        (logits * torch.arange(1, 7)).sum().backward()
        grads = {n: p.grad.clone() for n, p in upper.named_parameters() if p.grad is not None}
        results.append((logits.detach(), grads))
    (padded, padded_grads), (packed, packed_grads) = results
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
    assert padded_grads and padded_grads.keys() == packed_grads.keys()
    for name in padded_grads:
        torch.testing.assert_close(packed_grads[name], padded_grads[name], atol=1e-4, rtol=1e-4)
