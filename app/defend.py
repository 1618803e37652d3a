"""The defenses in the dashboard: each backdoor's shipped defense reports, the per-question view of a defense that
inspects prompts (the attack demo's Defense choice), and defense runs as background jobs.

Nothing here imports gradio or names a defense: the choices, labels, kinds and options come from
:data:`backdoor.defenses.DEFENSES`. A shipped report (``<adapters>/<backdoor>/defenses/<defense>.json``, written by
``python -m backdoor defend``) is what the Defend tab shows at once; a detector's threshold in it is also the one
the attack demo compares a question's score with.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from app.service import AdapterChoice, Comparison, DashboardError, DashboardService
from backdoor.config import ConfigError
from backdoor.defend import REPORTS_FOLDER, DefenseRequest, shipped_reports
from backdoor.defenses import DEFENSES, Defense, Inspection, get_defense, make_options
from backdoor.jobs import Job, JobError, JobRegistry
from backdoor.scoring import OptionScores, scores_from_probs
from backdoor.triggers import TriggeredPrompt

logger = logging.getLogger(__name__)

NO_DEFENSE = "none"  # the attack demo's choice that shows the question as the model reads it


def defense_choices() -> list[tuple[str, str]]:
    """(label, name) of every registered defense, in registry order."""
    return [(defense.label, name) for name, defense in DEFENSES.items()]


def demo_defense_choices() -> list[tuple[str, str]]:
    """The attack demo's Defense choice: none, then every defense that can show one question."""
    return [("no defense", NO_DEFENSE)] + [(f"defense: {defense.label}", name) for name, defense in DEFENSES.items()
                                           if defense.inspects]


def defense_named(name: str | None) -> Defense:
    """The registered defense ``name``, or a DashboardError that lists the known ones."""
    try:
        return get_defense(str(name or ""))
    except ValueError as err:
        raise DashboardError(f"{err}. Pick a defense from the list.") from None


def trigger_kind(report: dict) -> str | None:
    """The trigger kind a report was measured with (the runner writes the trigger as a dict or its kind)."""
    trigger = report.get("trigger")
    if isinstance(trigger, dict):
        return trigger.get("kind")
    return trigger if isinstance(trigger, str) else None


def same_name(named: object, name: str) -> bool:
    """Whether a report's adapter or control (a folder name or a path) is the adapter folder ``name``."""
    return isinstance(named, str) and bool(named) and Path(named).name == name


@dataclass(frozen=True)
class ColumnDefense:
    """One column of the attack demo seen by a defense: its inspection, and where the defense changed the prompt,
    the column's distribution on the changed prompt."""

    adapter: AdapterChoice
    inspection: Inspection
    filtered: OptionScores | None = None


@dataclass(frozen=True)
class DefenseView:
    """The question of a comparison as one defense sees it: the prompt it inspected and every column's view."""

    defense: Defense
    prompt: str
    columns: tuple[ColumnDefense, ...]
    seconds: float

    @property
    def removed(self) -> tuple[tuple[int, int], ...]:
        """The spans the prompt box strikes through: the first backdoored column's (the suspect), else the first's."""
        chosen = next((c for c in self.columns if c.adapter.role == "backdoor"), self.columns[0] if self.columns else None)
        return chosen.inspection.removed if chosen is not None else ()


