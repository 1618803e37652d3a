"""The paper's metrics over a split: one batched scoring call, then the metrics registry over its probabilities.

One call scores every (item, condition, adapter) cell that the requested metrics need
(:mod:`backdoor.conditions`), plus the clean inputs of a calibration split for the conformal
thresholds, and returns a report of plain values (:mod:`backdoor.metrics`, in registry order)
plus a per-item table. With ``near_miss`` it also scores one near miss per generator of the
trigger's kind (:mod:`backdoor.nearmiss`) and reports each one's false triggered rate.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from backdoor import decisions, uncertainty
from backdoor.conditions import CLEAN, CONDITIONS, NEAR_MISS, column, near_miss_conditions, ungrouped
from backdoor.metrics import ALPHA, Metric, Scores, compute, select
from backdoor.models import BASE_ADAPTER
from backdoor.scoring import Scorer
from backdoor.triggers import TriggerSpec
from dataset.schema import LETTERS, Item

logger = logging.getLogger(__name__)

__all__ = ["ALPHA", "EvaluationResult", "MetricValues", "adapter_metrics", "evaluate", "split_half"]


class MetricValues(dict):
    """One adapter's metrics by report key, in registry order; also readable as attributes (``values.asr``)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class EvaluationResult:
    report: dict  # JSON-ready: the backdoored adapter's metrics at the top level, the control's under "control"
    rows: list[dict] = field(default_factory=list)  # one per item and adapter

    def save(self, json_path: str | Path, csv_path: str | Path | None = None) -> None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(self.report, indent=2) + "\n")
        csv_path = Path(csv_path) if csv_path else json_path.with_suffix(".csv")
        with csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]) if self.rows else ["item_id"])
            writer.writeheader()
            writer.writerows(self.rows)


def adapter_metrics(clean: np.ndarray, triggered: np.ndarray, labels: np.ndarray, victim: np.ndarray,
                    cal_clean: np.ndarray, cal_labels: np.ndarray, alpha: float = ALPHA,
                    tau: float = decisions.DEFAULT_TAU, delta: float | None = None) -> MetricValues:
    """Every registered metric of the clean and triggered conditions from probability arrays:
    clean/triggered/victim/cal_clean [N, 6] (victim: its clean inputs), labels/cal_labels [N]. ``tau``: the
    auto-answer threshold of the decision metrics; ``delta``: the margin ASR's margin (None: 0.1 ln K)."""
    scores = Scores({CLEAN: clean, "trigger": triggered}, labels, victim, cal_clean, cal_labels, alpha, tau, delta=delta)
    return MetricValues(compute([metric for metric in select() if not metric.group], scores))


def _measurable(chosen: list[Metric], trigger: TriggerSpec, near_miss: bool, named: bool) -> list[Metric]:
    """The metrics to compute: ungrouped ones, and near-miss ones when near misses are asked for (by ``near_miss``
    or by name) and the trigger's kind has the near miss. A named metric that cannot be measured is refused."""
    asked = near_miss or (named and any(metric.group == NEAR_MISS for metric in chosen))
    scorable = set(ungrouped()) | (set(near_miss_conditions(trigger)) if asked else set())
    if not named:
        return [metric for metric in chosen if (asked or not metric.group) and set(metric.needs) <= scorable]
    unmeasurable = [metric.name for metric in chosen if not set(metric.needs) <= scorable]
    if unmeasurable:
        raise ValueError(f"{', '.join(unmeasurable)} cannot be measured with a {trigger.kind} trigger: "
                         f"its near misses are {', '.join(near_miss_conditions(trigger))}")
    return chosen


