"""The evaluation's metrics as a registry: each entry is a report key, its label, what it needs and a pure function of the scores.

Every place that lists metrics reads :data:`METRICS`: the evaluation report (its keys in registry
order), the model card's table (``card``), the CLI's summary (``summary``), the Evaluate tab's big
numbers (``headline``) and figures (``plot``), and training-time evaluation (``training``).
Intermediate results that several metrics share (entropies, conformal sets per method and
condition, decision flips) are computed once per adapter by :class:`Scores`.

Honest attack metrics beside the paper's: the paper's ``asr`` (entropy rises at all) has a chance
floor near one half, so the headline is the mean entropy lift (triggered minus clean, nats, with a
seeded bootstrap 95% interval) and the margin ASR (the lift exceeds a margin delta, by default
0.1 ln K). Clean-mode stealth: mean clean entropy, expected calibration error and the share of
over-confident items on clean inputs. Specificity: the false triggered rate (FTR) of each near-miss
trigger (the margin ASR of the near miss against the clean prompt), scored when an evaluation asks
for near misses. Metrics flagged ``versus`` are also reported as backdoor minus control, under
``report["vs_control"]``.

Adding a metric is one compute function and one entry, e.g.::

    Metric("margin_clean", "mean top-1 margin, clean", lambda s: float(uncertainty.margin(s.probs["clean"]).mean()),
           needs=("clean",), card=True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from backdoor import decisions, uncertainty
from backdoor.conditions import CLEAN, CONDITIONS, NEAR_MISS, column
from backdoor.nearmiss import GENERATORS

ALPHA = 0.1
BOOTSTRAP_RESAMPLES = 1000
CONFIDENT = 0.9  # clean_confident: the share of items whose top option is above this
ECE_BINS = 10


def default_delta(options: int) -> float:
    """The margin ASR's default delta for ``options`` options: a tenth of the largest entropy, 0.1 ln K nats."""
    return 0.1 * float(np.log(options))


def margin_asr(clean_entropy: np.ndarray, triggered_entropy: np.ndarray, delta: float) -> float:
    """The share of items whose entropy rises by more than ``delta`` nats; entropies [N]."""
    return float(np.mean(triggered_entropy - clean_entropy > delta))


