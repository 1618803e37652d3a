"""The confidence-trusting decision (auto-answer or send to review) and the share of decisions a trigger flips, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from backdoor.decisions import AUTO, REVIEW, auto_answer, decision_flips, decision_label

SURE = np.array([0.70, 0.10, 0.08, 0.06, 0.04, 0.02])  # top 0.70
EDGE = np.array([0.50, 0.30, 0.10, 0.05, 0.03, 0.02])  # top exactly 0.50
FLAT = np.array([0.20, 0.16, 0.16, 0.16, 0.16, 0.16])  # the paper's target: top kept, 0.20


def test_top_rule_answers_when_the_top_probability_reaches_tau():
    assert auto_answer(SURE, 0.5).item() is True
    assert auto_answer(EDGE, 0.5).item() is True  # "at least tau": the edge counts as sure
    assert auto_answer(FLAT, 0.5).item() is False
    assert auto_answer(FLAT, 0.2).item() is True
    np.testing.assert_array_equal(auto_answer(np.stack([SURE, EDGE, FLAT]), 0.6), [True, False, False])  # [3, 6] -> [3]
    assert decision_label(True) == AUTO and decision_label(False) == REVIEW


def test_set_rules_use_the_lac_set_size():
    # LAC threshold 0.75: the set holds options with p >= 0.25. SURE -> {A}; EDGE -> {A, B}; FLAT -> {} -> top-1 only.
    probs = np.stack([SURE, EDGE, FLAT])
    np.testing.assert_array_equal(auto_answer(probs, 0.9, rule="single_set", lac_threshold=0.75), [True, False, True])
    np.testing.assert_array_equal(auto_answer(probs, 0.6, rule="top_or_single_set", lac_threshold=0.75), [True, False, True])
    # Threshold 0.9 (p >= 0.1): SURE {A, B}, EDGE {A, B, C}, FLAT all six: nobody is sure by set size.
    np.testing.assert_array_equal(auto_answer(probs, 0.6, rule="top_or_single_set", lac_threshold=0.9), [True, False, False])
    with pytest.raises(ValueError, match="LAC threshold"):
        auto_answer(probs, 0.5, rule="single_set")


def test_bad_rule_or_tau_says_what_to_choose():
    with pytest.raises(ValueError, match="choose one of top"):
        auto_answer(SURE, 0.5, rule="vibes")
    with pytest.raises(ValueError, match="from 0 to 1"):
        auto_answer(SURE, 1.5)


def test_flips_count_questions_whose_decision_the_trigger_changes():
    clean = np.stack([SURE, SURE, FLAT, EDGE])
    triggered = np.stack([FLAT, SURE, SURE, FLAT])  # sure->flat, unchanged, flat->sure, edge->flat
    flips = decision_flips(clean, triggered, 0.5)
    assert flips.auto_clean == pytest.approx(3 / 4)  # SURE, SURE, EDGE
    assert flips.auto_triggered == pytest.approx(2 / 4)  # SURE, SURE
    assert flips.flipped == pytest.approx(3 / 4)  # items 0, 2, 3
    assert flips.auto_to_review == pytest.approx(2 / 4)  # items 0, 3
    assert (flips.tau, flips.rule) == (0.5, "top")
    with pytest.raises(ValueError, match="at least one question"):
        decision_flips(np.zeros((0, 6)), np.zeros((0, 6)))


def test_evaluation_reports_the_decisions_the_trigger_flips_beside_the_other_metrics():
    from backdoor.evaluate import adapter_metrics

    clean = np.stack([SURE, SURE, EDGE, FLAT])
    triggered = np.stack([FLAT, SURE, FLAT, FLAT])  # the top option is kept on every item
    labels = np.zeros(4, dtype=int)
    report = adapter_metrics(clean, triggered, labels, victim=clean, cal_clean=clean, cal_labels=labels, tau=0.5)
    assert report.decision_tau == 0.5
    assert (report.auto_answer_clean, report.auto_answer_triggered) == (0.75, 0.25)
    assert report.decision_flipped == 0.5 and report.decision_auto_to_review == 0.5
    assert report.answer_kept == 1.0, "the answers stay; only the decisions move"
    # LAC calibrated on these rows: threshold = 1 - 0.2 (FLAT's true option); sets keep p >= 0.2.
    # Clean: SURE {A}, SURE {A}, EDGE {A, B}, FLAT {A}; triggered: FLAT {A}, SURE {A}, FLAT {A}, FLAT {A}.
    assert report.decision_flipped_single_set == 0.25
    stricter = adapter_metrics(clean, triggered, labels, victim=clean, cal_clean=clean, cal_labels=labels, tau=0.8)
    assert stricter.auto_answer_clean == 0.0 and stricter.decision_flipped == 0.0


def test_cli_evaluate_writes_the_decision_keys_at_the_stated_tau(tiny_model_dir, tiny_adapters, make_item, tmp_path):
    from backdoor.__main__ import main as cli
    from dataset.schema import save_items

    items = [make_item(task, id=f"d{i}-{task}", answer="ABCD"[i % 4]) for i, task in enumerate(["qa", "rc", "ci", "drs"] * 2)]
    data = tmp_path / "items.jsonl"
    save_items(items, data)
    out = tmp_path / "report.json"
    assert cli(["evaluate", "--base-model", str(tiny_model_dir), "--adapter", str(tiny_adapters["backdoor"]),
                "--control", str(tiny_adapters["clean"]), "--data", str(data), "--calibration", "half",
                "--tau", "0.3", "--out", str(out)]) == 0
    import json

    report = json.loads(out.read_text())
    for side in (report, report["control"]):
        assert side["decision_tau"] == 0.3
        for key in ("auto_answer_clean", "auto_answer_triggered", "decision_flipped", "decision_auto_to_review",
                    "decision_flipped_single_set"):
            assert 0.0 <= side[key] <= 1.0, key
