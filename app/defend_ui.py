"""The Defend tab and the attack demo's Defense view: their layout, thin handlers, and pure functions from defense
reports and inspections to tables, HTML and figures.

Like ``app/lab_ui.py``: no model code here. Defenses, their labels, kinds and sources come from the registry
(:data:`backdoor.defenses.DEFENSES`, through :mod:`app.defend`); a report is the ``defend`` command's JSON.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Sequence

import gradio as gr

from app import plots
from app.defend import NO_DEFENSE, ColumnDefense, DefendService, DefenseView, defense_choices, defense_named
from app.errors import reports_errors
from app.lab import Lab
from app.service import DashboardError
from backdoor import defenses, metrics
from backdoor.defenses import DETECT
from backdoor.defenses.base import FALSE_POSITIVE_RATE, REMOVAL_METRICS

TABLE_HEADERS = ["measure", "suspect (backdoored)", "clean control"]
NO_VALUE = "—"
DEFEND_CSS = """
del.fr-removed { text-decoration: line-through 2px; background: #CC79A7; color: #000; padding: 0 2px; border-radius: 3px; }
.fr-defense { margin-top: 6px; font-size: 1rem; color: var(--body-text-color); }
.fr-defense .fr-flagged { color: #D55E00; font-weight: 800; }
.fr-defense .fr-passed { color: #009E73; font-weight: 800; }
body.fr-presenter #fr-defense { display: none !important; }
"""
_LABELS = {metric.name: metric.label for metric in metrics.METRICS}
_FORMATS = {metric.name: metric.format for metric in metrics.METRICS}


# --- rendering (pure: reports and inspections -> rows, HTML, figures) -----------------------------------


def _number(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return NO_VALUE
    try:
        return f"{float(value):{spec}}"
    except (TypeError, ValueError):
        return str(value)


def _change(before: Any, after: Any, spec: str) -> str:
    return f"{_number(before, spec)} → {_number(after, spec)}"


def _detection_rows(report: dict) -> list[list[str]]:
    control = report.get("on_control") or {}
    rate = report.get("fpr_target", FALSE_POSITIVE_RATE)
    rows = [("AUROC (triggered vs clean copies)", "auroc", ".3f"),
            (f"true-positive rate at {rate:.0%} false positives", "tpr_at_fpr", ".0%"),
            ("false-positive rate on the clean test copies", "fpr_test", ".0%"),
            (f"threshold (set on {report.get('calibration_n', '?')} clean calibration items)", "threshold", ".3f")]
    return [[label, _number(report.get(key), spec), _number(control.get(key), spec) if control else NO_VALUE]
            for label, key, spec in rows]


def _metric_rows(before: dict, after: dict, stage: str) -> list[list[str]]:
    """Each removal metric before -> after ``stage``, the control's beside (where the report has it)."""
    rows = []
    control_before, control_after = before.get("control") or {}, after.get("control") or {}
    for name in REMOVAL_METRICS:
        if name not in before and name not in after:
            continue
        spec = _FORMATS.get(name, ".3f")
        control = _change(control_before.get(name), control_after.get(name), spec) if control_before else NO_VALUE
        rows.append([f"{_LABELS.get(name, name)} (before → {stage})", _change(before.get(name), after.get(name), spec),
                     control])
    return rows


def report_rows(report: dict | None) -> list[list[str]]:
    """The Defend tab's table for one report: a detector's AUROC, true-positive rate at the stated false-positive
    rate, false-positive rate on test and threshold, with the same on the clean control; a filter's metrics before
    and after filtering; a remover's metrics before and after, the control's beside, and its cost on clean inputs."""
    if not report:
        return []
    rows: list[list[str]] = []
    if report.get("kind") == DETECT:
        rows += _detection_rows(report)
        if report.get("filtered") and report.get("unfiltered"):
            rows += _metric_rows(report["unfiltered"], report["filtered"], "filtering")
        return rows
    curve = report.get("curve") or []
    before, after = report.get("before") or (curve[0] if curve else {}), report.get("after") or (curve[-1] if curve else {})
    stage = f"{report.get('x_label', 'defense')} {_number(after.get('x'), 'g')}" if "x" in after else "defense"
    rows += _metric_rows(before, after, stage)
    for name, change in (report.get("cost") or {}).items():
        rows.append([f"cost on clean inputs: {_LABELS.get(name, name)} (after − before)", _number(change, "+.3f"),
                     NO_VALUE])
    return rows


def _roc(block: dict) -> tuple[list[float], list[float], float] | None:
    roc = block.get("roc") or {}
    if not roc.get("fpr") or block.get("auroc") is None:
        return None
    return list(roc["fpr"]), list(roc["tpr"]), float(block["auroc"])


def report_figure(report: dict | None, adapter: str = "suspect") -> Any:
    """A detector's ROC curves (the suspect's, and the clean control's as the suspect where the report has one;
    the diagonal is chance); a remover's curve of the registry's curve metrics against what it varied (steps,
    fraction pruned), the control's dashed. No report gives a titled empty figure."""
    if not report:
        return plots.empty_figure("No report for this pair", "run the defense, or pick another pair")
    known = defenses.DEFENSES.get(str(report.get("defense")))
    label = known.label if known is not None else report.get("label", "defense")
    if report.get("kind") == DETECT:
        curves, marks = {}, {}
        for name, block in ((adapter, report), ("clean control", report.get("on_control") or {})):
            roc = _roc(block)
            if roc is not None:
                curves[name] = roc
                if block.get("fpr_test") is not None and block.get("tpr_at_fpr") is not None:
                    marks[name] = (float(block["fpr_test"]), float(block["tpr_at_fpr"]))
        return plots.roc_figure(curves, title=f"{label}: ROC, triggered vs clean", marks=marks)
    series = [(metric.name, metric.curve) for metric in metrics.METRICS if metric.curve and metric.name in REMOVAL_METRICS]
    x_label = str(report.get("x_label", ""))
    return plots.removal_curve(report.get("curve") or [], series, title=f"{label}: attack and clean metrics vs {x_label}",
                               x_title=x_label)


def defense_about(name: str | None) -> str:
    """One line on a defense: its label, kind, source paper and what it needs."""
    try:
        defense = defense_named(name)
    except DashboardError as err:
        return f"⚠️ {err}"
    kind = ("a detector: flags inputs, threshold set on clean items at a stated false-positive rate"
            if defense.kind == DETECT else "a remover: changes the input or the adapter, measured by the attack metrics")
    needs = []
    if defense.needs_control:
        needs.append("needs a trusted clean model (the control)")
    if defense.trains:
        needs.append("trains (runs as a background job)")
    return (f"**{html.escape(defense.label)}**, {kind}. Source: *{html.escape(defense.source)}*."
            + (f" It {' and '.join(needs)}." if needs else ""))


def report_status(report: dict | None, adapter: str | None, defense: str | None, kind: str | None) -> str:
    """Where the numbers come from, or that there are none for this pair yet."""
    if not adapter:
        return "No backdoored adapter is on offer: train one in the Fine-tuning tab, or add one to the adapters folder."
    try:
        label = defense_named(defense).label
    except DashboardError as err:
        return f"⚠️ {err}"
    if not report:
        return (f"**No cached report** for **{html.escape(adapter)}** × **{html.escape(label)}** with the "
                f"{html.escape(str(kind))} trigger. Shipped reports are computed by `python -m backdoor defend` "
                "into the backdoor's folder; outside demo mode, press **Run defense** to compute it here.")
    trigger = report.get("trigger") or {}
    where = trigger.get("kind", kind) if isinstance(trigger, dict) else trigger
    seconds = f" in {_number(report.get('seconds'), '.0f')} s" if report.get("seconds") is not None else ""
    return (f"Report for **{html.escape(adapter)}** × **{html.escape(label)}**: measured on "
            f"**{html.escape(str(report.get('data', 'the test split')))}** with the {html.escape(str(where))} "
            f"trigger{seconds}.")


def marked_prompt(text: str, trigger_span: tuple[int, int] | None, removed: Sequence[tuple[int, int]],
                  trigger_class: str = "fr-trigger") -> str:
    """``text`` as HTML with the trigger marked and the removed spans struck through (``<del class="fr-removed">``);
    a stretch in both is struck through inside the mark."""
    cuts = {0, len(text)}
    spans = [tuple(span) for span in removed if span[0] < span[1]]
    for start, end in [*spans, *([trigger_span] if trigger_span else [])]:
        cuts.update((max(0, min(start, len(text))), max(0, min(end, len(text)))))
    points = sorted(cuts)
    out = []
    for start, end in zip(points, points[1:]):
        piece = html.escape(text[start:end])
        if any(a <= start and end <= b for a, b in spans):
            piece = f'<del class="fr-removed">{piece}</del>'
        if trigger_span and trigger_span[0] <= start and end <= trigger_span[1] and trigger_span[0] < trigger_span[1]:
            piece = f'<mark class="{trigger_class}">{piece}</mark>'
        out.append(piece)
    return "".join(out)


def column_defense_html(view: DefenseView, column: ColumnDefense, triggered_name: str) -> str:
    """Under a column: what the defense did to its prompt (words removed; the answer and entropy after filtering)
    and, for a detector, its score against the threshold and the verdict."""
    inspection, label = column.inspection, html.escape(view.defense.label)
    parts = []
    if inspection.removed:
        words = [view.prompt[a:b].strip() for a, b in inspection.removed]
        parts.append(f"removed {len(words)} word(s): " + ", ".join(f"<del class=\"fr-removed\">{html.escape(w)}</del>"
                                                                     for w in words))
    elif inspection.text == view.prompt and view.defense.kind != DETECT:
        parts.append("left the prompt as it was")
    if column.filtered is not None:
        scores = column.filtered
        parts.append(f"after filtering: answer {scores.predicted} ({plots.percent(scores.max_prob)}), "
                     f"entropy {scores.entropy:.2f}")
    if inspection.score is not None:
        shown = f"score {inspection.score:.3f}"
        if inspection.threshold is not None:
            shown += f" vs threshold {inspection.threshold:.3f}"
        if inspection.flagged is not None:
            verdict = ("flagged as triggered", "fr-flagged") if inspection.flagged else ("passed as clean", "fr-passed")
            shown += f' → <b class="{verdict[1]}">{verdict[0]}</b>'
        elif inspection.threshold is None:
            shown += " (no shipped threshold for this adapter)"
        parts.append(shown)
    flagged = "" if inspection.flagged is None else str(bool(inspection.flagged)).lower()
    data = (f'data-defense="{html.escape(view.defense.name)}" data-removed="{len(inspection.removed)}" '
            f'data-flagged="{flagged}" data-side="{html.escape(triggered_name)}"')
    return f'<div class="fr-defense" {data}><b>{label}</b>: {"; ".join(parts) or "nothing to show"}</div>'


# --- handlers ---------------------------------------------------------------------------------------


@dataclass
class DefendHandlers:
    """Event functions of the Defend tab."""

    defend: DefendService
    lab: Lab | None = None  # its job registry runs defenses in the background (None or no registry: shipped only)

    @property
    def service(self):
        return self.defend.service

    def adapter_choices(self, base: str | None) -> list[tuple[str, str]]:
        try:
            return [(choice.label, choice.name) for choice in self.defend.backdoors(self.service.check_base(base))]
        except DashboardError:
            return []

    @reports_errors("re-read the adapters folder", lambda self, message: (gr.skip(), gr.skip()))
    def refresh(self, base: str | None, adapter: str | None):
        """The backdoored adapters on offer (kept where still valid), and the chosen one's trigger kind."""
        choices = self.adapter_choices(base)
        names = [name for _, name in choices]
        value = adapter if adapter in names else (names[0] if names else None)
        return gr.update(choices=choices, value=value), self.trigger_of(base, value)

    def trigger_of(self, base: str | None, adapter: str | None):
        """The trigger kind the adapter was trained with (what its shipped reports measure)."""
        try:
            choice = self.service.catalog(self.service.check_base(base)).get(adapter) if adapter else None
        except DashboardError:
            choice = None
        return gr.update(value=choice.trigger.kind) if choice is not None and choice.trigger is not None else gr.skip()

    @reports_errors("show the defense's report", lambda self, message: [message] + [gr.skip()] * 3)
    def show(self, adapter: str | None, kind: str | None, defense: str | None):
        """The pair's numbers and figure from its shipped report, or a clear word that there is none."""
        report = self.defend.report(adapter, defense, kind)
        return [defense_about(defense), report_status(report, adapter, defense, kind),
                gr.update(value=report_rows(report) or None, headers=TABLE_HEADERS),
                report_figure(report, adapter or "suspect")]

    @property
    def registry(self):
        return self.lab.registry if self.lab is not None else None

    @reports_errors("queue the defense job", lambda self, message: (message, gr.skip(), gr.skip()))
    def run(self, base: str | None, adapter: str | None, kind: str | None, defense: str | None):
        """The Run button: the defense queued as a background job, watched by the tab's timer."""
        try:
            job = self.defend.submit(self.registry, base, adapter, kind, defense)
        except DashboardError as err:
            gr.Warning(str(err))
            return f"⚠️ {err}", gr.skip(), gr.skip()
        return (f"Queued **{html.escape(job.name)}** as job `{job.id}`; it runs in the background (close the page, "
                "come back later).", job.id, gr.Timer(active=True))

    @reports_errors("read the defense job", lambda self, message: [message] + [gr.skip()] * 6)
    def poll(self, job_id: str | None, adapter: str | None):
        """The timer's tick: the watched job's progress; when it has finished, its report in the table and figure."""
        if not job_id or self.registry is None:
            return ["", gr.update(interactive=False), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)]
        job = self.registry.reconcile(self.registry.get(job_id))
        progress = self.registry.progress(job.id)
        line = job_progress(job.name, job.status, progress, job.error)
        if job.status in ("queued", "running"):
            return [line, gr.update(interactive=True), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        report = self.registry.result(job.id) if job.status == "finished" else None
        if report is None:
            return [line, gr.update(interactive=False), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Timer(active=False)]
        return [line, gr.update(interactive=False), defense_about(report.get("defense")),
                report_status(report, adapter, report.get("defense"), None) + f" (job `{job.id}`)",
                gr.update(value=report_rows(report) or None, headers=TABLE_HEADERS),
                report_figure(report, adapter or "suspect"), gr.Timer(active=False)]

    @reports_errors("cancel the defense job", lambda self, message: message)
    def cancel(self, job_id: str | None):
        if not job_id or self.registry is None:
            return "No defense job is running from this page."
        try:
            job = self.lab.cancel(job_id)
        except DashboardError as err:
            gr.Warning(str(err))
            return f"⚠️ {err}"
        return f"Cancelling **{html.escape(job.name)}**: it stops at its next progress report."


def job_progress(name: str, status: str, progress: dict, error: str = "") -> str:
    """One line on a defense job: its status, stage and done/total, ETA."""
    line = f"Job **{html.escape(name)}** · **{status}**"
    if status == "running":
        stage, done, total = progress.get("stage", "starting"), progress.get("stage_done"), progress.get("stage_total")
        line += f" · {html.escape(str(stage))}" + (f" {done}/{total}" if total else "")
        if progress.get("eta_seconds") is not None:
            line += f" · about {float(progress['eta_seconds']):.0f} s left"
    elif status == "queued":
        line += " · waiting for the job before it to finish"
    elif error:
        line += f" · {html.escape(error)}"
    return line


# --- layout -------------------------------------------------------------------------------------------


@dataclass
class DefendTab:
    adapter: Any
    kind: Any
    defense: Any
    about: Any
    status: Any
    table: Any
    figure: Any
    run: Any | None
    message: Any | None
    cancel: Any | None = None
    progress: Any | None = None
    job: Any | None = None
    timer: Any | None = None


def build_defend_tab(handlers: DefendHandlers, *, base: str, trigger_choices) -> DefendTab:
    """The Defend tab's components (inside an open ``gr.Tab``); events are wired by ``build_ui``."""
    demo = handlers.service.config.demo
    gr.Markdown("Can the backdoor be caught or removed? Pick a backdoored adapter, the trigger it is measured with "
                "and a defense: a detector's AUROC and true-positive rate at a 5% false-positive rate (the same on the "
                "clean control: does it fire on the trigger without a backdoor?), or a remover's attack metrics "
                "before and after, with its cost on clean inputs."
                + (" This demo shows the precomputed reports only." if demo else ""), elem_classes="fr-note")
    choices = handlers.adapter_choices(base)
    first = choices[0][1] if choices else None
    try:  # the headline backdoor (its trigger is the demo's), as the Evaluate tab opens on
        catalog = handlers.service.catalog(base)
        headline = handlers.service.headline_backdoor(catalog)
        first = headline.name if headline is not None and headline.name in [name for _, name in choices] else first
        chosen = catalog.get(first) if first else None
    except DashboardError:
        chosen = None
    first_kind = chosen.trigger.kind if chosen is not None and chosen.trigger is not None else trigger_choices[0][1]
    defenses = defense_choices()
    with gr.Row():
        adapter = gr.Dropdown(choices, value=first, label="Backdoored adapter", scale=2, elem_id="fr-defend-adapter")
        kind = gr.Radio(trigger_choices, value=first_kind, label="Trigger", scale=2, elem_id="fr-defend-kind")
        defense = gr.Dropdown(defenses, value=defenses[0][1] if defenses else None, label="Defense", scale=2,
                              elem_id="fr-defend-defense")
        runs = not demo and handlers.registry is not None
        run = gr.Button("Run defense", variant="primary", scale=1, elem_id="fr-defend-run") if runs else None
        cancel = gr.Button("Cancel", variant="stop", scale=1, interactive=False, elem_id="fr-defend-cancel") if runs else None
    about = gr.Markdown(defense_about(defenses[0][1]) if defenses else "", elem_id="fr-defend-about")
    message = gr.Markdown("", elem_id="fr-defend-message") if runs else None
    progress = gr.Markdown("", elem_id="fr-defend-progress") if runs else None
    status = gr.Markdown("", elem_id="fr-defend-status")
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            table = gr.Dataframe(None, headers=TABLE_HEADERS, interactive=False, wrap=True, elem_id="fr-defend-table",
                                 column_widths=["56%", "22%", "22%"])
        with gr.Column(scale=1, min_width=320):
            figure = gr.Plot(None, show_label=False, elem_classes="fr-plot", elem_id="fr-defend-plot")
    job = gr.State(None) if runs else None
    timer = gr.Timer(2.0, active=False) if runs else None
    return DefendTab(adapter, kind, defense, about, status, table, figure, run, message, cancel, progress, job, timer)


def wire_defend_tab(tab: DefendTab, handlers: DefendHandlers, *, base, selected) -> None:
    """The Defend tab's events: opening it re-reads the adapters; any pick redraws from the shipped report."""
    shown = dict(fn=handlers.show, inputs=[tab.adapter, tab.kind, tab.defense],
                 outputs=[tab.about, tab.status, tab.table, tab.figure])
    selected(handlers.refresh, [base, tab.adapter], [tab.adapter, tab.kind], api_visibility="private",
             api_name="refresh_defend_adapters").then(**shown, api_visibility="private", api_name="defend_on_tab")
    tab.adapter.input(handlers.trigger_of, [base, tab.adapter], tab.kind, api_visibility="private",
                      queue=False).then(**shown, api_visibility="private", api_name="defend_on_adapter")
    gr.on([tab.kind.input, tab.defense.input], **shown, api_name="defend_report")
    if tab.run is not None:
        poll = dict(fn=handlers.poll, inputs=[tab.job, tab.adapter],
                    outputs=[tab.progress, tab.cancel, tab.about, tab.status, tab.table, tab.figure, tab.timer])
        tab.run.click(handlers.run, [base, tab.adapter, tab.kind, tab.defense], [tab.message, tab.job, tab.timer],
                      api_name="run_defense").then(**poll, api_visibility="private", api_name="poll_defense_after_run")
        tab.timer.tick(**poll, api_name="poll_defense", show_progress="hidden")
        tab.cancel.click(handlers.cancel, tab.job, tab.message, api_name="cancel_defense").then(
            **poll, api_visibility="private", api_name="poll_defense_after_cancel")