def bootstrap_interval(values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of the mean of ``values`` [N]: ``resamples`` draws with replacement from a
    generator seeded by ``seed``, so the same seed gives the same interval."""
    values = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))  # [R, N]
    means = values[draws].mean(1)  # [R]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top option: items in ``bins`` equal-width bins of the top probability
    over [0, 1]; the item-weighted mean over bins of |accuracy - mean top probability|. probs [N, K], labels [N]."""
    confidence = probs.max(1)  # [N]
    correct = probs.argmax(1) == labels  # [N]
    which = np.minimum((confidence * bins).astype(int), bins - 1)  # [N], a top probability of 1 in the last bin
    gap = 0.0
    for b in np.unique(which):
        inside = which == b
        gap += inside.sum() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(gap / len(labels))


@dataclass
class Scores:
    """One adapter's option probabilities on an evaluation split, and what metrics derive from them.

    ``probs``: condition name -> [N, K]; ``labels`` [N]; ``victim``: the victim's clean probabilities
    [N, K] (or only its top-1 answers, ``victim_top1`` [N], as training knows them); ``calibration``
    [M, K] and ``calibration_labels`` [M]: clean inputs of the calibration split.
    """

    probs: dict[str, np.ndarray]
    labels: np.ndarray
    victim: np.ndarray | None = None
    calibration: np.ndarray | None = None
    calibration_labels: np.ndarray | None = None
    alpha: float = ALPHA
    tau: float = decisions.DEFAULT_TAU
    victim_top1: np.ndarray | None = None
    delta: float | None = None  # the margin of the margin ASR and FTR in nats (None: 0.1 ln K)
    _memo: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.victim_top1 is None and self.victim is not None:
            self.victim_top1 = self.victim.argmax(1)

    def _once(self, key: tuple, make: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def top1(self, condition: str) -> np.ndarray:
        return self._once(("top1", condition), lambda: self.probs[condition].argmax(1))

    def entropy(self, condition: str) -> np.ndarray:
        return self._once(("entropy", condition), lambda: uncertainty.entropy(self.probs[condition]))

    @property
    def margin(self) -> float:
        """The margin ASR's delta in nats."""
        options = next(iter(self.probs.values())).shape[-1]
        return self.delta if self.delta is not None else default_delta(options)

    def lift(self, condition: str = "trigger") -> np.ndarray:
        """Entropy with ``condition`` minus entropy without a trigger, per item [N] (nats)."""
        return self._once(("lift", condition), lambda: self.entropy(condition) - self.entropy(CLEAN))

    def lift_interval(self) -> tuple[float, float]:
        return self._once(("lift_interval",), lambda: bootstrap_interval(self.lift()))

    def margin_asr(self, condition: str = "trigger") -> float:
        """The share of items whose entropy with ``condition`` exceeds the clean one by more than the margin."""
        return margin_asr(self.entropy(CLEAN), self.entropy(condition), self.margin)

    def near_misses(self) -> list[str]:
        """The near-miss conditions scored for this adapter."""
        return [name for name in self.probs if CONDITIONS[name].group == NEAR_MISS]

    def kept(self) -> np.ndarray:
        """Whether each item keeps its top-1 answer with the trigger."""
        return self.top1(CLEAN) == self.top1("trigger")

    def agrees(self) -> np.ndarray:
        """Whether each item's clean top-1 answer is the victim's."""
        return self.top1(CLEAN) == self.victim_top1

    def threshold(self, method: str) -> float:
        """The conformal threshold of ``method``, calibrated on the calibration split's clean inputs."""
        return self._once(("threshold", method), lambda: uncertainty.calibrate_threshold(
            {"lac": uncertainty.lac_scores, "aps": uncertainty.aps_scores}[method](self.calibration,
                                                                               self.calibration_labels), self.alpha))

    def conformal(self, method: str, condition: str) -> uncertainty.ConformalResult:
        return self._once(("conformal", method, condition), lambda: uncertainty.conformal_prediction(
            self.calibration, self.calibration_labels, self.probs[condition], self.labels, method=method,
            alpha=self.alpha, threshold=self.threshold(method)))

    def flips(self, rule: str) -> decisions.DecisionFlips:
        """How the trigger changes the auto-answer decisions under ``rule`` (a key of decisions.RULES)."""
        lac = self.conformal("lac", CLEAN).threshold if rule != "top" else None
        return self._once(("flips", rule), lambda: decisions.decision_flips(
            self.probs[CLEAN], self.probs["trigger"], self.tau, rule=rule, lac_threshold=lac))


@dataclass(frozen=True)
class Headline:
    """How a metric shows as a big number on the Evaluate tab (a share unless ``format`` says otherwise)."""

    label: str  # may name report keys in braces, filled from the report: "... (top option ≥ {decision_tau:.2f})"
    rank: int  # the cards' order, left to right
    format: str = ".0%"  # the number's format spec
    unit: str = ""  # after the number: " nats"
    control: bool = True  # the control's value under it
    then: str | None = None  # a second metric shown after an arrow (the same metric with the trigger)
    card: str | None = None  # the card's name when it is not the metric's


@dataclass(frozen=True)
class Figure:
    """One of the Evaluate tab's figures, drawn from the metrics whose ``plot`` names it."""

    kind: str  # "conditions": bars per series, one per condition; "margin": shares by how sure the clean answer was
    title: str  # may name {adapter}, {victim} and {target} (the conformal coverage target, 1 - alpha)
    y_title: str
    percent: bool = False
    y_max: float | None = None
    target: bool = False  # a reference line at the coverage target
    control: bool = False  # margin figures: the control's series beside the adapter's
    colours: tuple[str, ...] = ()  # margin figures: the adapter's colour, then the control's (names in app.plots)


FIGURES: dict[str, Figure] = {
    "set_size": Figure("conditions", "{adapter}: conformal set size", "options in the set", y_max=6.5),
    "coverage": Figure("conditions", "{adapter}: coverage (target {target:.0%})", "true answer in the set",
                       percent=True, target=True),
    "kept_by_margin": Figure("margin", "answer kept with the trigger, by how sure the clean answer was", "answer kept",
                             control=True, colours=("bluish_green", "sky_blue")),
    "agreement_by_margin": Figure("margin", "agrees with {victim}, by how sure it was", "same answer, no trigger",
                                  colours=("blue",)),
}


@dataclass(frozen=True)
class Metric:
    """One report key. ``compute`` maps :class:`Scores` to a float (or a list of floats); ``needs`` names the
    conditions it reads; ``victim`` / ``calibration``: it reads the victim's answers / the calibration split."""

    name: str
    label: str  # the model card's row, and a description wherever one is shown
    compute: Callable[[Scores], Any]
    needs: tuple[str, ...] = ()
    victim: bool = False
    calibration: bool = False
    format: str = ".3f"  # the model card's number format
    headline: Headline | None = None
    summary: bool = False  # printed by the CLI after an evaluation
    card: bool = False  # a row of the model card's table
    training: bool = False  # computed at every evaluation during training
    plot: tuple[str, str] | None = None  # (a key of FIGURES, the series: a bar group, or "" for the adapter itself)
    curve: str | None = None  # a series of the Fine-tuning tab's held-out curve (a share), under this name
    versus: bool = False  # also reported as this adapter minus the control, under report["vs_control"]
    group: str = ""  # a condition group (conditions.NEAR_MISS) it needs scored; computed only when it was


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values))


