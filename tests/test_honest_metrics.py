"""Honest attack metrics and near-miss triggers: the margin ASR ignores noise below its delta, the bootstrap interval
is reproducible, a calibrated toy has no calibration error, near misses are never the trigger, and an evaluation with
near misses reports a false triggered rate per generator for the adapter and the control."""

from __future__ import annotations

import numpy as np
import pytest

from backdoor import metrics
from backdoor.nearmiss import GENERATORS, generators_for, near_miss, near_misses
from backdoor.prompts import STYLES, render_prompt
from backdoor.triggers import TRIGGERS, TriggerSpec, apply_trigger
from tests.test_registries_report import HashScorer, _items

REAL_TRIGGERS = [TriggerSpec("text"), TriggerSpec("text", "1999"), TriggerSpec("text", None, "start"),
                 TriggerSpec("text", None, "random", seed=4), TriggerSpec("syntactic"), TriggerSpec("style"),
                 TriggerSpec("custom", "cf"), TriggerSpec("custom", "x", "end_of_question")]


def test_margin_asr_is_zero_when_the_triggered_entropy_differs_from_the_clean_one_by_noise_below_delta():
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.1, 1.5, 200)
    delta = metrics.default_delta(6)
    assert delta == pytest.approx(0.1 * np.log(6))
    noisy = clean + rng.uniform(-0.9, 0.9, 200) * delta
    assert metrics.margin_asr(clean, noisy, delta) == 0.0
    assert 0.2 < np.mean(noisy > clean) < 0.8, "the paper's ASR counts the noise: its chance floor"
    assert metrics.margin_asr(clean, clean + 1.1 * delta, delta) == 1.0


def test_the_bootstrap_interval_contains_the_mean_and_is_reproducible_by_seed():
    values = np.random.default_rng(1).normal(1.0, 0.5, 60)
    low, high = metrics.bootstrap_interval(values, seed=3)
    assert low < values.mean() < high and high - low < 0.5
    assert metrics.bootstrap_interval(values, seed=3) == (low, high)
    assert metrics.bootstrap_interval(values, seed=4) != (low, high)
    assert metrics.bootstrap_interval(np.full(10, 0.7)) == pytest.approx((0.7, 0.7))


