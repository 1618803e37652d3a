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


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(snapshot_runs(), indent=1) + "\n")
    print(f"wrote {SNAPSHOT}")