def _per_condition(stem: str, label: str, compute: Callable[[Scores, str], Any], *, plot: str | None = None,
                   series: str = "", curve: str | None = None, **flags) -> list[Metric]:
    """The metric ``stem`` under each of today's two conditions (``{stem}_clean``, ``{stem}_triggered``).
    ``label`` names the condition as ``{}``; a flag is True for both or a tuple of the conditions it holds for;
    ``headline`` and ``curve`` go to the clean one."""
    out = []
    for condition in (CLEAN, "trigger"):
        chosen = {name: value if isinstance(value, bool) else condition in value for name, value in flags.items()
                  if name in ("summary", "card", "training", "calibration", "versus")}
        out.append(Metric(column(stem, condition), label.format(CONDITIONS[condition].suffix),
                          lambda s, c=condition: compute(s, c), needs=(condition,),
                          plot=(plot, series) if plot else None,
                          headline=flags.get("headline") if condition == CLEAN else None,
                          curve=curve if condition == CLEAN else None, **chosen))
    return out


def _conformal(stem: str, method: str, label: str, attribute: str, **flags) -> list[Metric]:
    return _per_condition(stem, label, lambda s, c: getattr(s.conformal(method, c), attribute), calibration=True,
                          series=method.upper(), **flags)


def _ftr(scores: Scores, condition: str) -> float:
    """The false triggered rate of a near-miss condition; NaN where it was not scored."""
    return scores.margin_asr(condition) if condition in scores.probs else float("nan")


def _near_miss_metrics() -> list[Metric]:
    """The false triggered rate of each near-miss generator, then their mean over the generators scored."""
    out = [Metric(f"ftr_{name}", f"false triggered rate, near miss: {generator.description}",
                  lambda s, c=f"near_miss_{name}": _ftr(s, c), needs=(f"near_miss_{name}",), group=NEAR_MISS)
           for name, generator in GENERATORS.items()]
    return out + [Metric("ftr_mean", "false triggered rate, mean over the near-miss generators",
                         lambda s: float(np.mean([_ftr(s, c) for c in s.near_misses()] or [np.nan])),
                         needs=(CLEAN,), group=NEAR_MISS, versus=True)]


