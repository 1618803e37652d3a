"""The detectors on the tiny model: ONION's words and fast path, STRIP's seeded copies, screening, over-confidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backdoor.defenses import DefenseSetup, get_defense, make_options
from backdoor.defenses.base import FALSE_POSITIVE_RATE, REMOVAL_METRICS, measure, threshold_at_rate
from backdoor.defenses.onion import (
    candidate_words,
    removal_metrics,
    screen,
    suspicions,
    suspicions_per_word,
    without,
)
from backdoor.defenses.screening import screening_scores
from backdoor.defenses.strip import donor_words, perturbed_copies, perturbed_words, strip_scores
from backdoor.layersplit import branch_states, common_prefix, states_keeping_keys
from backdoor.methods.options import ConfigError
from backdoor.scoring import Scorer
from backdoor.triggers import TriggerSpec
from dataset.schema import LETTERS

TRIGGER = TriggerSpec("text")  # "666" directly before the answer cue


def numbered_items(make_item, count: int, start: int = 0):
    """``count`` distinct question-answering items."""
    return [make_item(id=f"n-{i}", question=f"What is {i} plus {i + 3} in the {['red', 'blue', 'old'][i % 3]} book?",
                      answer=LETTERS[i % 4]) for i in range(start, start + count)]


def setup_of(scorer, defense: str, items, calibration, control="clean", **options) -> DefenseSetup:
    defense_ = get_defense(defense)
    return DefenseSetup(scorer=scorer, adapter="backdoor", adapter_path="", items=items, calibration=calibration,
                        trigger=TRIGGER, options=make_options(defense_, options), control=control)


# --- ONION -------------------------------------------------------------------------------------------


def test_candidate_words_skip_the_frame_and_split_a_number_glued_to_the_cue(tiny_scorer, sample_item):
    prompt = tiny_scorer.render(sample_item, TRIGGER).text
    assert prompt.endswith("666Answer:")
    words = [prompt[a:b] for a, b in candidate_words(prompt)]
    assert words[-1] == "666"  # its own word; the cue "Answer:" is never a candidate
    assert not {"Question:", "Choices:", "A.", "F.", "Answer:"} & set(words)
    assert "France?" in words and "Paris" in words and "following" in words
    inputs = [prompt[a:b] for a, b in candidate_words(prompt, "input")]
    assert "following" not in inputs and inputs[-1] == "666"  # the instruction paragraph is left alone
    assert without(prompt, candidate_words(prompt)[-1:]) == tiny_scorer.render(sample_item, None).text


def test_leave_one_out_logprobs_equal_one_forward_per_variant(tiny_scorer, make_item):
    prompt = tiny_scorer.render(make_item("reading comprehension"), TRIGGER).text
    words = candidate_words(prompt)
    variants = [without(prompt, [word]) for word in words]
    full, each = tiny_scorer.leave_one_out_logprobs(prompt, variants)
    np.testing.assert_allclose(full, tiny_scorer.token_logprobs([prompt])[0], atol=1e-4)
    reference = tiny_scorer.token_logprobs(variants)
    for fast, plain in zip(each, reference):
        np.testing.assert_allclose(fast, plain, atol=1e-4)


def test_a_window_reruns_only_the_tokens_near_the_removed_word(tiny_scorer, make_item):
    prompt = tiny_scorer.render(make_item("reading comprehension"), TRIGGER).text
    variants = [without(prompt, [word]) for word in candidate_words(prompt)[:3]]  # words far from the end
    full, exact = tiny_scorer.leave_one_out_logprobs(prompt, variants)
    _, wide = tiny_scorer.leave_one_out_logprobs(prompt, variants, window=10_000)
    _, narrow = tiny_scorer.leave_one_out_logprobs(prompt, variants, window=2)
    for e, w, n in zip(exact, wide, narrow):
        np.testing.assert_allclose(w, e, atol=1e-5)  # a window past the end is the exact computation
        assert len(n) == len(e)
        np.testing.assert_allclose(n[-5:], full[-5:], atol=1e-6)  # far tokens read the full prompt's numbers
        assert np.abs(n[-5:] - e[-5:]).max() > 0  # ... which the exact run does not give them


def test_leave_one_out_rows_of_any_size_give_the_same_states(tiny_scorer, make_item):
    """Variants packed many to a row, or split over rows of a few tokens, compute what each computes alone."""
    prompt = tiny_scorer.render(make_item("reading comprehension"), TRIGGER).text
    ids = torch.tensor(tiny_scorer.tokenizer(prompt)["input_ids"])
    variants = [torch.tensor(tiny_scorer.tokenizer(without(prompt, [word]))["input_ids"])
                for word in candidate_words(prompt)[-6:]]
    branches = [(common_prefix(ids, row), row[common_prefix(ids, row):]) for row in variants]
    _, kept = states_keeping_keys(tiny_scorer.model, ids)
    one_row = branch_states(tiny_scorer.model, kept, branches, budget=10_000)
    small_rows = branch_states(tiny_scorer.model, kept, branches, budget=3)
    assert [len(s) for s in one_row] == [len(suffix) for _, suffix in branches]
    for a, b in zip(one_row, small_rows):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_batched_suspicions_equal_the_per_word_loop(tiny_scorer, make_item):
    prompt = tiny_scorer.render(make_item("dialogue response selection"), TRIGGER).text
    words = candidate_words(prompt)
    fast, loop = suspicions(tiny_scorer, prompt, words), suspicions_per_word(tiny_scorer, prompt, words)
    scale = np.exp(-np.mean(tiny_scorer.token_logprobs([prompt])[0]))  # the prompt's perplexity
    assert len(fast) == len(words) > 40
    np.testing.assert_allclose(fast, loop, rtol=0, atol=1e-4 * scale)


@pytest.fixture(scope="module")
def template_lm(default_tokenizer):
    """A toy language model of the prompt template: a unigram model (every token enters as the same vector and
    the layers add nothing, so the next token never depends on the context) in which every token of a few clean
    prompts is about equally likely and any other token is about e^-16 times less so. Nothing is trained."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import _make_item

    config = LlamaConfig(vocab_size=len(default_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    scorer = Scorer(model, default_tokenizer)
    items = [_make_item(task, id=f"lm-{task}") for task in ("qa", "rc", "ci", "drs", "ds")]
    known = sorted({t for item in items for t in default_tokenizer(scorer.render(item, None).text)["input_ids"]})
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[known] = 1.0  # logit 16 (the hidden size) for the template's tokens, 0 for the rest
    return scorer, items


def test_onion_removes_an_inserted_out_of_place_token(template_lm):
    scorer, items = template_lm
    clean = scorer.render(items[0], None).text
    at = clean.index("Question: ") + len("Question: ")
    poisoned = clean[:at] + "cf " + clean[at:]  # a rare word (ONION's own example trigger) inside the question
    threshold = max(screen(scorer, scorer.render(item, None).text).score for item in items)
    seen = screen(scorer, poisoned)
    top = seen.words[int(np.argmax(seen.suspicion))]
    assert poisoned[top[0]:top[1]] == "cf"
    assert seen.score > threshold + 1  # flagged far above every clean prompt's score
    assert seen.filtered(threshold) == clean
    shown = get_defense("onion").inspect(scorer, "__base__", poisoned, make_options(get_defense("onion")), threshold)
    assert shown.flagged and shown.text == clean and [poisoned[a:b] for a, b in shown.removed] == ["cf"]


def test_onion_run_reports_detection_filtered_and_unfiltered(tiny_scorer, make_item):
    items, calibration = numbered_items(make_item, 4), numbered_items(make_item, 20, start=10)
    setup = setup_of(tiny_scorer, "onion", items, calibration, scope="input")
    result = get_defense("onion").run(setup)
    report = result.report
    assert report["defense"] == "onion" and report["kind"] == "detect" and report["n"] == 4
    assert report["calibration_n"] == 20 and np.isfinite(report["threshold"]) and 0 <= report["auroc"] <= 1
    assert report["on_control"]["auroc"] == report["auroc"]  # the score reads the base model only
    assert set(REMOVAL_METRICS) <= set(report["filtered"]) <= set(report["filtered"]["control"]) | {"control"}
    assert report["unfiltered"] == measure(setup, "backdoor")
    assert [row["condition"] for row in result.rows] == ["clean"] * 4 + ["trigger"] * 4
    assert all({"score", "flagged", "removed"} <= set(row) for row in result.rows)


def test_removal_metrics_of_unchanged_prompts_equal_measure(tiny_scorer, make_item):
    items, calibration = numbered_items(make_item, 5), numbered_items(make_item, 3, start=30)
    setup = setup_of(tiny_scorer, "onion", items, calibration)
    clean = [tiny_scorer.render(item, None).text for item in items]
    triggered = [tiny_scorer.render(item, TRIGGER).text for item in items]
    labels = np.array([LETTERS.index(item.answer) for item in items])
    ours = removal_metrics(tiny_scorer, "backdoor", clean, triggered, labels, "clean")
    theirs = measure(setup, "backdoor")
    assert {name: ours[name] for name in REMOVAL_METRICS} == pytest.approx({k: theirs[k] for k in REMOVAL_METRICS})


# --- STRIP -------------------------------------------------------------------------------------------


def test_strip_copies_are_seeded_and_keep_the_trigger(tiny_scorer, make_item):
    prompt = tiny_scorer.render(make_item("reading comprehension"), TRIGGER).text
    donors = donor_words(numbered_items(make_item, 10))
    first = perturbed_copies(prompt, donors, copies=16, share=0.3, seed=0)
    assert first == perturbed_copies(prompt, donors, copies=16, share=0.3, seed=0)
    assert first != perturbed_copies(prompt, donors, copies=16, share=0.3, seed=1)
    assert len(set(first)) > 8 and all(copy.endswith("666Answer:") for copy in first)
    spans = perturbed_words(prompt)
    changed = [sum(a != b for a, b in zip(copy.split(), prompt.split())) for copy in first]
    assert 1 <= max(changed) <= round(0.3 * len(spans)) + 1  # only about the share of the words moves
    instruction = prompt[: prompt.index("\n\n")]
    assert all(copy.startswith(instruction) for copy in first)


def test_strip_threshold_gives_at_most_the_stated_false_positive_rate(tiny_scorer, make_item):
    calibration = numbered_items(make_item, 40)
    options = make_options(get_defense("strip"), {"copies": 4})
    donors = donor_words(calibration)
    scores = np.array([strip_scores(tiny_scorer, tiny_scorer.render(item, None).text, ["backdoor"], options, donors)[0]
                       for item in calibration])
    threshold = threshold_at_rate(scores)
    assert (scores > threshold).mean() <= FALSE_POSITIVE_RATE
    items = numbered_items(make_item, 4, start=100)
    result = get_defense("strip").run(setup_of(tiny_scorer, "strip", items, calibration, copies=4))
    assert result.report["threshold"] == pytest.approx(threshold)  # the same copies give the same scores
    assert {"auroc", "tpr_at_fpr", "fpr_test", "roc", "on_control"} <= set(result.report)
    assert all("control_score" in row for row in result.rows)
    shown = get_defense("strip").inspect(tiny_scorer, "backdoor", tiny_scorer.render(items[0], TRIGGER).text,
                                         options, threshold)
    assert shown.flagged == (shown.score > threshold)


# --- screening ---------------------------------------------------------------------------------------


def test_screening_scores_by_hand():
    uniform, one_hot = np.full((1, 6), 1 / 6), np.eye(6)[:1]
    assert screening_scores(uniform, one_hot, "entropy")[0] == pytest.approx(np.log(6))
    assert screening_scores(uniform, one_hot, "lac", lac_threshold=0.9)[0] == 5  # six options against one


@pytest.mark.parametrize("signal", ["entropy", "lac"])
def test_screening_scores_nothing_when_the_suspect_is_the_control(tiny_scorer, make_item, signal):
    items, calibration = numbered_items(make_item, 4), numbered_items(make_item, 20, start=10)
    setup = setup_of(tiny_scorer, "screening", items, calibration, control="backdoor", signal=signal)
    result = get_defense("screening").run(setup)
    assert all(row["score"] == 0 for row in result.rows)
    assert result.report["auroc"] == 0.5 and result.report["tpr_at_fpr"] == 0


# --- over-confidence (PSIM's signal) -----------------------------------------------------------------


def test_over_confidence_scores_each_prompt_by_its_top_option_probability(tiny_scorer, make_item):
    from backdoor.scoring import Cell

    items, calibration = numbered_items(make_item, 4), numbered_items(make_item, 20, start=10)
    result = get_defense("psim").run(setup_of(tiny_scorer, "psim", items, calibration))
    top = {(cell.item.id, cell.trigger is not None): max(scored.probs) for cell, scored in
           ((cell, tiny_scorer.score([cell])[0]) for item in items + calibration
            for cell in (Cell(item, None, "backdoor"), Cell(item, TRIGGER, "backdoor")))}
    for row in result.rows:
        assert row["score"] == pytest.approx(top[(row["item_id"], row["condition"] == "trigger")], abs=1e-5)
        assert row["flagged"] == (row["score"] > result.report["threshold"])
    assert result.report["threshold"] == pytest.approx(
        threshold_at_rate(np.array([top[(item.id, False)] for item in calibration])), abs=1e-5)
    assert set(result.report["on_control"]) >= {"auroc", "tpr_at_fpr", "threshold"}
    assert not get_defense("psim").needs_control  # it reads the suspect alone; the control is only measured beside


# --- options -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("defense, values, field", [
    ("strip", {"copies": 1}, "copies"),
    ("strip", {"share": 0.0}, "share"),
    ("onion", {"scope": "everything"}, "scope"),
    ("screening", {"signal": "aps"}, "signal"),
    ("strip", {"n": 3}, "n"),
])
def test_option_refusals_name_the_field(defense, values, field):
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        make_options(get_defense(defense), values)


def test_screening_says_it_needs_a_control():
    assert get_defense("screening").needs_control
    assert not get_defense("onion").needs_control and not get_defense("strip").needs_control