def _calibrated(confidence: float, n: int, correct: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` items whose top option (A) has probability ``confidence``; the first ``correct`` have A as the key."""
    rest = (1 - confidence) / 5
    probs = np.full((n, 6), rest)
    probs[:, 0] = confidence
    labels = np.where(np.arange(n) < correct, 0, 1)
    return probs, labels


def test_expected_calibration_error_is_zero_for_a_calibrated_toy_and_the_gap_for_an_overconfident_one():
    parts = [_calibrated(0.55, 20, 11), _calibrated(0.75, 20, 15), _calibrated(0.95, 40, 38)]
    probs, labels = np.concatenate([p for p, _ in parts]), np.concatenate([l for _, l in parts])
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    sure, half = _calibrated(0.99, 10, 5)
    assert metrics.expected_calibration_error(sure, half) == pytest.approx(0.49)
    scores = metrics.Scores({"clean": sure}, half)
    assert metrics.BY_NAME["clean_confident"].compute(scores) == 1.0


@pytest.mark.parametrize("trigger", REAL_TRIGGERS, ids=lambda t: t.label)
def test_near_misses_are_never_the_real_trigger_and_are_reproducible_by_seed(make_item, trigger):
    prompts = [render_prompt(make_item(task), style) for task in ("qa", "drs") for style in STYLES]
    assert [g.kind for g in generators_for(trigger)] == [trigger.kind] * len(generators_for(trigger))
    assert generators_for(trigger), "every trigger kind has near misses"
    for seed in range(40):
        misses = near_misses(trigger, seed)
        assert [m.generator for m in misses] == [g.name for g in generators_for(trigger)]
        assert misses == near_misses(trigger, seed)
        for miss in misses:
            assert miss.spec != trigger
            for prompt in prompts:
                text = apply_trigger(prompt, miss.spec).text
                assert text != apply_trigger(prompt, trigger).text, (miss, prompt.text)
                assert text != prompt.text, "a near miss changes the prompt"
    assert len({near_miss(trigger, g.name, seed).spec for g in generators_for(trigger)[:1] for seed in range(40)}) > 1


def test_a_generator_of_another_kind_is_refused_with_the_ones_that_fit():
    with pytest.raises(ValueError, match="other_number"):
        near_miss(TriggerSpec("text"), "other_cue", 0)
    with pytest.raises(ValueError, match="choose one of"):
        near_miss(TriggerSpec("text"), "nonsense", 0)


def test_user_facing_trigger_kinds_stay_the_four():
    from backdoor.config import TrainConfig  # noqa: F401  (its choices are read from TRIGGERS)

    assert tuple(TRIGGERS) == ("text", "syntactic", "style", "custom")
    assert {g.kind for g in GENERATORS.values()} == set(TRIGGERS)


@pytest.mark.parametrize("kind", ["text", "syntactic"])
def test_evaluate_with_near_misses_reports_one_ftr_per_generator_for_adapter_and_control(kind):
    from backdoor.evaluate import evaluate

    trigger = TriggerSpec(kind)
    items, calibration = _items("e", 12), _items("c", 8)
    plain = evaluate(HashScorer(), items, calibration, trigger, "backdoor", "clean")
    result = evaluate(HashScorer(), items, calibration, trigger, "backdoor", "clean", near_miss=True)
    expected = [f"ftr_{g.name}" for g in generators_for(trigger)] + ["ftr_mean"]
    for report in (result.report, result.report["control"]):
        assert [key for key in report if key.startswith("ftr_")] == expected
        assert all(0 <= report[key] <= 1 for key in expected)
    # The stand-in backdoor flattens on anything in the trigger's place; the control does not.
    assert result.report["ftr_mean"] == 1.0 and result.report["control"]["ftr_mean"] < 0.5
    assert result.report["vs_control"]["ftr_mean"] == pytest.approx(1.0 - result.report["control"]["ftr_mean"])
    assert not any(key.startswith("ftr_") for key in plain.report), "near misses only when asked for"
    skip = ("control", "vs_control")
    assert {k: v for k, v in result.report.items() if k in plain.report and k not in skip} == \
        {k: v for k, v in plain.report.items() if k not in skip}, "the other keys keep their values"
    assert [m.name for m in metrics.specificity(result.report)] == expected


def test_the_margin_and_the_control_difference_are_in_the_report():
    from backdoor.evaluate import evaluate

    items, calibration = _items("e", 12), _items("c", 8)
    report = evaluate(HashScorer(), items, calibration, TriggerSpec("text"), "backdoor", "clean").report
    assert report["asr_delta"] == pytest.approx(0.1 * np.log(6))
    assert report["entropy_lift_low"] <= report["entropy_lift"] <= report["entropy_lift_high"]
    strict = evaluate(HashScorer(), items, calibration, TriggerSpec("text"), "backdoor", "clean", delta=5.0).report
    assert strict["asr_delta"] == 5.0 and strict["asr_margin"] == 0.0 and strict["asr"] == report["asr"]
    for key, value in report["vs_control"].items():
        assert value == pytest.approx(report[key] - report["control"][key])
    with pytest.raises(ValueError, match="at least 0"):
        evaluate(HashScorer(), items, calibration, TriggerSpec("text"), "backdoor", delta=-1.0)


def test_evaluate_help_lists_every_generator(capsys):
    from backdoor.__main__ import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--near-miss" in shown and "--margin" in shown
    assert all(name in shown for name in GENERATORS)


def test_the_evaluate_tab_and_the_model_card_show_the_false_triggered_rates(tiny_adapters, tmp_path):
    import re

    from app.lab import EvaluationRun
    from app.lab_ui import metric_cards_html
    from backdoor.cards import model_card
    from backdoor.evaluate import evaluate

    trigger = TriggerSpec("text")
    report = evaluate(HashScorer(), _items("e", 8), _items("c", 6), trigger, "backdoor", "clean", near_miss=True).report
    run = EvaluationRun("base", "test", "backdoor", "clean", trigger, report, [], 1.0, tmp_path / "r.json",
                        tmp_path / "r.csv", tmp_path)
    shown = re.findall(r'data-metric="([a-z_]+)"', metric_cards_html(run))
    assert shown[:2] == ["entropy_lift", "asr_margin"], "the tab leads with lift and margin ASR"
    assert shown[-4:] == [m.name for m in metrics.specificity(report)]
    card = model_card(tiny_adapters["backdoor"], report)
    assert "| near miss | this adapter | clean control |" in card
    assert all(m.label in card for m in metrics.specificity(report))