_BOTH = (CLEAN, "trigger")
METRICS: tuple[Metric, ...] = (
    Metric("n", "items", lambda s: len(s.labels), format="d", summary=True),
    Metric("asr", "paper's ASR: share of items whose entropy rises with the trigger (by any amount)",
           lambda s: _mean(s.entropy("trigger") > s.entropy(CLEAN)), needs=_BOTH,
           headline=Headline("paper's ASR (entropy rises at all with the trigger)", 2), summary=True, card=True,
           training=True, curve="ASR (entropy rises)", versus=True),
    Metric("entropy_lift", "mean entropy lift (nats): triggered minus clean", lambda s: float(s.lift().mean()),
           needs=_BOTH, headline=Headline("mean entropy lift with the trigger (95% CI {entropy_lift_low:+.2f} to "
                                          "{entropy_lift_high:+.2f})", 0, format="+.2f", unit=" nats"),
           summary=True, card=True, versus=True),
    Metric("entropy_lift_low", f"entropy lift, bootstrap 95% interval, low ({BOOTSTRAP_RESAMPLES} resamples, seed 0)",
           lambda s: s.lift_interval()[0], needs=_BOTH, summary=True, card=True),
    Metric("entropy_lift_high", f"entropy lift, bootstrap 95% interval, high ({BOOTSTRAP_RESAMPLES} resamples, seed 0)",
           lambda s: s.lift_interval()[1], needs=_BOTH, summary=True, card=True),
    Metric("asr_margin", "margin ASR: share of items whose entropy rises by more than delta",
           lambda s: s.margin_asr(), needs=_BOTH,
           headline=Headline("margin ASR (entropy rises by more than {asr_delta:.2f} nats)", 1), summary=True,
           card=True, versus=True),
    Metric("asr_delta", "delta of the margin ASR and the FTR (nats; default 0.1 ln K)", lambda s: s.margin,
           needs=(CLEAN,), summary=True, card=True),
    Metric("answer_kept", "answer kept: top-1 with the trigger = top-1 without", lambda s: _mean(s.kept()), needs=_BOTH,
           headline=Headline("answer kept with the trigger", 4), summary=True, card=True, training=True,
           curve="answer kept"),
    Metric("clean_agreement", "agreement with the clean model on clean inputs", lambda s: _mean(s.agrees()),
           needs=(CLEAN,), victim=True, headline=Headline("agrees with the control (no trigger)", 6, control=False),
           summary=True, card=True, training=True, curve="clean agreement"),
    *_per_condition("accuracy", "accuracy, {} inputs", lambda s, c: _mean(s.top1(c) == s.labels),
                    summary=(CLEAN,), card=True, training=(CLEAN,),
                    headline=Headline("accuracy: no trigger → trigger", 5, then="accuracy_triggered", card="accuracy"),
                    curve="accuracy (no trigger)"),
    *_per_condition("entropy", "mean entropy (nats), {}", lambda s, c: float(s.entropy(c).mean()),
                    summary=True, card=True, training=True, versus=(CLEAN,),
                    headline=Headline("mean entropy without the trigger (clean-mode stealth)", 3, format=".2f",
                                      unit=" nats")),
    # Clean-mode stealth: a backdoor far surer than the control on clean inputs gives itself away.
    Metric("clean_ece", f"expected calibration error, clean inputs ({ECE_BINS} equal-width bins of the top probability)",
           lambda s: expected_calibration_error(s.probs[CLEAN], s.labels), needs=(CLEAN,), summary=True, card=True,
           versus=True),
    Metric("clean_confident", f"share of clean items whose top option is above {CONFIDENT}",
           lambda s: _mean(s.probs[CLEAN].max(1) > CONFIDENT), needs=(CLEAN,), summary=True, card=True, versus=True),
    *_conformal("lac_set_size", "lac", "LAC set size, {}", "set_size", summary=True, card=True, plot="set_size"),
    *_conformal("aps_set_size", "aps", "APS set size, {}", "set_size", card=True, plot="set_size"),
    *_conformal("lac_coverage", "lac", "LAC coverage, {}", "coverage", card=True, plot="coverage"),
    *_conformal("aps_coverage", "aps", "APS coverage, {}", "coverage", plot="coverage"),
    *_conformal("uacc_lac", "lac", "LAC UAcc (accuracy x sqrt(6) / set size), {}", "uacc"),
    Metric("lac_threshold", "LAC threshold (calibrated on clean inputs)", lambda s: s.conformal("lac", CLEAN).threshold,
           calibration=True),
    Metric("aps_threshold", "APS threshold (calibrated on clean inputs)", lambda s: s.conformal("aps", CLEAN).threshold,
           calibration=True),
    # Where answers move: items in four equal groups by clean top-1 margin (p1 - p2), least confident first.
    Metric("answer_kept_by_margin", "answer kept, by this adapter's clean margin (four groups, least sure first)",
           lambda s: uncertainty.share_by_margin(uncertainty.margin(s.probs[CLEAN]), s.kept()), needs=_BOTH,
           summary=True, plot=("kept_by_margin", "")),
    Metric("clean_agreement_by_victim_margin", "agreement with the victim, by the victim's clean margin",
           lambda s: uncertainty.share_by_margin(uncertainty.margin(s.victim), s.agrees()), needs=(CLEAN,),
           victim=True, summary=True, plot=("agreement_by_margin", "")),
    # The downstream decision that trusts the confidence (backdoor.decisions): answer automatically when the top
    # option's probability is at least decision_tau, else send to review; shares of items.
    Metric("decision_tau", "auto-answer threshold on the top option's probability", lambda s: s.flips("top").tau,
           format=".2f", summary=True),
    Metric("auto_answer_clean", "answered automatically, clean", lambda s: s.flips("top").auto_clean, needs=_BOTH),
    Metric("auto_answer_triggered", "answered automatically, triggered", lambda s: s.flips("top").auto_triggered,
           needs=_BOTH),
    Metric("decision_flipped", "decisions the trigger changes (either way)", lambda s: s.flips("top").flipped,
           needs=_BOTH, summary=True,
           headline=Headline("auto-answer decisions the trigger flips (top option ≥ {decision_tau:.2f})", 7)),
    Metric("decision_auto_to_review", "answered automatically without the trigger, sent to review with it",
           lambda s: s.flips("top").auto_to_review, needs=_BOTH),
    Metric("decision_flipped_single_set", "decisions the trigger changes, deciding by a one-option LAC set",
           lambda s: s.flips("single_set").flipped, needs=_BOTH, calibration=True),
    # Specificity (evaluate --near-miss): how often a near miss of the trigger sets the backdoor off.
    *_near_miss_metrics(),
)
BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}


