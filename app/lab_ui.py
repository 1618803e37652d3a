"""The Evaluate and Fine-tuning tabs: their layout and thin handlers that call :class:`app.lab.Lab` and draw its results.

Like ``app/ui.py``: no model code here; handlers are plain methods of :class:`LabHandlers`, so
tests call them directly, and figures come from the pure functions in ``app/plots.py``.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import gradio as gr

from app import plots
from app.errors import reports_errors
from app.lab import (BACKDOOR_ONLY, DEFAULT_EVAL_ITEMS, EVAL_SPLITS, VICTIM_FITTED, EvaluationRun, FormField, JobView,
                     Lab)
from app.service import DashboardError
from backdoor.jobs import TRAIN
from backdoor import metrics
from backdoor.conditions import CONDITIONS, column, ungrouped
from backdoor.models import BASE_ADAPTER


POLL_SECONDS = 2.0
JOB_HEADERS = ["job", "adapter", "kind", "status", "progress", "created", "took", "error"]
TRAINING_OFF = ("**Training is switched off in this demo.** Fine-tuning runs for minutes to hours and would tie up "
                "the shared machine. Run the app yourself (`python -m app`) to launch clean or backdoor training "
                "in the background, or use the command line: `python -m backdoor train --help`.")

LAB_CSS = """
.fr-cards { display: flex; flex-wrap: wrap; gap: 12px; }
.fr-card { flex: 1 1 180px; padding: 12px 16px; border-radius: 10px; border: 1px solid var(--border-color-primary);
  background: var(--block-background-fill); color: var(--body-text-color); }
.fr-card .fr-card-label { font-size: 1rem; color: var(--body-text-color-subdued); }
.fr-card .fr-card-value { font-size: 2.4rem; font-weight: 800; font-variant-numeric: tabular-nums; line-height: 1.2; }
.fr-card .fr-card-control { font-size: 0.95rem; color: var(--body-text-color-subdued); }
#fr-job-progress { font-size: 1.15rem; }
"""


# --- rendering (pure: results -> HTML, rows, figures) -------------------------------------------


def _share(value: float | None, spec: str = ".0%", unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def _card(name: str, label: str, shown: str, data: str, under: str) -> str:
    return (f'<div class="fr-card" data-metric="{name}" {data}><div class="fr-card-label">{html.escape(label)}</div>'
            f'<div class="fr-card-value">{html.escape(shown)}</div>'
            f'<div class="fr-card-control">{html.escape(under)}</div></div>')


def metric_cards_html(run: EvaluationRun) -> str:
    """The registry's headline metrics as big numbers (shares unless the headline gives a format), the control's
    value under each that shows one; a metric the report lacks (a report from before it) has no card. When near
    misses were scored, their false triggered rates follow, one card each."""
    report, control = run.report, run.report.get("control")
    out = []
    for metric in metrics.headlines():
        head = metric.headline
        if metric.name not in report:
            continue
        label = head.label.format(**report)
        if head.then:  # the same metric without and with the trigger, after an arrow
            before, after = report[metric.name], report[head.then]
            shown, data = f"{_share(before)} → {_share(after)}", f'data-value="{before:.4f}" data-triggered="{after:.4f}"'
            under = (f"control: {_share(control[metric.name])} → {_share(control[head.then])}"
                     if control and head.control else "")
        else:
            value = report[metric.name]
            control_value = control.get(metric.name) if control and head.control else None
            shown, data = _share(value, head.format, head.unit), f'data-value="{value:.4f}"'
            under = f"control: {_share(control_value, head.format, head.unit)}" if control_value is not None else ""
        out.append(_card(head.card or metric.name, label, shown, data, under))
    for metric in metrics.specificity(report):
        value, control_value = report[metric.name], control.get(metric.name) if control else None
        out.append(_card(metric.name, metric.label, _share(value), f'data-value="{value:.4f}"',
                         f"control: {_share(control_value)}" if control_value is not None else ""))
    return f'<div class="fr-cards">{"".join(out)}</div>'


def _item_columns() -> list[tuple[str, str]]:
    """The per-question table's (row key, header): the answers and entropies without and with the trigger (near
    misses stay in the CSV), the control's beside."""
    own = [(column(stem, c), header + CONDITIONS[c].label) for stem, header in (("predicted", "answer"), ("entropy", "entropy"))
           for c in ungrouped()]
    return ([("item_id", "question"), ("task", "task"), ("answer", "key"), *own, ("flattened", "flattened")]
            + [(f"control_{key}", f"control {header}") for key, header in own])


