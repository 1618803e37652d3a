"""The conditions and metrics registries: the evaluation report they build equals, key for key and value for value,
the one written before them (a committed snapshot), and every place that lists metrics lists the registry's.

The snapshot comes from a deterministic stand-in scorer (probabilities from a hash of item, trigger and adapter),
so it holds to 1e-9 on any machine. Regenerate it only when a report is meant to change:
``python tests/test_registries_report.py`` writes it from the checked-out code.
"""

from __future__ import annotations

import json
import math
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import _make_item  # noqa: E402

SNAPSHOT = Path(__file__).parent / "fixtures" / "evaluation_report_snapshot.json"
TASKS = ["qa", "rc", "ci", "drs", "ds"]


class HashScorer:
    """Scores a cell with softmax(logits) drawn from a seed hashed from (item id, adapter), the gold option raised:
    no model, and the same numbers wherever it runs. With the trigger the backdoor's logits are flattened (/ 4),
    the others' nudged."""

    def score(self, cells, progress=None):
        out = []
        for cell in cells:
            rng = np.random.default_rng(zlib.crc32(f"{cell.item.id}|{cell.adapter}".encode()))
            logits = rng.normal(0.0, 2.0, 6) + 2.5 * (np.arange(6) == "ABCDEF".index(cell.item.answer))
            nudge = rng.normal(0.0, 0.7, 6)
            if cell.trigger is not None:
                logits = logits / 4.0 if cell.adapter == "backdoor" else logits + nudge
            probs = np.exp(logits - logits.max())
            out.append(SimpleNamespace(probs=tuple(float(p) for p in probs / probs.sum())))
        if progress:
            progress(len(cells), len(cells))
        return out


def _items(prefix: str, n: int) -> list:
    return [_make_item(TASKS[i % 5], id=f"{prefix}{i}", answer="ABCDEF"[(i * 7) % 6]) for i in range(n)]


def snapshot_runs() -> dict:
    """The reports and rows of three evaluations: with a control, without one (the base model is the victim),
    and at a stricter decision threshold."""
    from backdoor.evaluate import evaluate
    from backdoor.triggers import TriggerSpec

    items, calibration, scorer = _items("e", 16), _items("c", 12), HashScorer()
    runs = {
        "control": evaluate(scorer, items, calibration, TriggerSpec("text"), "backdoor", "clean"),
        "no_control": evaluate(scorer, items, calibration, TriggerSpec("syntactic"), "backdoor"),
        "tau_0.8": evaluate(scorer, items[:9], calibration, TriggerSpec("text"), "backdoor", "clean", alpha=0.2, tau=0.8),
    }
    return {name: {"report": result.report, "rows": result.rows} for name, result in runs.items()}


def _assert_same(new, old, where: str = "report") -> None:
    assert type(new) is type(old) or {type(new), type(old)} <= {int, float}, f"{where}: {type(new)} != {type(old)}"
    if isinstance(old, dict):
        assert list(new) == list(old), f"{where}: keys or their order differ"
        for key in old:
            _assert_same(new[key], old[key], f"{where}.{key}")
    elif isinstance(old, list):
        assert len(new) == len(old), f"{where}: length differs"
        for i, (a, b) in enumerate(zip(new, old)):
            _assert_same(a, b, f"{where}[{i}]")
    elif isinstance(old, float):
        assert math.isclose(new, old, rel_tol=0, abs_tol=1e-9) or (math.isnan(new) and math.isnan(old)), \
            f"{where}: {new} != {old}"
    else:
        assert new == old, f"{where}: {new!r} != {old!r}"


def test_the_report_and_rows_equal_the_snapshot_key_for_key_and_value_for_value():
    old = json.loads(SNAPSHOT.read_text())
    new = json.loads(json.dumps(snapshot_runs()))  # as saved: tuples become lists
    _assert_same(new, old, "runs")



class CountingScorer(HashScorer):
    def __init__(self):
        self.cells = []

    def score(self, cells, progress=None):
        self.cells += cells
        return super().score(cells, progress)


def test_only_the_conditions_calibration_and_victim_the_requested_metrics_need_are_scored():
    from backdoor.evaluate import evaluate
    from backdoor.triggers import TriggerSpec

    items, calibration = _items("e", 6), _items("c", 5)
    scorer = CountingScorer()
    result = evaluate(scorer, items, calibration, TriggerSpec("text"), "backdoor", metrics=["accuracy_clean"])
    assert list(result.report)[:1] == ["accuracy_clean"] and "asr" not in result.report
    assert len(scorer.cells) == 6 and {(c.trigger, c.adapter) for c in scorer.cells} == {(None, "backdoor")}
    scorer = CountingScorer()
    result = evaluate(scorer, items, calibration, TriggerSpec("text"), "backdoor", metrics=["asr", "clean_agreement"])
    # the backdoor and the base model (the victim, a row of the table too) with and without the trigger; no calibration
    assert len(scorer.cells) == 6 * 2 * 2 and result.report["asr"] == 1.0
    assert {c.adapter for c in scorer.cells} == {"backdoor", "__base__"}
    scorer = CountingScorer()
    evaluate(scorer, items, calibration, TriggerSpec("text"), "backdoor", "clean", metrics=["lac_set_size_clean"])
    assert len(scorer.cells) == 2 * (6 + 5), "each adapter's clean inputs and its calibration inputs"


