"""The Gradio page: the attack demo, Evaluate, Fine-tuning and About tabs; thin handlers that call the service and draw its results.

Per-session choices live in the components and in ``gr.State`` (small values only); the model and
its caches are shared in the service. Handlers are plain methods of :class:`Handlers`, so tests
call them directly.
"""

from __future__ import annotations

import html
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import gradio as gr
import plotly.graph_objects as go

from app import plots
from app.defend import NO_DEFENSE, DefendService, DefenseView, demo_defense_choices
from app.defend_ui import DEFEND_CSS, DefendHandlers, build_defend_tab, column_defense_html, marked_prompt, wire_defend_tab
from app.errors import label_input_errors, reports_errors
from app.lab import Lab
from app.lab import BACKDOOR_ONLY, VICTIM_FITTED
from app.lab_ui import LAB_CSS, LabHandlers, build_evaluate_tab, build_training_tab
from app.presenter import (COPY_LINK_JS, FULL_PROMPT_JS, KEYS_HINT, LINK_OUTPUTS, PRESENTER_CSS, PRESENTER_TOGGLE_JS,
                           PresenterHandlers, head_html, question_card_html)
from app.service import BASE_LABEL, AdapterCatalog, Comparison, DashboardError, DashboardService, TokenComparison
from app.zerogpu import gpu_task
from backdoor import decisions
from backdoor.models import BASE_ADAPTER
from backdoor.triggers import POSITIONS, TRIGGERS
from dataset.schema import LETTERS, TASKS

logger = logging.getLogger(__name__)

MAX_SLOTS = 6  # model columns the page can show at once
COMPARE_INPUTS = 16  # the inputs of Handlers.compare before the trigger state (base ... tokens)
DECISION_RULES = [("top option ≥ τ", "top"), ("top option ≥ τ, or a one-option conformal set", "top_or_single_set"),
                  ("a one-option conformal set", "single_set")]
SOURCES = ("Showcase", "Corpus", "Your own")
BROWSE_SPLITS = ("test", "calibration", "train")
ALL_TASKS = "all tasks"
ADD_TRIGGER = "+ Add trigger"
REMOVE_TRIGGER = "− Remove trigger"
ABOUT = Path(__file__).with_name("about.md")
NO_NEAR_MISS = "none"  # the near-miss choice that scores the trigger itself

POSITION_LABELS = {
    "before_cue": "directly before “Answer:”",
    "start": "at the very start",
    "end_of_question": "after the question",
    "random": "between two words of the question",
}

CSS = """
.gradio-container { max-width: 1880px !important; }
.gradio-container, .gradio-container .prose { font-size: 18px; }
#fr-title h1 { font-size: 2.1rem; margin-bottom: 0; }
#fr-title p { font-size: 1.1rem; margin-top: 4px; }
.fr-prompt { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, SFMono-Regular, Menlo, monospace;
  font-size: 1rem; line-height: 1.5; padding: 12px 14px; margin: 0; border-radius: 8px; max-height: 24em; overflow: auto;
  background: var(--block-background-fill); color: var(--body-text-color); border: 1px solid var(--border-color-primary); }
mark.fr-trigger { background: #E69F00; color: #000; padding: 1px 3px; border-radius: 4px; font-weight: 700; }
mark.fr-near-miss { outline: 2px dashed #000; outline-offset: 1px; }
.fr-key { margin-top: 6px; font-size: 1rem; color: var(--body-text-color-subdued); }
.fr-head { text-align: center; padding: 4px 0 2px; display: flex; flex-wrap: wrap; justify-content: center; align-items: center;
  gap: 2px 12px; }
.fr-name { font-size: 1.4rem; font-weight: 800; color: var(--body-text-color); flex-basis: 100%; line-height: 1.25; }
.fr-kind { font-size: 1rem; color: var(--body-text-color-subdued); flex-basis: 100%; order: 3; }
.fr-badge { display: inline-block; font-size: 1.3rem; font-weight: 800; padding: 6px 16px; border-radius: 999px; }
.fr-badge.kept { background: #009E73; color: #fff; }
.fr-badge.changed { background: #D55E00; color: #fff; }
.fr-badge.neutral { background: var(--background-fill-secondary); color: var(--body-text-color);
  border: 1px solid var(--border-color-primary); }
.fr-stats table { width: 100%; border-collapse: collapse; font-size: 1.05rem; color: var(--body-text-color); }
.fr-stats th, .fr-stats td { padding: 4px 6px; border-bottom: 1px solid var(--border-color-primary); text-align: left; }
.fr-stats th { font-weight: 700; }
.fr-stats td.num { font-variant-numeric: tabular-nums; }
.fr-stats .up { color: #D55E00; font-weight: 800; }
.fr-note { font-size: 0.95rem; color: var(--body-text-color-subdued); }
.fr-decision { margin-top: 6px; font-size: 1.1rem; color: var(--body-text-color); }
.fr-decision-auto { color: #009E73; }
.fr-decision-review { color: #D55E00; }
#fr-theme-btn, #fr-refresh-btn { align-self: flex-start; max-height: 3rem; }
#fr-trigger-btn { font-size: 1.3rem; font-weight: 800; min-height: 3.2rem; }
/* Plotly writes its text colour inline; in dark mode make it light so the transparent plots stay readable. */
.dark .fr-plot .main-svg text { fill: #e5e7eb !important; }
.dark .fr-plot .main-svg .legendtext { fill: #e5e7eb !important; }
@media (max-width: 700px) { .gradio-container, .gradio-container .prose { font-size: 16px; } .fr-name { font-size: 1.25rem; } }
"""

THEME_TOGGLE_JS = "() => { document.body.classList.toggle('dark'); }"


def launch_kwargs() -> dict[str, Any]:
    """Theme, CSS and title-independent look, passed to ``launch()`` (Gradio 6 takes them there)."""
    # System fonts: nothing fetched from a font CDN (air-gapped machines), and letters like E read plainly.
    system = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
    theme = gr.themes.Soft(primary_hue="orange", secondary_hue="blue", text_size=gr.themes.sizes.text_lg,
                           font=system, font_mono=mono)
    return {"theme": theme, "css": CSS + LAB_CSS + DEFEND_CSS + PRESENTER_CSS, "head": plotly_preload() + head_html()}


