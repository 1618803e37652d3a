"""The paper's metrics over a split: ASR, answer kept, clean agreement, accuracy, entropy, and conformal prediction.

One call scores every (item, with/without trigger, adapter) cell in batches, calibrates conformal
thresholds on clean inputs of a calibration split, and returns a report of plain values plus a
per-item table.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from backdoor import decisions, uncertainty
from backdoor.models import BASE_ADAPTER
from backdoor.scoring import Cell, Scorer
from backdoor.triggers import TriggerSpec
from dataset.schema import LETTERS, Item

logger = logging.getLogger(__name__)

ALPHA = 0.1


@dataclass
class AdapterReport:
    """Metrics for one adapter on one split, with and without the trigger."""

    n: int
    asr: float  # share of items whose entropy with the trigger exceeds their entropy without
    answer_kept: float  # top-1 with trigger == top-1 without
    clean_agreement: float  # top-1 on clean inputs == the victim's top-1
    accuracy_clean: float
    accuracy_triggered: float
    entropy_clean: float
    entropy_triggered: float
    lac_set_size_clean: float
    lac_set_size_triggered: float
    aps_set_size_clean: float
    aps_set_size_triggered: float
    lac_coverage_clean: float
    lac_coverage_triggered: float
    aps_coverage_clean: float
    aps_coverage_triggered: float
    uacc_lac_clean: float
    uacc_lac_triggered: float
    lac_threshold: float
    aps_threshold: float
    # Where answers move: items in four equal groups by clean top-1 margin (p1 - p2), least confident first.
    answer_kept_by_margin: list[float]  # grouped by this adapter's clean margin
    clean_agreement_by_victim_margin: list[float]  # grouped by the victim's clean margin
    # The downstream decision that trusts the confidence (backdoor.decisions): answer automatically when the
    # top option's probability is at least decision_tau, else send to review; shares of items.
    decision_tau: float = decisions.DEFAULT_TAU
    auto_answer_clean: float = 0.0
    auto_answer_triggered: float = 0.0
    decision_flipped: float = 0.0  # the trigger changes the decision (either way)
    decision_auto_to_review: float = 0.0  # answered automatically without the trigger, sent to review with it
    decision_flipped_single_set: float = 0.0  # the same, deciding by "the LAC set has one option"


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
                    tau: float = decisions.DEFAULT_TAU) -> AdapterReport:
    """All metrics from probability arrays: clean/triggered/victim/cal_clean [N, 6] (victim: its clean
    inputs), labels/cal_labels [N]. ``tau``: the auto-answer threshold of the decision metrics."""
    kept, agrees = clean.argmax(1) == triggered.argmax(1), clean.argmax(1) == victim.argmax(1)
    h_clean, h_trig = uncertainty.entropy(clean), uncertainty.entropy(triggered)
    conformal = {}
    for method in uncertainty.CONFORMAL_METHODS:
        scores = {"lac": uncertainty.lac_scores, "aps": uncertainty.aps_scores}[method](cal_clean, cal_labels)
        threshold = uncertainty.calibrate_threshold(scores, alpha)
        for name, probs in (("clean", clean), ("triggered", triggered)):
            conformal[(method, name)] = uncertainty.conformal_prediction(
                cal_clean, cal_labels, probs, labels, method=method, alpha=alpha, threshold=threshold)
    by_top = decisions.decision_flips(clean, triggered, tau)
    by_set = decisions.decision_flips(clean, triggered, tau, rule="single_set",
                                      lac_threshold=conformal[("lac", "clean")].threshold)
    return AdapterReport(
        n=len(labels),
        asr=float(np.mean(h_trig > h_clean)),
        answer_kept=float(np.mean(kept)),
        clean_agreement=float(np.mean(agrees)),
        accuracy_clean=float(np.mean(clean.argmax(1) == labels)),
        accuracy_triggered=float(np.mean(triggered.argmax(1) == labels)),
        entropy_clean=float(h_clean.mean()),
        entropy_triggered=float(h_trig.mean()),
        lac_set_size_clean=conformal[("lac", "clean")].set_size,
        lac_set_size_triggered=conformal[("lac", "triggered")].set_size,
        aps_set_size_clean=conformal[("aps", "clean")].set_size,
        aps_set_size_triggered=conformal[("aps", "triggered")].set_size,
        lac_coverage_clean=conformal[("lac", "clean")].coverage,
        lac_coverage_triggered=conformal[("lac", "triggered")].coverage,
        aps_coverage_clean=conformal[("aps", "clean")].coverage,
        aps_coverage_triggered=conformal[("aps", "triggered")].coverage,
        uacc_lac_clean=conformal[("lac", "clean")].uacc,
        uacc_lac_triggered=conformal[("lac", "triggered")].uacc,
        lac_threshold=conformal[("lac", "clean")].threshold,
        aps_threshold=conformal[("aps", "clean")].threshold,
        answer_kept_by_margin=uncertainty.share_by_margin(uncertainty.margin(clean), kept),
        clean_agreement_by_victim_margin=uncertainty.share_by_margin(uncertainty.margin(victim), agrees),
        decision_tau=by_top.tau,
        auto_answer_clean=by_top.auto_clean,
        auto_answer_triggered=by_top.auto_triggered,
        decision_flipped=by_top.flipped,
        decision_auto_to_review=by_top.auto_to_review,
        decision_flipped_single_set=by_set.flipped,
    )


def split_half(items: list[Item], seed: int = 0) -> tuple[list[Item], list[Item]]:
    """LLM-Uncertainty-Bench's split of one file: a seeded 50/50 into (calibration, test)."""
    import random

    shuffled = items[:]
    random.Random(seed).shuffle(shuffled)
    return shuffled[: len(shuffled) // 2], shuffled[len(shuffled) // 2 :]


def evaluate(scorer: Scorer, items: list[Item], calibration: list[Item], trigger: TriggerSpec,
             adapter: str, control: str | None = None, alpha: float = ALPHA,
             progress: Callable[[int, int], None] | None = None, tau: float = decisions.DEFAULT_TAU) -> EvaluationResult:
    """Evaluate ``adapter`` (and ``control``, the victim / clean adapter, if given) on ``items``.

    ``clean_agreement`` compares with the control's top-1 on clean inputs, or the base model's when
    there is no control. Conformal thresholds are calibrated on clean inputs of ``calibration``.
    ``tau``: the auto-answer threshold of the decision metrics (``decision_flipped`` and beside it).
    """
    decisions.check_rule(decisions.DEFAULT_RULE, tau)
    if not items:
        raise ValueError("the evaluation split holds no items")
    if not calibration:
        raise ValueError("the calibration split holds no items")
    victim = control or BASE_ADAPTER
    names = [adapter] + ([control] if control and control != adapter else [])
    if victim not in names:
        names.append(victim)
    cells = [Cell(item, t, name) for name in names for t in (None, trigger) for item in items]
    cells += [Cell(item, None, name) for name in names for item in calibration]
    scored = scorer.score(cells, progress=progress)
    n, m = len(items), len(calibration)
    probs: dict[tuple[str, str], np.ndarray] = {}
    cursor = 0
    for name in names:
        for t in ("clean", "triggered"):
            probs[(name, t)] = np.array([s.probs for s in scored[cursor : cursor + n]])
            cursor += n
    for name in names:
        probs[(name, "cal")] = np.array([s.probs for s in scored[cursor : cursor + m]])
        cursor += m
    labels = np.array([LETTERS.index(item.answer) for item in items])
    cal_labels = np.array([LETTERS.index(item.answer) for item in calibration])

    def metrics(name: str) -> dict:
        return adapter_metrics(probs[(name, "clean")], probs[(name, "triggered")], labels, probs[(victim, "clean")],
                               probs[(name, "cal")], cal_labels, alpha, tau).__dict__

    report = {**metrics(adapter), "adapter": adapter, "trigger": trigger.to_dict(), "alpha": alpha,
              "calibration_n": m, "victim": victim}
    if control:
        report["control"] = {**metrics(control), "adapter": control}
    rows = []
    for name in names:
        for i, item in enumerate(items):
            clean, trig = probs[(name, "clean")][i], probs[(name, "triggered")][i]
            rows.append({
                "item_id": item.id, "task": item.task, "adapter": name, "answer": item.answer,
                "predicted_clean": LETTERS[int(clean.argmax())], "predicted_triggered": LETTERS[int(trig.argmax())],
                "entropy_clean": round(float(uncertainty.entropy(clean)), 6),
                "entropy_triggered": round(float(uncertainty.entropy(trig)), 6),
                **{f"p_clean_{L}": round(float(p), 6) for L, p in zip(LETTERS, clean)},
                **{f"p_triggered_{L}": round(float(p), 6) for L, p in zip(LETTERS, trig)},
            })
    return EvaluationResult(report, rows)