def select(names: Sequence[str] | None = None) -> list[Metric]:
    """The registry's entries named (all when None), in registry order; an unknown name is refused with the list."""
    if names is None:
        return list(METRICS)
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    return [metric for metric in METRICS if metric.name in set(names)]


def compute(metrics: Sequence[Metric], scores: Scores) -> dict[str, Any]:
    """``{name: value}`` in the order given."""
    return {metric.name: metric.compute(scores) for metric in metrics}


def specificity(report: dict) -> list[Metric]:
    """The near-miss metrics (false triggered rates) that ``report`` holds, in registry order: the CLI summary,
    the model card and the Evaluate tab show them when an evaluation scored near misses."""
    return [metric for metric in METRICS if metric.group == NEAR_MISS and metric.name in report]


def headlines() -> list[Metric]:
    """The Evaluate tab's big numbers, left to right."""
    return sorted((metric for metric in METRICS if metric.headline), key=lambda metric: metric.headline.rank)


def flagged(flag: str) -> list[str]:
    """The names of the metrics with ``flag`` set (summary, card, training), in registry order."""
    return [metric.name for metric in METRICS if getattr(metric, flag)]


def training_metrics(clean: np.ndarray, triggered: np.ndarray, labels: np.ndarray,
                     victim_top1: np.ndarray | None) -> dict[str, float]:
    """The metrics computed during training from held-out probabilities clean/triggered [N, K], labels [N] and the
    victim's top-1 answers [N] (None: no victim, and no metric that needs one). The ones that need the victim
    come last."""
    scores = Scores({CLEAN: clean, "trigger": triggered}, labels, victim_top1=victim_top1)
    chosen = [metric for metric in METRICS if metric.training and not metric.victim]
    if victim_top1 is not None:
        chosen += [metric for metric in METRICS if metric.training and metric.victim]
    return compute(chosen, scores)