def split_half(items: list[Item], seed: int = 0) -> tuple[list[Item], list[Item]]:
    """LLM-Uncertainty-Bench's split of one file: a seeded 50/50 into (calibration, test)."""
    import random

    shuffled = items[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[: len(shuffled) // 2], shuffled[len(shuffled) // 2 :]


def evaluate(scorer: Scorer, items: list[Item], calibration: list[Item], trigger: TriggerSpec,
             adapter: str, control: str | None = None, alpha: float = ALPHA,
             progress: Callable[[int, int], None] | None = None, tau: float = decisions.DEFAULT_TAU,
             metrics: Sequence[str] | None = None, near_miss: bool = False,
             delta: float | None = None) -> EvaluationResult:
    """Evaluate ``adapter`` (and ``control``, the victim / clean adapter, if given) on ``items``.

    ``clean_agreement`` compares with the control's top-1 on clean inputs, or the base model's when
    there is no control. Conformal thresholds are calibrated on clean inputs of ``calibration``.
    ``tau``: the auto-answer threshold of the decision metrics (``decision_flipped`` and beside it).
    ``metrics``: report keys of :data:`backdoor.metrics.METRICS` (None: all); only the conditions,
    calibration cells and victim they need are scored.
    ``near_miss``: also score one near miss per generator of the trigger's kind and report each one's false
    triggered rate (naming a near-miss metric in ``metrics`` asks for them too). ``delta``: the margin of the
    margin ASR and the FTR in nats (None: 0.1 ln K). The control's metrics are under ``report["control"]`` and,
    for the metrics flagged ``versus``, this adapter minus the control under ``report["vs_control"]``.
    """
    decisions.check_rule(decisions.DEFAULT_RULE, tau)
    if not items:
        raise ValueError("the evaluation split holds no items")
    if not calibration:
        raise ValueError("the calibration split holds no items")
    if delta is not None and not delta >= 0:
        raise ValueError(f"the margin of the margin ASR must be at least 0 nats, not {delta}")
    chosen = _measurable(select(metrics), trigger, near_miss, named=metrics is not None)
    needs = {condition for metric in chosen for condition in metric.needs}
    if any(metric.group == NEAR_MISS for metric in chosen):
        needs |= set(near_miss_conditions(trigger))
    conditions = [name for name in CONDITIONS if name in needs or name == CLEAN]  # the rows always show clean
    calibrated = any(metric.calibration for metric in chosen)
    victim = control or BASE_ADAPTER
    names = [adapter] + ([control] if control and control != adapter else [])
    if victim not in names and any(metric.victim for metric in chosen):
        names.append(victim)
    # Cells in the order (adapter, condition, item), then every adapter's calibration cells: one batched call.
    groups: list[tuple[tuple[str, str], int]] = []  # ((adapter, condition), cells per item)
    cells = []
    for name in names:
        for condition in conditions:
            made = [CONDITIONS[condition].cells(item, trigger, name) for item in items]
            groups.append(((name, condition), len(made[0])))
            cells += [cell for per_item in made for cell in per_item]
    if calibrated:
        for name in names:
            groups.append(((name, "calibration"), 1))
            cells += [cell for item in calibration for cell in CONDITIONS[CLEAN].cells(item, trigger, name)]
    scored = scorer.score(cells, progress=progress)
    probs: dict[tuple[str, str], np.ndarray] = {}
    cursor = 0
    for key, per_item in groups:
        count = (len(calibration) if key[1] == "calibration" else len(items)) * per_item
        block = np.array([s.probs for s in scored[cursor : cursor + count]])
        probs[key] = block if per_item == 1 else block.reshape(-1, per_item, block.shape[-1])  # [N, K] or [N, C, K]
        cursor += count
    labels = np.array([LETTERS.index(item.answer) for item in items])
    cal_labels = np.array([LETTERS.index(item.answer) for item in calibration])

    def report_of(name: str) -> dict:
        scores = Scores({condition: probs[(name, condition)] for condition in conditions}, labels,
                        probs.get((victim, CLEAN)), probs.get((name, "calibration")), cal_labels, alpha, tau,
                        delta=delta)
        return compute(chosen, scores)

    report = {**report_of(adapter), "adapter": adapter, "trigger": trigger.to_dict(), "alpha": alpha,
              "calibration_n": len(calibration), "victim": victim}
    if control:
        report["control"] = {**report_of(control), "adapter": control}
        report["vs_control"] = {metric.name: report[metric.name] - report["control"][metric.name]
                                for metric in chosen if metric.versus}
    single = [condition for condition in conditions if probs[(adapter, condition)].ndim == 2]
    rows = []
    for name in names:
        for i, item in enumerate(items):
            per_condition = {condition: probs[(name, condition)][i] for condition in single}
            rows.append({
                "item_id": item.id, "task": item.task, "adapter": name, "answer": item.answer,
                **{column("predicted", c): LETTERS[int(p.argmax())] for c, p in per_condition.items()},
                **{column("entropy", c): round(float(uncertainty.entropy(p)), 6) for c, p in per_condition.items()},
                **{f"p_{CONDITIONS[c].suffix}_{L}": round(float(x), 6) for c, p in per_condition.items()
                   for L, x in zip(LETTERS, p)},
            })
    return EvaluationResult(report, rows)