ITEM_COLUMNS = _item_columns()
ITEM_HEADERS = [header for _, header in ITEM_COLUMNS]


def item_table(run: EvaluationRun) -> list[list]:
    rows = []
    for row in run.item_rows():
        cells = []
        for key, _ in ITEM_COLUMNS:
            value = row.get(key, "")
            if key == "flattened":
                value = "▲" if value else ""
            elif isinstance(value, float):
                value = round(value, 3)
            cells.append(value)
        rows.append(cells)
    return rows


def _registry_figure(name: str, figure: metrics.Figure, run: EvaluationRun) -> Any:
    """One of the registry's figures from the report: the metrics whose ``plot`` names it give its series."""
    report, control = run.report, run.report.get("control")
    entries = [metric for metric in metrics.METRICS if metric.plot and metric.plot[0] == name]
    title = figure.title.format(adapter=run.adapter, victim=run.control or "the base model", target=1 - report["alpha"])
    if figure.kind == "conditions":
        bars: dict[str, list[float]] = {}
        for metric in entries:
            bars.setdefault(metric.plot[1], []).append(report[metric.name])
        return plots.conformal_bars({series: tuple(values) for series, values in bars.items()}, title=title,
                                    y_title=figure.y_title, as_percent=figure.percent, y_max=figure.y_max,
                                    reference=1 - report["alpha"] if figure.target else None)
    series = {}
    for metric in entries:
        series[run.adapter] = (report[metric.name], plots.OKABE_ITO[figure.colours[0]])
        if run.control and figure.control:
            series[f"{run.control} (control)"] = (control[metric.name], plots.OKABE_ITO[figure.colours[1]])
    return plots.margin_bars(series, title=title, y_title=figure.y_title)


EVAL_FIGURES = 2 + len(metrics.FIGURES)  # the Evaluate tab's plots, two a row: two entropy histograms, then the registry's


def evaluation_figures(run: EvaluationRun) -> list:
    """The Evaluate tab's plots: entropy histograms (backdoored, control), then the registry's figures (conformal
    set sizes and coverage, answer kept and clean agreement by how sure the clean answer was)."""
    figures = [plots.entropy_histogram(*run.entropies(run.adapter), title=f"{run.adapter}: entropy per item")]
    if run.control:
        figures.append(plots.entropy_histogram(*run.entropies(run.control), title=f"{run.control} (control): entropy per item"))
    else:
        figures.append(plots.empty_figure("control: entropy per item", "no control chosen"))
    return figures + [_registry_figure(name, figure, run) for name, figure in metrics.FIGURES.items()]


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _step_text(progress: dict) -> str:
    if progress.get("total"):
        return f"step {progress.get('step', 0)}/{progress['total']}"
    if progress.get("stage_total"):
        return f"{progress.get('stage', '')} {progress.get('stage_done', 0)}/{progress['stage_total']}"
    return progress.get("stage", "")


def _role(job) -> str:
    """What a job runs, for its row: a training run's role (clean or backdoor), or the defense it applies."""
    return job.config.get("kind", "") if job.kind == TRAIN else f"defense: {job.config.get('defense', '')}"