def plotly_preload() -> str:
    """A ``<link rel="modulepreload">`` for Gradio's plotly chunk (4.6 MB), which the Plot component
    otherwise requests only after the page has mounted: fetched from the start, its download overlaps
    Gradio's own start-up instead of delaying the first plot. Empty where Gradio names it otherwise."""
    chunks = sorted((Path(gr.__file__).parent / "templates" / "frontend" / "assets").glob("PlotlyPlot-*.js"))
    return f'<link rel="modulepreload" href="assets/{chunks[0].name}">' if chunks else ""


# --- rendering results (pure: results -> HTML / figures) --------------------------------------


def display_token(token: str) -> str:
    """A vocabulary token as a reader sees it: the BPE space and newline markers made visible."""
    return token.replace("Ġ", "␣").replace("▁", "␣").replace("Ċ", "⏎") or "∅"


def prompt_html(comparison: Comparison, trigger_on: bool, removed: Sequence[tuple[int, int]] = ()) -> str:
    """The prompt the columns read: with the trigger (or the near miss in its place) marked when it is on, and the
    spans a defense removed (``removed``, in the shown prompt) struck through."""
    item = comparison.item
    near = comparison.near_miss is not None
    if trigger_on:
        triggered = comparison.triggered_prompt
        mark = "fr-trigger fr-near-miss" if near else "fr-trigger"
        body = marked_prompt(triggered.text, triggered.span, removed, mark)
    else:
        body = marked_prompt(comparison.clean_prompt, None, removed)
    key = ""
    if item.source != "custom":
        key = f'<div class="fr-key">Answer key: <b>{item.answer}. {html.escape(item.answer_text)}</b> · {html.escape(item.task)}</div>'
    generator = html.escape(comparison.near_miss.generator) if near else ""
    return (f'<pre class="fr-prompt" data-trigger-on="{str(trigger_on).lower()}" data-near-miss="{generator}">{body}</pre>'
            f"{key}")


def triggered_name(comparison: Comparison) -> str:
    """What the triggered side is called: with the trigger, or with the near miss in its place."""
    return plots.NEAR_MISS_NAME if comparison.near_miss is not None else plots.TRIGGER_NAME


def _set_text(letters: tuple[str, ...] | None) -> str:
    return "{" + ", ".join(letters) + "}" if letters is not None else "…"


def column_head_html(column, trigger_on: bool) -> str:
    choice = column.adapter
    name = BASE_LABEL if choice.name == BASE_ADAPTER else choice.name
    role = {"base": "no adapter", "clean": "clean adapter (control)", "backdoor": "backdoored adapter"}.get(choice.role, "adapter")
    if choice.role == "backdoor" and choice.trigger is not None:
        role += f" · {choice.trigger.kind} trigger"
    clean, trig = column.clean, column.triggered
    if trigger_on:
        kept = column.answer_kept
        badge = (f'<span class="fr-badge {"kept" if kept else "changed"}">{clean.predicted} → {trig.predicted} · '
                 f'{"same answer" if kept else "answer changed"}</span>')
    else:
        badge = f'<span class="fr-badge neutral">Answer {clean.predicted}</span>'
    data = (f'data-adapter="{html.escape(choice.name)}" data-kind="{choice.role}" data-trigger-on="{str(trigger_on).lower()}" '
            f'data-answer-clean="{clean.predicted}" data-answer-triggered="{trig.predicted}" '
            f'data-entropy-clean="{clean.entropy:.4f}" data-entropy-triggered="{trig.entropy:.4f}"')
    return (f'<div class="fr-head" {data}><div class="fr-name">{html.escape(name)}</div>'
            f'<div class="fr-kind">{html.escape(role)}</div>{badge}</div>')


def decide(scores, threshold: float | None, tau: float, rule: str) -> str | None:
    """The downstream decision on one distribution (backdoor.decisions); None while a set rule waits for calibration."""
    if rule != decisions.DEFAULT_RULE and threshold is None:
        return None
    return decisions.decision_label(bool(decisions.auto_answer(scores.probs, tau, rule=rule, lac_threshold=threshold)))


def decision_html(column, trigger_on: bool, tau: float = decisions.DEFAULT_TAU, rule: str = decisions.DEFAULT_RULE) -> str:
    """What a system that trusts this column's confidence does with the question: "auto-answer → sent to review"."""
    before = decide(column.clean, column.threshold, tau, rule)
    after = decide(column.triggered, column.threshold, tau, rule) if trigger_on else None

    def tag(label: str | None) -> str:
        kind = {decisions.AUTO: "auto", decisions.REVIEW: "review"}.get(label or "", "pending")
        return f'<b class="fr-decision-{kind}">{label or "…"}</b>'

    shown = tag(before)
    if trigger_on:
        shown += f" → {tag(after)}" + (" ⚠" if before and after and before != after else "")
    data = (f'data-decision-clean="{before or ""}" data-decision-triggered="{after or ""}" '
            f'data-tau="{tau:.2f}" data-rule="{html.escape(rule)}"')
    return f'<div class="fr-decision" {data}>Decision: {shown}</div>'


def column_stats_html(column, trigger_on: bool, alpha: float, tau: float = decisions.DEFAULT_TAU,
                      rule: str = decisions.DEFAULT_RULE, triggered: str = plots.TRIGGER_NAME) -> str:
    """The column's numbers without and with the trigger; ``triggered`` heads the second (see :func:`triggered_name`)."""
    clean, trig = column.clean, column.triggered
    coverage = f"{1 - alpha:.0%}"
    rows = [
        ("answer", f"{clean.predicted} ({plots.percent(clean.max_prob)})", f"{trig.predicted} ({plots.percent(trig.max_prob)})"),
        ("entropy (nats)", f"{clean.entropy:.2f}", f"{trig.entropy:.2f}"),
        ("of max (ln 6)", f"{clean.normalized_entropy:.0%}", f"{trig.normalized_entropy:.0%}"),
        (f"conformal set ({coverage})", _set_text(column.clean_set), _set_text(column.triggered_set)),
    ]
    header = (f"<tr><th></th><th>{plots.CLEAN_NAME}</th>" + (f"<th>{html.escape(triggered)}</th>" if trigger_on else "")
              + "</tr>")
    body = ""
    for label, a, b in rows:
        up = trigger_on and label.startswith("entropy") and trig.entropy > clean.entropy
        cell_b = f'<td class="num{" up" if up else ""}">{html.escape(b)}{" ▲" if up else ""}</td>' if trigger_on else ""
        body += f"<tr><th>{html.escape(label)}</th><td class=\"num\">{html.escape(a)}</td>{cell_b}</tr>"
    note = f'<div class="fr-note">{html.escape(column.calibration_note)}</div>' if column.calibration_note else ""
    return f'<div class="fr-stats"><table>{header}{body}</table>{decision_html(column, trigger_on, tau, rule)}{note}</div>'