class DefendService:
    """The defenses' side of the dashboard; one per app, shared by every session."""

    def __init__(self, service: DashboardService):
        self.service = service

    # --- shipped reports -----------------------------------------------------------------------

    def folder(self, adapter: str) -> Path:
        return Path(self.service.config.adapters_dir) / adapter

    def backdoors(self, base: str) -> list[AdapterChoice]:
        """The backdoored adapters on offer for ``base`` (the Defend tab's suspects)."""
        return [choice for choice in self.service.catalog(base).offered if choice.role == "backdoor"]

    def reports(self, adapter: str | None) -> dict[str, dict]:
        return shipped_reports(self.folder(adapter)) if adapter else {}

    def report(self, adapter: str | None, defense: str | None, kind: str | None) -> dict | None:
        """The shipped report of ``defense`` on ``adapter`` measured with a trigger of ``kind``; None if there is none."""
        report = self.reports(adapter).get(str(defense or ""))
        if report is None or (kind and trigger_kind(report) not in (None, kind)):
            return None
        return report

    def calibrated(self, adapter: str, defense: Defense):
        """A detector's threshold for a column and the options it was calibrated with (the column's inspection must
        use the same ones): from the adapter's own shipped report, else (a clean control) from a backdoor's report
        measured with this adapter as its control. No threshold (and the defaults) where no report says, or where
        the report's options are not this version's."""
        found = None
        own = self.reports(adapter).get(defense.name)
        if own is not None and own.get("threshold") is not None:
            found = (float(own["threshold"]), own.get("options"))
        else:
            for folder in sorted(Path(self.service.config.adapters_dir).glob(f"*/{REPORTS_FOLDER}/{defense.name}.json")):
                report = shipped_reports(folder.parent.parent).get(defense.name) or {}
                control = report.get("on_control") or {}
                if same_name(report.get("control"), adapter) and control.get("threshold") is not None:
                    found = (float(control["threshold"]), report.get("options"))
                    break
        if found is not None:
            try:
                return found[0], make_options(defense, found[1] if isinstance(found[1], dict) else {})
            except (ConfigError, TypeError, ValueError):
                pass
        return None, make_options(defense)

    # --- the attack demo -----------------------------------------------------------------------

    def inspect(self, comparison: Comparison, defense_name: str, trigger_on: bool) -> DefenseView:
        """How ``defense_name`` sees the prompt the comparison shows (triggered when ``trigger_on``) under every
        column; where it changes the prompt (a filter), every column's changed prompt is scored in one call."""
        started = time.perf_counter()
        defense = defense_named(defense_name)
        if not defense.inspects:
            raise DashboardError(f"The {defense.label} defense cannot show one question; pick it in the Defend tab.")
        names = [column.adapter.name for column in comparison.columns]
        scorer, choices, arm_names = self.service.attach(comparison.base, names)
        prompt = comparison.triggered_prompt.text if trigger_on else comparison.clean_prompt
        inspections = []
        for choice, arm in zip(choices, arm_names):
            threshold, options = self.calibrated(choice.name, defense)
            inspections.append(defense.inspect(scorer, arm, prompt, options, threshold))
        changed = [index for index, inspection in enumerate(inspections) if inspection.text != prompt]
        filtered: dict[int, OptionScores] = {}
        if changed:
            arms = scorer.arms
            texts = [scorer.model_text(arms[arm_names[i]].prefix + inspections[i].text) for i in changed]
            probs = scorer.option_probs(texts, [arm_names[i] for i in changed])
            for row, index in zip(probs, changed):
                filtered[index] = scores_from_probs(row, comparison.item.id, arm_names[index], None,
                                                    TriggeredPrompt(inspections[index].text, (0, 0), ""))
        columns = tuple(ColumnDefense(choice, inspection, filtered.get(index))
                        for index, (choice, inspection) in enumerate(zip(choices, inspections)))
        return DefenseView(defense, prompt, columns, time.perf_counter() - started)

    # --- defense jobs --------------------------------------------------------------------------

    def request(self, base: str | None, adapter: str | None, kind: str | None, defense: str | None) -> DefenseRequest:
        """What the Run button asks for: ``defense`` on the backdoored ``adapter`` with a trigger of ``kind`` (the
        adapter's own trigger when it is of that kind), the first clean adapter as the control, on the test split."""
        base = self.service.check_base(base)
        chosen = defense_named(defense)
        catalog = self.service.catalog(base)
        suspect = catalog.get(adapter) if adapter else None
        if suspect is None or suspect.role != "backdoor":
            raise DashboardError("Pick a backdoored adapter from the list first.")
        own = suspect.trigger
        trigger = own if own is not None and own.kind == kind else self.service.trigger(kind)
        control = next((choice for choice in catalog.offered if choice.role == "clean"), None)
        if chosen.needs_control and control is None:
            raise DashboardError(f"The {chosen.label} defense needs a trusted clean model, and no clean adapter is on "
                                 "offer; train one in the Fine-tuning tab first.")
        return DefenseRequest(defense=chosen.name, adapter=str(self.folder(suspect.name)), trigger=trigger.to_dict(),
                              control=str(self.folder(control.name)) if control is not None else "",
                              base_model=base)

    def submit(self, registry: JobRegistry | None, base: str | None, adapter: str | None, kind: str | None,
               defense: str | None) -> Job:
        """Queue the defense run as a background job (checked before anything starts) and make sure the worker runs it."""
        if registry is None:
            raise DashboardError("Defense runs are switched off here (demo mode, or no jobs folder); the Defend tab "
                                 "shows the shipped reports only.")
        request = self.request(base, adapter, kind, defense)
        try:
            job = registry.submit_defense(request)
        except (ConfigError, JobError) as err:
            raise DashboardError(f"Not started — {err}.") from None
        registry.ensure_worker()
        logger.info("queued defense job %s (%s on %s)", job.id, request.defense, adapter)
        return job