def jobs_rows(views: Sequence[JobView]) -> list[list]:
    rows = []
    for view in views:
        job = view.job
        took = (job.ended or time.time()) - job.started if job.started else None
        rows.append([job.id, job.name, _role(job), job.status, _step_text(view.progress),
                     time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created)),
                     _duration(took) if job.status != "queued" else "", job.error])
    return rows


def progress_markdown(view: JobView | None) -> str:
    """One line a user reads from across the room: status, stage, step/total, ETA."""
    if view is None:
        return "No training jobs yet. Fill in the form and press **Start training**."
    job, progress = view.job, view.progress
    head = f"**{html.escape(job.name)}** ({html.escape(_role(job))}) · **{job.status}**"
    if job.status == "queued":
        return head + " · waiting for the job before it to finish"
    if job.status == "running":
        parts = [progress.get("stage", "starting")]
        if progress.get("stage") == "training" and progress.get("total"):
            parts.append(f"step {progress.get('step', 0)}/{progress['total']}")
            if progress.get("eta_seconds") is not None:
                parts.append(f"ETA {_duration(progress['eta_seconds'])}")
        elif progress.get("stage_total"):
            parts.append(f"{progress.get('stage_done', 0)}/{progress['stage_total']}")
        if progress.get("last_checkpoint"):
            parts.append(f"checkpoint at step {progress['last_checkpoint']}")
        return head + " · " + " · ".join(parts)
    if job.status == "finished":
        return (head + f" · adapter **{html.escape(job.name)}** is in the attack demo's model list "
                "(it appears there when you open the list or press ↻)")
    return head + (f" · {html.escape(job.error)}" if job.error else "")


# --- handlers ------------------------------------------------------------------------------------