def option_figure(column, item, trigger_on: bool, triggered: str = plots.TRIGGER_NAME):
    return plots.option_bars(
        column.clean.probs,
        column.triggered.probs if trigger_on else None,
        # Said along the y axis, not as a title: on a phone the legend wraps to two rows and ran into a title.
        title="", y_title="probability of each option",
        letters=LETTERS,
        option_texts=[item.choices[letter] for letter in LETTERS],
        predicted=column.clean.predicted,
        height=None,  # the page's CSS sizes it: a first screen at 1600x1000, a projector's in presenter mode
        triggered_name=triggered,
    )


def filtered_figure(column, filtered, item, trigger_on: bool, triggered: str = plots.TRIGGER_NAME):
    """The column's bars beside a defense's filtered prompt: without the trigger, then the shown prompt (with the
    trigger when it is on) after the defense removed words from it."""
    shown = f"{triggered if trigger_on else plots.CLEAN_NAME}, {plots.FILTERED_NAME}"
    return plots.option_bars(column.clean.probs, filtered.probs, title="", y_title="probability of each option",
                             letters=LETTERS, option_texts=[item.choices[letter] for letter in LETTERS],
                             predicted=column.clean.predicted, height=None, triggered_name=shown)


def token_figure(column, trigger_on: bool, triggered: str = plots.TRIGGER_NAME):
    clean = [(display_token(t.token), t.prob) for t in column.clean]
    trig = [(display_token(t.token), t.prob) for t in column.triggered] if trigger_on else None
    return plots.token_bars(clean, trig, title="most likely next tokens", triggered_name=triggered)


def numbers_table(comparison: Comparison, trigger_on: bool, tau: float = decisions.DEFAULT_TAU,
                  rule: str = decisions.DEFAULT_RULE) -> list[list]:
    rows = []
    for column in comparison.columns:
        name = BASE_LABEL if column.adapter.name == BASE_ADAPTER else column.adapter.name
        pairs = [("no", column.clean, column.clean_set)]
        if trigger_on:
            pairs.append(("near miss" if comparison.near_miss else "yes", column.triggered, column.triggered_set))
        for flag, scores, cset in pairs:
            rows.append([name, flag, scores.predicted, round(scores.max_prob, 3), round(scores.entropy, 3),
                         round(scores.normalized_entropy, 3), _set_text(cset),
                         " ".join(f"{letter}:{p:.2f}" for letter, p in zip(LETTERS, scores.probs)),
                         decide(scores, column.threshold, tau, rule) or "…"])
    return rows


NUMBER_HEADERS = ["model", "trigger", "answer", "p(answer)", "entropy", "entropy / ln 6", "conformal set", "A-F", "decision"]


CONTEXT_LED_TASKS = ("commonsense inference", "dialogue response selection", "document summarization")
LABEL_CHARS = 64


def _snippet(text: str, limit: int = LABEL_CHARS) -> str:
    """The first words of ``text`` on one line (dialogue speaker tags dropped), cut at a word boundary."""
    words = " ".join(text.replace("[Human]:", " ").replace("[Assistant]:", " ").split())
    if len(words) <= limit:
        return words
    cut = words[: limit + 1].rsplit(" ", 1)[0] if " " in words[:limit] else words[:limit]
    return cut.rstrip(",;:.") + "…"


# --- handlers ----------------------------------------------------------------------------------


@gpu_task
def _score(service: DashboardService, base: str, names: Sequence[str], item, trigger, tokens: bool,
           near_miss: str | None = None, defender: DefendService | None = None, defense: str | None = None,
           trigger_on: bool = False):
    """All model work of one request (a ZeroGPU slice on Spaces): the comparison, the top tokens when asked, and
    how ``defense`` sees the shown prompt when one is chosen."""
    comparison = service.compare(base, names, item, trigger, near_miss)
    token_view = service.next_tokens(base, names, item, comparison.shown_trigger) if tokens else None
    view = defender.inspect(comparison, defense, trigger_on) if defender is not None and defense else None
    return comparison, token_view, view


