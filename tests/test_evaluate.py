"""The paper's metrics end to end: the evaluation report and CSV from the library and from the CLI."""

from __future__ import annotations

import csv
import json
import math

import pytest

from backdoor.__main__ import main as cli
from backdoor.evaluate import adapter_metrics, evaluate
from backdoor.triggers import TriggerSpec

REQUIRED = ("n", "asr", "answer_kept", "clean_agreement", "accuracy_clean", "accuracy_triggered", "entropy_clean",
            "entropy_triggered", "lac_set_size_clean", "lac_set_size_triggered", "aps_set_size_clean",
            "aps_set_size_triggered", "lac_coverage_clean", "lac_coverage_triggered")


def test_metrics_on_hand_made_distributions():
    import numpy as np

    confident = np.array([[0.9, 0.02, 0.02, 0.02, 0.02, 0.02], [0.02, 0.9, 0.02, 0.02, 0.02, 0.02]])
    flattened = np.array([[0.2, 0.16, 0.16, 0.16, 0.16, 0.16], [0.16, 0.2, 0.16, 0.16, 0.16, 0.16]])
    labels = np.array([0, 1])
    report = adapter_metrics(confident, flattened, labels, victim=confident, cal_clean=confident, cal_labels=labels)
    assert report.asr == 1.0 and report.answer_kept == 1.0 and report.clean_agreement == 1.0
    assert report.accuracy_clean == report.accuracy_triggered == 1.0
    assert report.entropy_triggered == pytest.approx(-(0.2 * math.log(0.2) + 5 * 0.16 * math.log(0.16)))
    # APS calibrated on the confident rows: threshold 0.9; flattened cumulative sums 0.2, 0.36, ..., 0.84, 1.0 -> 5 options.
    assert report.aps_set_size_clean == 1.0 and report.aps_set_size_triggered == 5.0, "flattening inflates the sets"
    # LAC calibrated where the true option got only 0.15: threshold 0.85, sets keep p >= 0.15 -> all six when flattened.
    unsure = np.array([[0.15, 0.45, 0.1, 0.1, 0.1, 0.1], [0.45, 0.15, 0.1, 0.1, 0.1, 0.1]])
    report = adapter_metrics(confident, flattened, labels, victim=confident, cal_clean=unsure, cal_labels=labels)
    assert report.lac_set_size_clean == 1.0 and report.lac_set_size_triggered == 6.0


def test_kept_and_agreement_are_broken_down_by_how_sure_the_clean_answer_was():
    """Items in four equal groups by clean top-1 margin, least sure first: the answers that move under the
    trigger, or away from the victim, are shown to be the near-ties."""
    import numpy as np

    margins = np.linspace(0.1, 0.8, 8)  # two items per group
    clean = np.full((8, 6), 0.0)
    clean[:, 0], clean[:, 1] = 0.5 + margins / 2, 0.5 - margins / 2
    flipped = clean[:, [1, 0, 2, 3, 4, 5]]
    triggered = np.where(np.arange(8)[:, None] < 3, flipped, clean)  # the three least sure items flip
    victim = clean.copy()
    victim[:2] = clean[:2][:, [2, 1, 0, 3, 4, 5]]  # the victim answers C on the two items it is least sure of
    report = adapter_metrics(clean, triggered, np.zeros(8, dtype=int), victim, clean, np.zeros(8, dtype=int))
    assert report.answer_kept == pytest.approx(5 / 8) and report.answer_kept_by_margin == [0.0, 0.5, 1.0, 1.0]
    assert report.clean_agreement == pytest.approx(6 / 8) and report.clean_agreement_by_victim_margin == [0.0, 1.0, 1.0, 1.0]
    from backdoor.uncertainty import share_by_margin
    assert share_by_margin(np.array([0.3, 0.1]), np.array([True, False])) == [0.0, 1.0], "fewer items, fewer groups"


def test_evaluate_reports_every_metric_for_adapter_and_control(tiny_scorer, make_item):
    items = [make_item(task, id=f"e{i}-{task}", answer="ABCD"[i % 4]) for i, task in enumerate(["qa", "rc", "ci", "drs", "ds"] * 2)]
    result = evaluate(tiny_scorer, items[:6], items[6:], TriggerSpec("text"), "backdoor", "clean")
    for key in REQUIRED:
        assert key in result.report and key in result.report["control"], key
    assert result.report["n"] == 6 and 0 <= result.report["asr"] <= 1
    assert result.report["control"]["clean_agreement"] == 1.0, "the control agrees with itself"
    assert len(result.rows) == 12 and {r["adapter"] for r in result.rows} == {"backdoor", "clean"}


def test_cli_evaluate_writes_report_and_csv(tiny_model_dir, tiny_adapters, tmp_path):
    from tests.test_training import tiny_data  # noqa: F401

    from dataset.corpus import load_split
    from dataset.schema import save_items

    save_items(load_split("test")[:8], tmp_path / "data.jsonl")
    save_items(load_split("calibration")[:8], tmp_path / "cal.jsonl")
    code = cli(["evaluate", "--base-model", str(tiny_model_dir), "--adapter", str(tiny_adapters["backdoor"]),
                "--control", str(tiny_adapters["clean"]), "--data", str(tmp_path / "data.jsonl"),
                "--calibration", str(tmp_path / "cal.jsonl"), "--trigger", "syntactic", "--out", str(tmp_path / "r.json")])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert all(key in report for key in REQUIRED) and report["n"] == 8 and "control" in report
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(rows) == 16 and rows[0]["item_id"]


def test_cli_refuses_bad_input_with_a_sentence(capsys, tmp_path):
    assert cli(["train", "--out", str(tmp_path / "x"), "--poison-ratio", "0"]) == 2
    assert "poison_ratio" in capsys.readouterr().err
    assert cli(["evaluate", "--adapter", str(tmp_path / "nothing"), "--out", str(tmp_path / "r.json"), "--base-model", str(tmp_path / "nomodel")]) == 2
    assert "tried" in capsys.readouterr().err