@dataclass
class LabHandlers:
    """Event functions of the Evaluate and Fine-tuning tabs."""

    lab: Lab

    @property
    def service(self):
        return self.lab.service

    # evaluate ------------------------------------------------------------------------------------

    @reports_errors("re-read the adapters folder", lambda self, message: (gr.skip(), gr.skip()))
    def adapter_choices(self, base: str, adapter: str | None, control: str | None):
        """Re-read the adapters folder for the two evaluation dropdowns, keeping valid choices."""
        try:
            catalog = self.service.catalog(base)
        except DashboardError:
            return gr.skip(), gr.skip()
        choices = [(choice.label, choice.name) for choice in catalog.offered]
        names = catalog.names()
        headline = self.service.headline_backdoor(catalog)
        default_adapter = headline.name if headline else names[-1]
        default_control = next((c.name for c in catalog.offered if c.role == "clean"), BASE_ADAPTER)
        return (gr.update(choices=choices, value=adapter if adapter in names else default_adapter),
                gr.update(choices=choices, value=control if control in names else default_control))

    @reports_errors("follow the adapter's trigger", lambda self, message: [gr.skip()] * 3)
    def adapter_trigger(self, base: str, adapter: str | None):
        """The evaluated adapter changed: the trigger it was trained with becomes the one measured, so the
        tab never pairs a backdoor with another backdoor's trigger. An adapter without a recorded trigger
        leaves the fields as they are."""
        choice = self.service.catalog(base).get(adapter) if isinstance(adapter, str) and adapter else None
        if choice is None or choice.trigger is None:
            return [gr.skip()] * 3
        trigger, shown = choice.trigger, choice.trigger.kind in ("text", "custom")
        return [gr.update(value=trigger.kind), gr.update(value=trigger.text or "", visible=shown),
                gr.update(value=trigger.position, visible=shown)]

    @reports_errors("run the evaluation", lambda self, message: [message] + [gr.skip()] * (4 + EVAL_FIGURES))
    def evaluate(self, base, dataset, max_items, adapter, control, kind, text, position, near_miss=False,
                 progress=gr.Progress()):
        """Evaluate the chosen adapters on the dataset; draw numbers, plots, the per-item table and the downloads.
        ``near_miss``: also score near misses of the trigger and show their false triggered rates."""
        def report(done: int, total: int) -> None:
            progress((done, total), desc="scoring questions with and without the trigger", unit="prompts")

        try:
            trigger = self.service.trigger(kind, text, position)
            run = self.lab.evaluate(base, adapter, control, dataset, trigger, max_items, progress=report,
                                    near_miss=bool(near_miss))
        except DashboardError as err:
            gr.Warning(str(err))
            return [f"⚠️ {err}"] + [gr.skip()] * (4 + EVAL_FIGURES)
        figures = evaluation_figures(run)
        plots_path = run.folder / f"{run.json_path.stem}-plots.html"
        plots_path.write_text(plots.figures_html(figures, title=f"{run.adapter} on {run.dataset} · {run.trigger.label}"),
                              encoding="utf-8")
        where = "this demo evaluates" if self.service.demo else "this dashboard evaluates"
        note = f" ({where} at most {self.service.limits.eval_items} of the {run.capped} asked for)" if run.capped else ""
        status = (f"**{run.adapter}**{f' vs control **{run.control}**' if run.control else ''} on "
                  f"{run.item_count} question(s) of **{html.escape(run.dataset)}**{note}, trigger **{run.trigger.label}**, "
                  f"conformal sets calibrated on {run.report['calibration_n']} clean questions · {run.seconds:.1f} s")
        state = {"dataset": run.dataset, "adapter": run.adapter, "control": run.control, "base": run.base,
                 "trigger": run.trigger.to_dict()}
        return [status, metric_cards_html(run), *figures, gr.update(value=item_table(run), headers=ITEM_HEADERS),
                [str(run.json_path), str(run.csv_path), str(plots_path)], state]

    # fine-tuning ------------------------------------------------------------------------------------

    def field_names(self) -> list[str]:
        return [spec.name for spec in self.lab.form_fields()]

    def conditional_fields(self) -> list[str]:
        """The form fields shown only for some kinds or methods (their ``shows``), in form order."""
        return [spec.name for spec in self.lab.form_fields() if spec.shows]

    def _shown(self, names: Sequence[str], kind: str, method: str | None) -> list[bool]:
        """Whether each field in ``names`` applies to a run of ``kind`` by ``method`` (None: the form's default)."""
        specs = {spec.name: spec for spec in self.lab.form_fields()}
        values = {"kind": kind, "method": method or specs["method"].default}
        return [specs[name].applies(values) for name in names]

    @reports_errors("update the form", lambda self, message: [gr.skip()] * len(BACKDOOR_ONLY))
    def kind_changed(self, kind: str, method: str | None = None):
        """A clean run has no victim, trigger or target: hide those fields (and those ``method`` does not read);
        a backdoor preselects the clean adapter."""
        backdoor = kind == "backdoor"
        victim_shown, *shown = self._shown(BACKDOOR_ONLY, kind, method)
        victim = gr.update(value=self.lab.default_victim() if backdoor else "", choices=self.lab.victim_choices(),
                           visible=victim_shown)
        return [victim] + [gr.update(visible=visible) for visible in shown]

    @reports_errors("update the form", lambda self, message: [gr.skip()] * len(self.conditional_fields()))
    def method_changed(self, kind: str, method: str):
        """Another method: show the fields it reads (for this kind of run), hide the other methods' options."""
        return [gr.update(visible=visible) for visible in self._shown(self.conditional_fields(), kind, method)]

    @reports_errors("read the victim adapter", lambda self, message: [gr.skip()] * len(VICTIM_FITTED))
    def victim_changed(self, victim: str | None):
        """A victim adapter fixes the backdoor's LoRA rank and layers: fill them in so the defaults just work."""
        fitted = self.lab.victim_settings(victim or "")
        return [gr.update(value=fitted[name]) if name in fitted else gr.skip() for name in VICTIM_FITTED]

    @reports_errors("queue the training job", lambda self, message: (message, gr.skip(), None))
    def start(self, name, nproc, *values):
        """Queue a training job from the form; the worker process runs it. Bad settings are refused before anything starts."""
        settings = dict(zip(self.field_names(), values))
        try:
            job = self.lab.submit(settings, name, nproc)
        except DashboardError as err:
            gr.Warning(str(err))
            return f"⚠️ {err}", gr.skip(), None
        jobs = self.lab.jobs()
        queued = [j for j in jobs if j.status in ("queued", "running") and j.id != job.id]
        message = (f"Queued **{job.name}** as job `{job.id}`"
                   + (f", after {len(queued)} other job(s)." if queued else "; it starts in a few seconds."))
        return message, gr.update(choices=self.job_choices(jobs), value=job.id), None

    @staticmethod
    def job_choices(jobs) -> list[tuple[str, str]]:
        return [(f"{job.name} · {job.status} · {job.id}", job.id) for job in jobs]

    @reports_errors("read the jobs folder", lambda self, message: [gr.skip()] * 8)
    def poll(self, job_id: str | None, last: Any):
        """The timer's tick: jobs table, the watched job's progress, curves and log; skips redraws when nothing changed."""
        jobs = self.lab.jobs()
        watched = self.lab.watched(job_id, jobs)
        view = self.lab.view(watched) if watched else None
        views = [view if view is not None and job.id == watched.id else self.lab.view(job) for job in jobs]
        stamp = repr((view.stamp if view else None, [(v.job.id, v.job.status, _step_text(v.progress)) for v in views]))
        if stamp == last:
            return [gr.skip()] * 7 + [last]
        choices = self.job_choices(jobs)
        progress = view.progress if view else {}
        running = view is not None and view.job.status in ("queued", "running")
        return [gr.update(value=jobs_rows(views), headers=JOB_HEADERS),
                gr.update(choices=choices, value=watched.id if watched else None),
                progress_markdown(view),
                plots.loss_curve(progress.get("losses", [])),
                plots.attack_curve(progress.get("curve", [])),
                view.log if view else "",
                gr.update(interactive=running),
                stamp]

    @reports_errors("cancel the job", lambda self, message: (message, None))
    def cancel(self, job_id: str | None):
        try:
            job = self.lab.cancel(job_id)
        except DashboardError as err:
            gr.Warning(str(err))
            return f"⚠️ {err}", None
        if job.status == "cancelled":
            return f"Cancelled **{job.name}** before it started.", None
        return f"Cancelling **{job.name}**: it stops after the current step and keeps its last checkpoint.", None

    @staticmethod
    def timer(active: bool):
        return gr.Timer(active=active)