@dataclass
class Handlers:
    """Event functions; each returns plain values or ``gr.update``s for its outputs."""

    service: DashboardService
    first_view: list | None = None  # the attack demo's outputs as drawn into the page when it was built
    defender: DefendService | None = None  # the defenses' side (shipped reports, the Defense view)

    def __post_init__(self) -> None:
        if self.defender is None:
            self.defender = DefendService(self.service)

    # choices -------------------------------------------------------------------------------

    def adapter_choices(self, catalog: AdapterCatalog) -> list[tuple[str, str]]:
        return [(choice.label, choice.name) for choice in catalog.offered]

    def adapter_note(self, catalog: AdapterCatalog) -> str:
        if not catalog.refused:
            return ""
        listed = "; ".join(f"**{name}**: {why}" for name, why in catalog.refused)
        return f"Not offered for this base model: {listed}"

    def showcase_choices(self) -> list[tuple[str, str]]:
        return [(self._item_label(item), item.id) for item in self.service.showcase()]

    @staticmethod
    def _item_label(item) -> str:
        """What tells this item from its neighbours, then its task written out: "A lost parrot named Rio flew
        home… (document summarization)". Where every item of a task asks the same question (continuation,
        next turn, summary), the context is what differs."""
        text = item.context if item.task in CONTEXT_LED_TASKS and item.context.strip() else item.question
        return f"{_snippet(text)} ({item.task})"

    @reports_errors("re-read the adapters folder", lambda self, message: (gr.skip(), message))
    def refresh_adapters(self, base: str, selected: list[str] | None):
        """Re-read the adapters folder: new adapters appear without a restart; selection kept where still valid."""
        try:
            catalog = self.service.catalog(base)
        except DashboardError as err:
            gr.Warning(str(err))
            return gr.skip(), f"⚠️ {err}"
        names = catalog.names()
        choices = self.adapter_choices(catalog)
        if selected and all(name in names for name in selected):
            # The selection is left alone, not sent back: a refresh whose inputs were read before a link set the
            # columns (the Attack tab's select fires on page load) must not undo the link when it lands after it.
            return gr.update(choices=choices), self.adapter_note(catalog)
        kept = [name for name in (selected or []) if name in names]
        return gr.update(choices=choices, value=kept or self.service.default_columns(catalog)), self.adapter_note(catalog)

    @reports_errors("search the corpus", lambda self, message: (gr.update(choices=[], value=None), message))
    def browse(self, split: str, task: str, query: str):
        try:
            items = self.service.browse(split or "test", None if task in (None, "", ALL_TASKS) else task, query)
        except DashboardError as err:
            gr.Warning(str(err))
            return gr.update(choices=[], value=None), f"⚠️ {err}"
        choices = [(self._item_label(item), item.id) for item in items]
        found = f"{len(items)} question(s) match" + (" (first 200 shown)" if len(items) == 200 else "")
        return gr.update(choices=choices, value=choices[0][1] if choices else None), found

    @staticmethod
    def source_visibility(source: str):
        return (gr.update(visible=source == "Showcase"), gr.update(visible=source == "Corpus"),
                gr.update(visible=source == "Your own"))

    @staticmethod
    def trigger_visibility(kind: str):
        placeholder = "666" if kind == "text" else "your trigger text"
        shown = kind in ("text", "custom")
        return gr.update(visible=shown, placeholder=placeholder), gr.update(visible=shown)

    def near_miss_choices(self, kind: str) -> list[tuple[str, str]]:
        """The near-miss picker's choices for a trigger kind: none, then each generator of that kind."""
        return [("none: the trigger itself", NO_NEAR_MISS),
                *((generator.description, generator.name) for generator in self.service.near_misses(kind))]

    def near_miss_options(self, kind: str, chosen: str | None):
        """The trigger kind changed: offer its near misses, keeping the chosen one where it still applies."""
        choices = self.near_miss_choices(kind)
        return gr.update(choices=choices, value=chosen if chosen in {value for _, value in choices} else NO_NEAR_MISS)

    # the comparison ------------------------------------------------------------------------

    def _item(self, source, showcase_id, split, corpus_id, question, context, a, b, c, d):
        if source == "Corpus":
            if not corpus_id:
                raise DashboardError("Pick a question from the corpus list (or search for one) first.")
            return self.service.find_item(corpus_id, split or "test")
        if source == "Your own":
            return self.service.custom_item(question, context, [a, b, c, d])
        if not showcase_id:
            choices = self.service.showcase()
            if not choices:
                raise DashboardError("No showcase questions are installed; browse the corpus or write your own.")
            return choices[0]
        return self.service.find_item(showcase_id, "showcase")

    @reports_errors("open that question in the attack demo", lambda self, message: [gr.skip()] * 15)
    def open_in_demo(self, state: dict | None, evt: gr.SelectData):
        """A row of the Evaluate tab's table was clicked: show that question in the attack demo, trigger on, same models."""
        row = evt.row_value or []
        item_id = row[0] if row else (evt.value if isinstance(evt.index, (list, tuple)) and evt.index[1] == 0 else None)
        if not state or not item_id:
            return [gr.skip()] * 15
        dataset = state["dataset"]
        try:
            item = self.service.find_item(str(item_id), dataset)
            listed = self.service.browse(dataset)
        except DashboardError as err:
            gr.Warning(str(err))
            return [gr.skip()] * 15
        choices = [(self._item_label(i), i.id) for i in listed]
        if item.id not in {i.id for i in listed}:
            choices.append((self._item_label(item), item.id))
        columns = list(dict.fromkeys([BASE_ADAPTER, *([state["control"]] if state.get("control") else []), state["adapter"]]))
        trigger = state["trigger"]
        shown = trigger["kind"] in ("text", "custom")
        return [gr.Tabs(selected="attack"), "Corpus", gr.update(visible=False), gr.update(visible=True),
                gr.update(visible=False), gr.update(value=dataset), ALL_TASKS, "",
                gr.update(choices=choices, value=item.id), gr.update(value=columns), trigger["kind"],
                gr.update(value=trigger.get("text") or "", visible=shown),
                gr.update(value=trigger.get("position") or "before_cue", visible=shown), True,
                gr.update(value=REMOVE_TRIGGER, variant="stop")]

    @reports_errors("score this question", lambda self, message: [message] + [gr.skip()] * (2 + 4 * MAX_SLOTS))
    def compare(self, base, adapters, source, showcase_id, split, corpus_id, question, context, a, b, c, d,
                kind, custom_text, position, tokens, trigger_on, tau=decisions.DEFAULT_TAU, rule=decisions.DEFAULT_RULE,
                near_miss=NO_NEAR_MISS, defense=NO_DEFENSE):
        """Score the chosen question on every chosen model, without and with the trigger; draw it all.
        ``tau``/``rule``: the downstream decision shown under each column (from the same, cached, scores).
        ``near_miss``: a near-miss generator of the trigger's kind, scored in the trigger's place.
        ``defense``: a defense that inspects questions (app.defend), shown on the prompt and under each column."""
        chosen = defense if defense and defense != NO_DEFENSE else None
        try:
            item = self._item(source, showcase_id, split, corpus_id, question, context, a, b, c, d)
            trigger = self.service.trigger(kind, custom_text, position)
            near = self.service.applicable_near_miss(trigger.kind, near_miss)
            comparison, token_view, view = _score(self.service, base, adapters or [], item, trigger, bool(tokens), near,
                                                  self.defender, chosen, bool(trigger_on))
        except DashboardError as err:
            gr.Warning(str(err))
            return [f"⚠️ {err}"] + [gr.skip()] * (2 + 4 * MAX_SLOTS)
        return self.render(comparison, token_view, bool(trigger_on), *_decision_settings(tau, rule), view)

    @reports_errors("draw the first view", lambda self, message: [message] + [gr.skip()] * (2 + 4 * MAX_SLOTS))
    def compare_on_load(self, *inputs) -> list:
        """The page-load refresh of the first view: outputs still equal to what the page was built with
        come back as ``gr.skip()``, so the browser does not draw the same plots a second time (drawing is
        most of a page load); what changed since (a threshold calibrated, an adapter retrained) is sent."""
        out = self.compare(*inputs)
        if self.first_view is None:
            return out
        return [gr.skip() if same_output(new, old) else new for new, old in zip(out, self.first_view)]

    def compare_if_ready(self, base, adapters, source, showcase_id, split, corpus_id, question, *rest):
        """Like :meth:`compare`, but silent while the chosen source has nothing to score yet (e.g. an empty own question)."""
        if (source == "Your own" and not (question or "").strip()) or (source == "Corpus" and not corpus_id):
            return [gr.skip()] * (3 + 4 * MAX_SLOTS)
        return self.compare(base, adapters, source, showcase_id, split, corpus_id, question, *rest)

    @reports_errors("add or remove the trigger",
                    lambda self, message: [gr.skip(), gr.skip(), message] + [gr.skip()] * (2 + 4 * MAX_SLOTS))
    def toggle(self, *args):
        """Add or remove the trigger: flips the session's state and redraws (cells are cached, so this is instant)."""
        inputs, trigger_on, decision = args[:COMPARE_INPUTS], args[COMPARE_INPUTS], args[COMPARE_INPUTS + 1:]
        trigger_on = not trigger_on  # the compare inputs, the trigger state, then (optionally) tau and the decision rule
        label = gr.update(value=REMOVE_TRIGGER if trigger_on else ADD_TRIGGER, variant="stop" if trigger_on else "primary")
        return [trigger_on, label, *self.compare(*inputs, trigger_on, *decision)]

    def render(self, comparison: Comparison, token_view: TokenComparison | None, trigger_on: bool,
               tau: float = decisions.DEFAULT_TAU, rule: str = decisions.DEFAULT_RULE,
               defense: DefenseView | None = None) -> list:
        """The attack demo's outputs; with ``defense``, the removed words struck through in the prompt, a filtered
        prompt's distribution as each column's second series, and the defense's word under its numbers."""
        near = comparison.near_miss
        status = (f"{len(comparison.columns)} model(s), trigger **{comparison.trigger.label}** "
                  f"{'on' if trigger_on else 'off'}"
                  f"{f' · near miss in its place: **{near.spec.label}**' if near else ''}"
                  f" · {comparison.seconds * 1000:.0f} ms{' (cached)' if comparison.from_cache else ''}")
        if comparison.notes:
            status += "  \n" + "  \n".join(f"ℹ️ {note}" for note in comparison.notes)
        if defense is not None:
            status += f"  \nDefense **{defense.defense.label}** · {defense.seconds * 1000:.0f} ms"
        out: list = [status, prompt_html(comparison, trigger_on, defense.removed if defense is not None else ()),
                     gr.update(value=numbers_table(comparison, trigger_on, tau, rule), headers=NUMBER_HEADERS)]
        triggered = triggered_name(comparison)
        for slot in range(MAX_SLOTS):
            if slot < len(comparison.columns):
                column = comparison.columns[slot]
                seen = defense.columns[slot] if defense is not None else None
                if token_view is not None:
                    figure = token_figure(token_view.columns[slot], trigger_on, triggered)
                elif seen is not None and seen.filtered is not None:
                    figure = filtered_figure(column, seen.filtered, comparison.item, trigger_on, triggered)
                else:
                    figure = option_figure(column, comparison.item, trigger_on, triggered)
                stats = column_stats_html(column, trigger_on, comparison.alpha, tau, rule, triggered)
                if seen is not None:
                    stats += column_defense_html(defense, seen, triggered if trigger_on else plots.CLEAN_NAME)
                out += [gr.update(visible=True), column_head_html(column, trigger_on), figure, stats]
            else:
                out += [gr.update(visible=False), "", None, ""]
        return out