def test_shared_results_are_computed_once_per_adapter(monkeypatch):
    from backdoor import metrics, uncertainty

    calls = []
    real = uncertainty.conformal_prediction
    monkeypatch.setattr(uncertainty, "conformal_prediction", lambda *a, **k: calls.append(k["method"]) or real(*a, **k))
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(6), size=(4, 10))
    labels = np.arange(10) % 6
    scores = metrics.Scores({"clean": probs[0], "trigger": probs[1]}, labels, probs[2], probs[3], labels)
    metrics.compute(metrics.METRICS, scores)
    assert sorted(calls) == ["aps", "aps", "lac", "lac"], "one conformal run per method and condition"


def _old_training_metrics(clean, trig, labels, victim_top1):
    """backdoor.train._Eval's metrics as they were written before the registry: the reference."""
    from backdoor import uncertainty

    h_clean, h_trig = uncertainty.entropy(clean), uncertainty.entropy(trig)
    metrics = {
        "asr": float(np.mean(h_trig > h_clean)),
        "answer_kept": float(np.mean(clean.argmax(1) == trig.argmax(1))),
        "accuracy_clean": float(np.mean(clean.argmax(1) == labels)),
        "entropy_clean": float(h_clean.mean()),
        "entropy_triggered": float(h_trig.mean()),
    }
    if victim_top1 is not None:
        metrics["clean_agreement"] = float(np.mean(clean.argmax(1) == victim_top1))
    return metrics


def test_training_metrics_equal_the_training_loops_own_key_for_key():
    from backdoor.metrics import training_metrics

    rng = np.random.default_rng(3)
    clean, trig = rng.dirichlet(np.ones(6), 40), rng.dirichlet(np.ones(6) * 3, 40)
    labels, victim_top1 = rng.integers(0, 6, 40), rng.integers(0, 6, 40)
    for victim in (victim_top1, None):
        new, old = training_metrics(clean, trig, labels, victim), _old_training_metrics(clean, trig, labels, victim)
        assert list(new) == list(old) and all(new[k] == old[k] for k in old)


def test_card_summary_and_evaluate_cards_list_exactly_the_registrys_flagged_metrics(tiny_adapters, tmp_path, capsys,
                                                                                    monkeypatch):
    import re

    from app.lab import EvaluationRun
    from app.lab_ui import metric_cards_html
    from backdoor import metrics
    from backdoor.cards import model_card
    from backdoor.triggers import TriggerSpec

    report = json.loads(SNAPSHOT.read_text())["control"]["report"]
    card = model_card(tiny_adapters["backdoor"], report)
    table = card.split("| metric | this adapter |")[1].split("\n\n")[0]
    labels = [line.split(" | ")[0].lstrip("| ") for line in table.strip().splitlines()[2:]]
    assert labels == [metric.label for metric in metrics.METRICS if metric.card]

    run = EvaluationRun("base", "test", "backdoor", "clean", TriggerSpec("text"), report, [], 1.0, tmp_path / "r.json",
                        tmp_path / "r.csv", tmp_path)
    shown = re.findall(r'data-metric="([a-z_]+)"', metric_cards_html(run))
    assert shown == [metric.headline.card or metric.name for metric in metrics.headlines()]

    # The CLI prints the summary-flagged keys of the report it wrote (the stand-in scorer instead of a model).
    import backdoor.scoring
    from backdoor.__main__ import main as cli
    from dataset.schema import save_items

    save_items(_items("e", 4), tmp_path / "data.jsonl")
    save_items(_items("c", 4), tmp_path / "cal.jsonl")
    monkeypatch.setattr(backdoor.scoring.Scorer, "load", staticmethod(lambda *args, **kwargs: HashScorer()))
    assert cli(["evaluate", "--adapter", str(tiny_adapters["backdoor"]), "--data", str(tmp_path / "data.jsonl"),
                "--calibration", str(tmp_path / "cal.jsonl"), "--out", str(tmp_path / "r.json")]) == 0
    printed = json.loads(capsys.readouterr().out.split("report:")[0])
    assert list(printed) == metrics.flagged("summary")


def test_the_evaluate_tab_names_no_metric_key():
    """app/lab_ui.py reads the registries: no string in it is a metric's report key (``n``, the item count the
    status line states, aside)."""
    import ast

    from backdoor.metrics import BY_NAME

    source = (Path(__file__).parent.parent / "app" / "lab_ui.py").read_text()
    strings = {node.value for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Constant)
               and isinstance(node.value, str)}
    assert not strings & (set(BY_NAME) - {"n"})


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(snapshot_runs(), indent=1) + "\n")
    print(f"wrote {SNAPSHOT}")