# --- layout -----------------------------------------------------------------------------------------


@dataclass
class EvaluateTab:
    dataset: Any
    max_items: Any
    adapter: Any
    control: Any
    kind: Any
    text: Any
    position: Any
    run: Any
    status: Any
    cards: Any
    plots: list
    table: Any
    files: Any
    state: Any
    near_miss: Any = None  # the "near misses" checkbox: an input of the evaluate handler after the position


@dataclass
class TrainingTab:
    fields: list  # components in form_fields() order
    name: Any
    nproc: Any
    start: Any
    message: Any
    jobs: Any
    picker: Any
    progress: Any
    loss: Any
    curve: Any
    log: Any
    cancel: Any
    stamp: Any
    timer: Any


def build_evaluate_tab(handlers: LabHandlers, *, adapter_choices, adapter, control, trigger, trigger_choices,
                       position_choices) -> EvaluateTab:
    """The Evaluate tab's components (inside an open ``gr.Tab``); events are wired by ``build_ui``."""
    service = handlers.service
    demo = service.config.demo
    gr.Markdown("Evaluate an adapter over many questions at once: the mean entropy lift with the trigger (nats, "
                "with a 95% bootstrap interval) and the margin ASR (the share of questions whose entropy rises by more "
                "than a margin, which chance does not reach), then the paper's ASR (entropy rises at all), whether "
                "the answer is kept, accuracy, clean-mode confidence and conformal prediction sets, for the "
                "backdoored adapter and a clean control. With near misses, the false triggered rate of each: how "
                "often something close to the trigger sets the backdoor off. Click a row of the table to open that "
                "question in the attack demo.", elem_classes="fr-note")
    with gr.Row():
        dataset = gr.Dropdown(list(EVAL_SPLITS), value="test", label="Dataset", allow_custom_value=not demo, scale=2,
                              info="a corpus split" + ("" if demo else ", or the path of a .jsonl file in the same format"),
                              elem_id="fr-eval-dataset")
        cap = service.limits.eval_items
        # No precision: Gradio would round 1.5 to 2 silently; the lab refuses what is not a whole number.
        max_items = gr.Number(min(DEFAULT_EVAL_ITEMS, cap), label="Max items", precision=None, step=1, minimum=1,
                              maximum=cap if demo else None, scale=1, elem_id="fr-eval-items",
                              info=f"evenly spread over the dataset{f'; at most {cap} in this demo' if demo else ''}")
        adapter_box = gr.Dropdown(adapter_choices, value=adapter, label="Backdoored adapter", scale=2,
                                  allow_custom_value=True, elem_id="fr-eval-adapter")
        control_box = gr.Dropdown(adapter_choices, value=control, label="Control (clean)", scale=2,
                                  allow_custom_value=True, elem_id="fr-eval-control")
    with gr.Row():
        kind = gr.Radio(trigger_choices, value=trigger.kind, label="Trigger", scale=3)
        text = gr.Textbox(trigger.text or "", label="Trigger text", placeholder="666", scale=2,
                          visible=trigger.kind in ("text", "custom"), max_length=service.limits.trigger_chars)
        position = gr.Dropdown(position_choices, value=trigger.position, label="Where", scale=2,
                               visible=trigger.kind in ("text", "custom"))
        near_miss = gr.Checkbox(False, label="near misses", scale=1, elem_id="fr-eval-near-miss",
                                info="also score things close to the trigger (false triggered rate)")
        run = gr.Button("Evaluate", variant="primary", scale=1, elem_id="fr-eval-run")
    status = gr.Markdown("", elem_id="fr-eval-status")
    cards = gr.HTML("", elem_id="fr-eval-cards")
    figures = []
    for row in range(EVAL_FIGURES // 2):
        with gr.Row():
            for col in range(2):
                figures.append(gr.Plot(None, show_label=False, elem_classes="fr-plot", elem_id=f"fr-eval-plot-{2 * row + col}"))
    gr.Markdown("Per question (click a row to open it in the attack demo with the trigger on):", elem_classes="fr-note")
    table = gr.Dataframe(None, headers=ITEM_HEADERS, interactive=False, wrap=True, max_height=420, elem_id="fr-eval-table")
    files = gr.File(None, label="Downloads: report (JSON), per-question table (CSV), plots (HTML)", file_count="multiple",
                    interactive=False, elem_id="fr-eval-files")
    state = gr.State(None)
    return EvaluateTab(dataset, max_items, adapter_box, control_box, kind, text, position, run, status, cards, figures,
                       table, files, state, near_miss)


def _field_component(spec: FormField, handlers: LabHandlers, defaults: Mapping[str, Any]):
    elem_id = f"fr-train-{spec.name.replace('_', '-')}"
    common = {"label": spec.label, "info": spec.help, "elem_id": elem_id, "min_width": 200}
    visible = spec.applies(defaults)
    if spec.name == "victim_adapter":
        return gr.Dropdown(handlers.lab.victim_choices(), value=spec.default, allow_custom_value=True, visible=visible,
                           **common)
    if spec.name in ("data", "eval_data"):
        return gr.Dropdown(["train", "calibration", "test"], value=spec.default, allow_custom_value=True, **common)
    if spec.kind == "choice":
        return gr.Dropdown(list(spec.choices), value=spec.default, visible=visible, **common)
    if spec.kind == "bool":
        return gr.Checkbox(spec.default, visible=visible, **common)
    if spec.kind in ("int", "float"):
        return gr.Number(spec.default, precision=0 if spec.kind == "int" else None, minimum=spec.minimum,
                         visible=visible, **common)
    return gr.Textbox(spec.default, visible=visible, **common)


def build_training_tab(handlers: LabHandlers) -> TrainingTab | None:
    """The Fine-tuning tab's components (inside an open ``gr.Tab``); None in demo mode, where the tab only explains."""
    lab = handlers.lab
    if not lab.training_enabled:
        text = TRAINING_OFF if lab.config.demo else f"**Training is switched off:** {lab.training_off_reason}."
        gr.Markdown(text, elem_id="fr-training-off")
        return None
    gr.Markdown("Train a **clean** adapter (the honest control) or a **backdoored** one (the paper's attack) in a "
                "background process: close the browser, come back later, the job goes on. One job runs at a time; "
                "others wait in the queue. A finished adapter appears in the attack demo's model list. "
                f"Jobs are kept in `{lab.registry.root}`, adapters go to `{lab.registry.adapters_dir}`.",
                elem_classes="fr-note")
    specs = lab.form_fields()
    defaults = {spec.name: spec.default for spec in specs}  # which fields show first: those the defaults read
    components: dict[str, Any] = {}
    with gr.Row():
        name = gr.Textbox("", label="New adapter name", placeholder="e.g. backdoor-style", scale=2, max_length=64,
                          elem_id="fr-train-name", info="its folder under the adapters folder")
        nproc = gr.Number(1, label="Processes", precision=0, minimum=1, scale=1, elem_id="fr-train-nproc",
                          info="more than 1 trains data-parallel under torchrun")
        start = gr.Button("Start training", variant="primary", scale=1, elem_id="fr-train-start")
    message = gr.Markdown("", elem_id="fr-train-message")
    basic = [spec for spec in specs if spec.basic]
    for offset in range(0, len(basic), 4):
        with gr.Row():
            for spec in basic[offset : offset + 4]:
                components[spec.name] = _field_component(spec, handlers, defaults)
    with gr.Accordion("Advanced settings", open=False):
        advanced = [spec for spec in specs if not spec.basic]
        for offset in range(0, len(advanced), 4):
            with gr.Row():
                for spec in advanced[offset : offset + 4]:
                    components[spec.name] = _field_component(spec, handlers, defaults)
    gr.Markdown("### Jobs")
    with gr.Row():
        # Any value is accepted: the list is only as fresh as the last poll, and a job id is checked by the service.
        picker = gr.Dropdown([], label="Watching", scale=4, elem_id="fr-train-picker", allow_custom_value=True)
        cancel = gr.Button("Cancel job", variant="stop", scale=1, interactive=False, elem_id="fr-train-cancel")
    progress = gr.Markdown("", elem_id="fr-job-progress")
    with gr.Row():
        loss = gr.Plot(None, show_label=False, elem_classes="fr-plot", elem_id="fr-train-loss")
        curve = gr.Plot(None, show_label=False, elem_classes="fr-plot", elem_id="fr-train-curve")
    with gr.Accordion("Log", open=False):
        log = gr.Textbox("", show_label=False, lines=12, max_lines=12, interactive=False, elem_id="fr-train-log",
                         autoscroll=True)
    jobs = gr.Dataframe(None, headers=JOB_HEADERS, interactive=False, wrap=True, label="All jobs", elem_id="fr-train-jobs")
    stamp = gr.State(None)
    timer = gr.Timer(POLL_SECONDS, active=False)
    return TrainingTab([components[spec.name] for spec in specs], name, nproc, start, message, jobs, picker, progress,
                       loss, curve, log, cancel, stamp, timer)