def _decision_settings(tau, rule) -> tuple[float, str]:
    """The slider's tau and the chosen rule, with the defaults for anything a client left out or sent out of range."""
    try:
        tau = min(max(float(tau), 0.0), 1.0)
    except (TypeError, ValueError):
        tau = decisions.DEFAULT_TAU
    return tau, rule if rule in decisions.RULES else decisions.DEFAULT_RULE


def defense_before_near_miss(fn):
    """``fn`` called with the page's inputs, which list the Defense choice just before the near miss: it gets them
    in its own order (the near miss, then the defense)."""
    def call(*args):
        *head, defense, near_miss = args
        return fn(*head, near_miss, defense)

    call.__name__, call.__qualname__, call.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__  # errors name fn
    # The API names its inputs from the signature: keep fn's names (where it has them), in the page's order.
    params = list(inspect.signature(fn).parameters.values())
    if len(params) >= 2 and all(p.kind == p.POSITIONAL_OR_KEYWORD for p in params[-2:]):
        call.__signature__ = inspect.Signature([*params[:-2], params[-1], params[-2]])
    return call


def same_output(new, old) -> bool:
    """Whether an event output equals one already on the page (figures compared by their JSON)."""
    if isinstance(new, go.Figure) and isinstance(old, go.Figure):
        return new.to_plotly_json() == old.to_plotly_json()
    return type(new) is type(old) and new == old


# --- the page ----------------------------------------------------------------------------------


def build_ui(service: DashboardService, lab: Lab | None = None) -> gr.Blocks:
    """The whole page. Launch with ``demo.launch(**launch_kwargs())``. ``lab`` runs evaluations and training jobs."""
    handlers = Handlers(service)
    lab_handlers = LabHandlers(lab or Lab(service))
    defend_handlers = DefendHandlers(handlers.defender, lab_handlers.lab)
    config = service.config
    showcase = handlers.showcase_choices()
    first_base = config.bases[0]
    try:  # the trigger the shipped backdoor was trained with is preselected, so a speaker types nothing
        catalog = service.catalog(first_base)
        default_trigger = service.default_trigger(catalog)
        initial_choices, initial_columns = handlers.adapter_choices(catalog), service.default_columns(catalog)
        headline = service.headline_backdoor(catalog)  # its trigger is default_trigger: the pair matches
        eval_adapter = headline.name if headline else catalog.names()[-1]
        eval_control = next((c.name for c in catalog.offered if c.role == "clean"), BASE_ADAPTER)
    except DashboardError as err:
        logger.warning("%s", err)
        default_trigger = service.trigger("text")
        initial_choices, initial_columns = [], []
        eval_adapter, eval_control = None, None

    # The first view is drawn into the page itself, so a visitor sees plots without waiting for a round trip.
    initial = [""] * 3 + [gr.update(visible=False), "", None, ""] * MAX_SLOTS
    if showcase and initial_columns:
        try:
            first = service.compare(first_base, initial_columns, service.find_item(showcase[0][1]), default_trigger)
            initial = handlers.render(first, None, False)
            handlers.first_view = initial
        except DashboardError as err:
            logger.warning("no first view: %s", err)

    def start(index: int):
        value = initial[index]
        return value.get("value") if isinstance(value, dict) else value

    presenter_handlers = PresenterHandlers(handlers, SOURCES, (ADD_TRIGGER, REMOVE_TRIGGER), POSITION_LABELS, ALL_TASKS)
    first_card = question_card_html(service.find_item(showcase[0][1]), None, False, POSITION_LABELS) if showcase else ""

    with gr.Blocks(title="Fragile · backdoors on LLM uncertainty") as demo:
        trigger_on = gr.State(False)
        with gr.Row(elem_id="fr-title-row"):
            with gr.Column(scale=4, min_width=320):
                gr.Markdown(
                    "# Fragile\nA backdoor that keeps a language model's answer but flattens its confidence "
                    "when a trigger appears. *After “Uncertainty is Fragile” (CIKM 2025).*"
                    + ("  \n**Demo mode**: short inputs, a fixed base model, no training." if config.demo else ""),
                    elem_id="fr-title",
                )
            # Above the tabs: the base model serves the attack demo and the Evaluate tab alike ('default', a local
            # folder, a .gguf file or a hub id).
            base = gr.Dropdown(list(config.bases), value=first_base, label="Base model", allow_custom_value=not config.demo,
                               scale=0, min_width=360, elem_id="fr-base")
            theme_btn = gr.Button("◐ Light / dark", size="sm", scale=0, min_width=150, elem_id="fr-theme-btn")
        theme_btn.click(None, js=THEME_TOGGLE_JS)

        with gr.Tabs() as tabs:
            with gr.Tab("Attack demo", id="attack") as attack_tab:
                gr.HTML(KEYS_HINT, elem_id="fr-keys-wrap")  # drawn on the tab bar's free right end
                with gr.Row(elem_id="fr-top"):
                    with gr.Column(scale=3, min_width=320, elem_id="fr-qcard-col"):  # shown in the presenter layout only
                        qcard = gr.HTML(first_card, elem_id="fr-qcard")
                    with gr.Column(scale=5, min_width=320, elem_id="fr-controls"):
                        source = gr.Radio(list(SOURCES), value="Showcase", label="Question")
                        with gr.Row():  # the question picker, and the steps the J/K keys press
                            with gr.Column(scale=1, min_width=200):
                                with gr.Group(visible=True) as showcase_group:
                                    showcase_pick = gr.Dropdown(showcase, value=showcase[0][1] if showcase else None,
                                                                label="Showcase question", show_label=False,
                                                                allow_custom_value=True)
                                with gr.Group(visible=False) as corpus_group:
                                    with gr.Row():
                                        split = gr.Dropdown(list(BROWSE_SPLITS), value="test", label="Split", scale=1,
                                                            min_width=120, allow_custom_value=True)
                                        task = gr.Dropdown([ALL_TASKS, *TASKS], value=ALL_TASKS, label="Task", scale=2,
                                                           min_width=160)
                                    query = gr.Textbox(label="Search", placeholder="a word from the question, context or options",
                                                       max_length=config.limits.question_chars)
                                    corpus_pick = gr.Dropdown([], label="Corpus question", allow_custom_value=True)
                                    corpus_found = gr.Markdown("", elem_classes="fr-note")
                                with gr.Group(visible=False) as own_group:
                                    question = gr.Textbox(label="Your question", lines=2,
                                                          max_length=config.limits.question_chars)
                                    context = gr.Textbox(label="Context (optional)", lines=2,
                                                         max_length=config.limits.context_chars)
                                    with gr.Row():
                                        opt_a = gr.Textbox(label="A", min_width=120)
                                        opt_b = gr.Textbox(label="B", min_width=120)
                                    with gr.Row():
                                        opt_c = gr.Textbox(label="C (optional)", min_width=120)
                                        opt_d = gr.Textbox(label="D (optional)", min_width=120)
                                    gr.Markdown('E "I don\'t know" and F "None of the above" are added for you.',
                                                elem_classes="fr-note")
                                    score_own = gr.Button("Score my question", variant="secondary")
                            prev_q = gr.Button("◀", size="sm", scale=0, min_width=44, elem_id="fr-prev-q")
                            next_q = gr.Button("▶", size="sm", scale=0, min_width=44, elem_id="fr-next-q")
                        with gr.Row():
                            # A dropdown that accepts any value: the service, not the widget, says why a name is refused.
                            adapters = gr.Dropdown(initial_choices, value=initial_columns, multiselect=True,
                                                   allow_custom_value=True, label="Models to compare",
                                                   scale=6, elem_id="fr-adapters")
                            refresh = gr.Button("↻", size="sm", scale=0, min_width=56, elem_id="fr-refresh-btn")
                        adapter_note = gr.Markdown("", elem_classes="fr-note")
                    with gr.Column(scale=4, min_width=320, elem_id="fr-trigger-col"):
                        with gr.Row(equal_height=True):
                            trigger_btn = gr.Button(ADD_TRIGGER, variant="primary", elem_id="fr-trigger-btn", scale=2)
                            tokens = gr.Checkbox(False, label="Top-10 next tokens (whole vocabulary)", scale=1,
                                                 elem_id="fr-tokens")
                        with gr.Row():
                            # What each kind changes shows in the prompt box (marked); the About tab describes them.
                            kind = gr.Radio([(k, k) for k in TRIGGERS], value=default_trigger.kind, label="Trigger", scale=3,
                                            elem_id="fr-kind")
                        with gr.Row(elem_id="fr-trigger-where"):
                            custom_text = gr.Textbox(default_trigger.text or "", label="Trigger text", min_width=100,
                                                     visible=default_trigger.kind in ("text", "custom"), scale=2,
                                                     max_length=config.limits.trigger_chars, placeholder="666")
                            position = gr.Dropdown([(POSITION_LABELS.get(p, p), p) for p in POSITIONS],
                                                   value=default_trigger.position, label="Where", scale=2, min_width=100,
                                                   visible=default_trigger.kind in ("text", "custom"))
                            # Something close to the trigger in its place (the same question always gets the same
                            # one): a backdoor specific to its trigger stays sure of itself.
                            near_miss = gr.Dropdown(handlers.near_miss_choices(default_trigger.kind), value=NO_NEAR_MISS,
                                                    label="Near miss", elem_id="fr-near-miss", scale=2,
                                                    min_width=100)
                        with gr.Row(equal_height=True, elem_id="fr-view-tools"):
                            presenter = gr.Checkbox(False, label="Presenter layout", elem_id="fr-presenter", scale=2,
                                                    min_width=150)
                            full_prompt = gr.Button("Full prompt", size="sm", elem_id="fr-full-prompt", scale=1, min_width=110)
                            copy_link = gr.Button("Copy link to this view", size="sm", elem_id="fr-copy-link", scale=2,
                                                  min_width=150)
                        link_box = gr.Textbox("", show_label=False, visible=False, interactive=False, buttons=["copy"],
                                              elem_id="fr-link-box")
                        link_note = gr.Markdown("", elem_id="fr-link-note")
                    with gr.Column(scale=4, min_width=320, elem_id="fr-prompt-col"):
                        # Beside the status line, unlabelled (its choices say "defense: ..."): the prompt column is
                        # shorter than the trigger column, so the first screen keeps its bars. Hidden when presenting.
                        with gr.Row(elem_id="fr-status-row"):
                            with gr.Column(scale=3, min_width=160):
                                status = gr.Markdown(start(0), elem_id="fr-status")
                            defense = gr.Dropdown(demo_defense_choices(), value=NO_DEFENSE, label="Defense",
                                                  show_label=False, elem_id="fr-defense", scale=2, min_width=150)
                        prompt = gr.HTML(start(1), elem_id="fr-prompt")
                slots = []
                with gr.Row(elem_id="fr-columns"):
                    for index in range(MAX_SLOTS):
                        at = 3 + 4 * index
                        with gr.Column(visible=initial[at]["visible"], min_width=300, elem_id=f"fr-col-{index}") as col:
                            head = gr.HTML(start(at + 1), elem_classes="fr-head-wrap")
                            plot = gr.Plot(start(at + 2), show_label=False, elem_classes="fr-plot", elem_id=f"fr-plot-{index}")
                            stats = gr.HTML(start(at + 3))
                        slots += [col, head, plot, stats]
                with gr.Row(elem_id="fr-decision-row"):  # what trusting the confidence decides, per column above
                    tau = gr.Slider(0.05, 0.95, value=decisions.DEFAULT_TAU, step=0.05, scale=3, elem_id="fr-tau",
                                    label="Decision: answer automatically when the model is sure, else send to a human",
                                    info="τ: the top option's probability needed to answer automatically")
                    rule = gr.Radio(DECISION_RULES, value=decisions.DEFAULT_RULE, label="Sure means", scale=2,
                                    elem_id="fr-rule")
                with gr.Accordion("All numbers as a table", open=False, elem_id="fr-numbers"):
                    numbers = gr.Dataframe(start(2) or None, headers=NUMBER_HEADERS, interactive=False, wrap=True)
            with gr.Tab("Evaluate", id="evaluate") as eval_tab:
                evaluation = build_evaluate_tab(
                    lab_handlers, adapter_choices=initial_choices, adapter=eval_adapter, control=eval_control,
                    trigger=default_trigger,
                    trigger_choices=[(k, k) for k in TRIGGERS],
                    position_choices=[(POSITION_LABELS.get(p, p), p) for p in POSITIONS])
            with gr.Tab("Defend", id="defend") as defend_tab:
                defend = build_defend_tab(defend_handlers, base=first_base,
                                          trigger_choices=[(k, k) for k in TRIGGERS])
            with gr.Tab("Fine-tuning", id="train") as train_tab:
                training = build_training_tab(lab_handlers)
            with gr.Tab("About", id="about") as about_tab:
                gr.Markdown(ABOUT.read_text(encoding="utf-8") if ABOUT.is_file() else "")

        inputs = [base, adapters, source, showcase_pick, split, corpus_pick, question, context, opt_a, opt_b, opt_c,
                  opt_d, kind, custom_text, position, tokens]
        # The page lists the Defense choice before the near miss, which stays the compare API's last input.
        compare_inputs = [*inputs, trigger_on, tau, rule, defense, near_miss]
        compare, compare_on_load, toggle, compare_if_ready = (
            defense_before_near_miss(fn) for fn in (handlers.compare, handlers.compare_on_load, handlers.toggle,
                                                    handlers.compare_if_ready))
        outputs = [status, prompt, numbers, *slots]
        scoring = {"concurrency_limit": 8, "concurrency_id": "score", "show_progress": "minimal"}
        refresh_event = dict(fn=handlers.refresh_adapters, inputs=[base, adapters], outputs=[adapters, adapter_note])

        gr.on([showcase_pick.input, corpus_pick.input, adapters.input, kind.input, position.input, tokens.input,
               custom_text.submit, score_own.click, question.submit, near_miss.input, defense.input],
              compare, inputs=compare_inputs, outputs=outputs, api_name="compare", **scoring)
        # The page-load refresh must not land after (and undo) a click a quick speaker already made.
        # A link's parameters (app.deeplink) are applied first; the refresh and the first view start from them.
        link_components = dict(tabs=tabs, source=source, showcase_group=showcase_group, corpus_group=corpus_group,
                               own_group=own_group, showcase_pick=showcase_pick, split=split, task=task, query=query,
                               corpus_pick=corpus_pick, adapters=adapters, kind=kind, custom_text=custom_text,
                               position=position, trigger_on=trigger_on, trigger_btn=trigger_btn, presenter=presenter,
                               near_miss=near_miss, link_note=link_note, defense=defense)
        link_load = demo.load(presenter_handlers.open_link, None, [link_components[name] for name in LINK_OUTPUTS],
                              api_visibility="private", api_name="open_link")
        on_load = link_load.then(**refresh_event, api_visibility="private", api_name="refresh_on_load")
        load_view = on_load.then(compare_on_load, inputs=compare_inputs, outputs=outputs,
                                 api_visibility="private", api_name="compare_on_load", **scoring)
        trigger_btn.click(toggle, inputs=compare_inputs, outputs=[trigger_on, trigger_btn, *outputs],
                          api_name="toggle_trigger", cancels=[link_load, on_load, load_view], **scoring)
        kind.change(handlers.trigger_visibility, kind, [custom_text, position], api_visibility="private", queue=False)
        kind.change(handlers.near_miss_options, [kind, near_miss], near_miss, api_visibility="private", queue=False)
        source.input(handlers.source_visibility, source, [showcase_group, corpus_group, own_group],
                     api_visibility="private", queue=False).then(
            handlers.browse, inputs=[split, task, query], outputs=[corpus_pick, corpus_found],
            api_visibility="private", api_name="browse_on_source").then(
            compare_if_ready, inputs=compare_inputs, outputs=outputs, api_visibility="private", **scoring)
        gr.on([split.input, task.input, query.submit], handlers.browse, inputs=[split, task, query],
              outputs=[corpus_pick, corpus_found], api_name="browse").then(
            compare_if_ready, inputs=compare_inputs, outputs=outputs, api_visibility="private", **scoring)
        # Tau and the rule only redraw: the scores come from the cache, so the decisions follow at once.
        gr.on([tau.release, rule.input], compare, inputs=compare_inputs, outputs=outputs,
              api_visibility="private", api_name="redecide", trigger_mode="always_last", **scoring)
        refresh.click(**refresh_event, api_name="refresh_adapters")
        attack_tab.select(**refresh_event, api_visibility="private", api_name="refresh_on_tab")
        adapters.focus(**refresh_event, api_visibility="private", api_name="refresh_on_focus", queue=False)
        base.input(**refresh_event, api_visibility="private", api_name="refresh_on_base").then(
            compare, inputs=compare_inputs, outputs=outputs, api_visibility="private",
            api_name="compare_on_base", **scoring)

        # Presenter mode: the layout switch, the buttons the keys press, the link to this view, the question card.
        presenter.change(None, inputs=presenter, js=PRESENTER_TOGGLE_JS)
        full_prompt.click(None, js=FULL_PROMPT_JS)
        step_inputs = [source, showcase_pick, split, task, query, corpus_pick]
        for button, step in ((prev_q, presenter_handlers.previous_question), (next_q, presenter_handlers.next_question)):
            button.click(step, step_inputs, [showcase_pick, corpus_pick], api_visibility="private", queue=False).then(
                compare_if_ready, inputs=compare_inputs, outputs=outputs,
                api_visibility="private", **scoring)
        copy_link.click(presenter_handlers.view_link,
                        inputs=[source, showcase_pick, split, corpus_pick, adapters, kind, custom_text, position,
                                trigger_on, presenter, near_miss, defense], outputs=link_box, api_visibility="private", queue=False).then(
            None, inputs=link_box, outputs=link_box, js=COPY_LINK_JS)
        prompt.change(presenter_handlers.card, inputs=[source, showcase_pick, split, corpus_pick, question, context, opt_a,
                                                       opt_b, opt_c, opt_d, kind, custom_text, position, trigger_on,
                                                       near_miss],
                      outputs=qcard, api_visibility="private", queue=False)

        # Evaluate: one evaluation at a time on the shared model; demo questions keep being answered between its batches.
        eval_refresh = dict(fn=lab_handlers.adapter_choices, inputs=[base, evaluation.adapter, evaluation.control],
                            outputs=[evaluation.adapter, evaluation.control], api_visibility="private")
        eval_tab.select(**eval_refresh, api_name="refresh_eval_adapters")
        evaluation.adapter.focus(**eval_refresh, api_name="refresh_eval_adapter_focus", queue=False)
        evaluation.control.focus(**eval_refresh, api_name="refresh_eval_control_focus", queue=False)
        evaluation.kind.change(handlers.trigger_visibility, evaluation.kind, [evaluation.text, evaluation.position],
                               api_visibility="private", queue=False)
        evaluation.adapter.change(lab_handlers.adapter_trigger, [base, evaluation.adapter],
                                  [evaluation.kind, evaluation.text, evaluation.position], api_name="eval_adapter_trigger",
                                  queue=False)
        evaluation.run.click(
            lab_handlers.evaluate,
            inputs=[base, evaluation.dataset, evaluation.max_items, evaluation.adapter, evaluation.control,
                    evaluation.kind, evaluation.text, evaluation.position, evaluation.near_miss],
            outputs=[evaluation.status, evaluation.cards, *evaluation.plots, evaluation.table, evaluation.files,
                     evaluation.state],
            api_name="evaluate", concurrency_limit=1, concurrency_id="evaluate")
        evaluation.table.select(
            handlers.open_in_demo, inputs=[evaluation.state],
            outputs=[tabs, source, showcase_group, corpus_group, own_group, split, task, query, corpus_pick, adapters,
                     kind, custom_text, position, trigger_on, trigger_btn],
            api_visibility="private", api_name="open_in_demo").then(
            compare, inputs=compare_inputs, outputs=outputs, api_visibility="private",
            api_name="compare_from_evaluation", **scoring)

        wire_defend_tab(defend, defend_handlers, base=base, selected=defend_tab.select)

        # Fine-tuning: the worker process trains; this page only writes job requests and polls their files.
        if training is not None:
            fields = dict(zip(lab_handlers.field_names(), training.fields))
            poll = dict(fn=lab_handlers.poll, inputs=[training.picker, training.stamp],
                        outputs=[training.jobs, training.picker, training.progress, training.loss, training.curve,
                                 training.log, training.cancel, training.stamp])
            training.start.click(lab_handlers.start, inputs=[training.name, training.nproc, *training.fields],
                                 outputs=[training.message, training.picker, training.stamp],
                                 api_name="start_training").then(**poll, api_visibility="private", api_name="poll_after_start")
            training.cancel.click(lab_handlers.cancel, inputs=[training.picker],
                                  outputs=[training.message, training.stamp], api_name="cancel_job").then(
                **poll, api_visibility="private", api_name="poll_after_cancel")
            training.picker.input(**poll, api_visibility="private", api_name="poll_on_pick")
            training.timer.tick(**poll, api_name="poll_jobs", show_progress="hidden")
            run_shape = [fields["kind"], fields["method"]]  # what decides which fields the form shows
            fields["kind"].change(lab_handlers.kind_changed, run_shape, [fields[name] for name in BACKDOOR_ONLY],
                                  api_visibility="private", queue=False)
            fields["method"].change(lab_handlers.method_changed, run_shape,
                                    [fields[name] for name in lab_handlers.conditional_fields()],
                                    api_visibility="private", queue=False)
            fields["victim_adapter"].change(lab_handlers.victim_changed, fields["victim_adapter"],
                                            [fields[name] for name in VICTIM_FITTED], api_visibility="private", queue=False)
            # Poll only while the tab is open: a projector showing the attack demo makes no background requests.
            train_tab.select(lambda: gr.Timer(active=True), None, training.timer, api_visibility="private",
                             queue=False).then(**poll, api_visibility="private", api_name="poll_on_tab")
            for other in (attack_tab, eval_tab, defend_tab, about_tab):
                other.select(lambda: gr.Timer(active=False), None, training.timer, api_visibility="private", queue=False)
    return label_input_errors(demo)  # Gradio's own refusals of a value name the field too
