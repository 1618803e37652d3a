"""Presenter mode for the attack demo: the one-screen layout, the keyboard, the question card and the deep-link handlers.

The layout is CSS switched by a class on ``<body>`` (the "Presenter layout" checkbox sets it and
writes ``presenter=1`` into the address bar); the keys are one listener in the page's ``<head>``
that clicks the page's own buttons, so a key does exactly what the mouse does. The handlers turn
a link into the demo's state on page load (parsing in :mod:`app.deeplink`), step through the
questions of the current source, and write the link to the current view.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import urlsplit

import gradio as gr

from app.defend import demo_defense_choices
from app.deeplink import SPLITS, View, parse_view, resolve_columns, view_query
from app.errors import reports_errors
from app.service import DashboardError
from backdoor.models import BASE_ADAPTER
from backdoor.nearmiss import GENERATORS
from backdoor.prompts import CONTEXT_LABELS
from backdoor.triggers import DEFAULT_TEXT_TRIGGER, POSITIONS, SYNTACTIC_CUE, TRIGGERS, TriggerSpec
from dataset.schema import LETTERS, Item

logger = logging.getLogger(__name__)

KEYS_HINT = ('<div class="fr-keys" id="fr-keys-hint">Attack demo keys: <kbd>T</kbd> trigger · <kbd>J</kbd>/<kbd>K</kbd> '
             'next/previous question · <kbd>R</kbd> trigger kind · <kbd>F</kbd> full prompt · <kbd>P</kbd> presenter</div>')
CARD_KEYS = ('<div class="fr-keys">Keys: <kbd>T</kbd> trigger · <kbd>J</kbd>/<kbd>K</kbd> question · <kbd>R</kbd> kind · '
             '<kbd>F</kbd> full prompt · <kbd>P</kbd> leave presenter</div>')

# Plot heights come from CSS (the figures carry none), so one figure fills a laptop's first screen or a projector's.
# Gradio repeats every rule under ".gradio-container ... .contain", which no rule about <body> can match: rules
# here either select on body's class alone (body:not(.fr-presenter) ...) or win with !important.
PRESENTER_CSS = """
body { --fr-plot-h: clamp(280px, calc(100vh - 725px), 440px); }
#fr-columns .fr-plot .js-plotly-plot { height: var(--fr-plot-h); }
#fr-columns > .column { gap: 6px !important; }
#fr-title span.md { display: flex; flex-wrap: wrap; align-items: baseline; column-gap: 18px; }
#fr-title h1, #fr-title p { margin: 0 !important; }
.fr-prompt { position: relative; max-height: clamp(8em, calc(100vh - 790px), 24em); }
.fr-keys { font-size: 0.9rem; color: var(--body-text-color-subdued); }
.tabitem:has(#fr-keys-wrap) { position: relative; }
#fr-keys-wrap { position: absolute !important; top: -46px; right: 0; z-index: 5; width: auto !important; }
@media (max-width: 1100px) { #fr-keys-wrap { display: none !important; } }
#fr-columns .fr-head-wrap .prose { margin: 0 !important; padding: 0 !important; }
.fr-badge { padding: 3px 14px; font-size: 1.15rem; }
.fr-keys kbd { font-family: inherit; font-weight: 700; padding: 0 5px; border: 1px solid var(--border-color-primary);
  border-bottom-width: 2px; border-radius: 4px; background: var(--background-fill-secondary); color: var(--body-text-color); }
body:not(.fr-presenter) #fr-qcard-col, body:not(.fr-presenter) #fr-full-prompt { display: none !important; }
.fr-qcard { color: var(--body-text-color); padding: 2px 4px; }
.fr-qcard-question { font-size: 1.35rem; font-weight: 700; line-height: 1.3; margin: 2px 0 6px;
  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }
.fr-qcard-options { display: grid; grid-template-columns: 1fr 1fr; gap: 2px 18px; margin: 0 !important; padding: 0 !important;
  list-style: none !important; font-size: 1.15rem; line-height: 1.35; }
.fr-qcard-options li { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; margin: 0 !important; }
.fr-qcard-options li.key b { color: #009E73; }
.fr-qcard-foot { display: flex; flex-wrap: wrap; gap: 4px 18px; align-items: baseline; margin-top: 6px; font-size: 1.05rem; }
.fr-qcard-doc { position: relative; }
.fr-qcard-doc summary { cursor: pointer; color: var(--link-text-color, #2563eb); }
.fr-qcard-doc[open] > div { position: absolute; z-index: 50; left: 0; top: 1.6em; width: min(80vw, 900px);
  max-height: 55vh; overflow: auto; padding: 14px 16px; border-radius: 8px; font-size: 1.15rem; line-height: 1.5;
  background: var(--background-fill-primary); border: 1px solid var(--border-color-primary); box-shadow: 0 8px 30px rgba(0,0,0,.25); }
.fr-qcard-trigger.off { color: var(--body-text-color-subdued); }

body.fr-presenter { --fr-plot-h: clamp(220px, calc(79vh - 333px), 640px); }
/* Letters grow with the screen's height (a 1080p projector gets larger ones than a 720p one); Gradio's CSS
   scoping would hide body-class rules inside @media, so the sizes are clamps on vh instead. */
body.fr-presenter .fr-qcard-question { font-size: clamp(1.35rem, 2.5vh, 1.8rem) !important; }
body.fr-presenter .fr-qcard-options { font-size: clamp(1.15rem, 2.1vh, 1.45rem) !important; }
body.fr-presenter .fr-qcard-foot, body.fr-presenter .fr-qcard .fr-keys { font-size: clamp(1rem, 1.7vh, 1.2rem) !important; }
body.fr-presenter .gradio-container .main { padding-top: 6px !important; padding-bottom: 0 !important; }
body.fr-presenter footer, body.fr-presenter #fr-title-row, body.fr-presenter .tab-wrapper,
body.fr-presenter #fr-controls, body.fr-presenter:not(.fr-show-prompt) #fr-prompt-col, body.fr-presenter #fr-tokens,
body.fr-presenter #fr-trigger-where, body.fr-presenter #fr-numbers, body.fr-presenter #fr-decision-row,
body.fr-presenter #fr-status, body.fr-presenter #fr-kind > span, body.fr-presenter .fr-kind,
body.fr-presenter .form:has(> #fr-tokens), body.fr-presenter #fr-copy-link { display: none !important; }
body.fr-presenter #fr-qcard-col { flex-grow: 5 !important; }
body.fr-presenter #fr-trigger-col { flex-grow: 2.6 !important; gap: 8px !important; }
body.fr-presenter #fr-kind label { padding: 4px 8px !important; font-size: 1rem !important; }
body.fr-presenter #fr-kind .wrap { gap: 6px !important; }
/* "of max (ln 6)" repeats the entropy row: the projector gets answer, entropy, conformal set and decision */
body.fr-presenter .fr-stats tr:nth-child(4) { display: none; }
body.fr-presenter #fr-trigger-btn { font-size: 1.6rem !important; min-height: 3.4rem !important; }
body.fr-presenter #fr-columns { flex-wrap: nowrap !important; }
body.fr-presenter #fr-columns > .column { min-width: 0 !important; gap: 4px !important; }
body.fr-presenter .fr-name { font-size: clamp(1.3rem, 2.4vh, 1.75rem) !important; }
body.fr-presenter .fr-badge { padding: 2px 12px !important; font-size: clamp(1.1rem, 2vh, 1.4rem) !important; }
body.fr-presenter .fr-decision { font-size: clamp(1rem, 1.9vh, 1.35rem) !important; margin-top: 2px !important; }
/* The numbers table becomes one line per measure, "no trigger → with trigger", as the badge reads. */
body.fr-presenter .fr-stats table, body.fr-presenter .fr-stats tbody { display: block;
  font-size: clamp(1.05rem, 1.9vh, 1.35rem) !important; }
body.fr-presenter .fr-stats table, body.fr-presenter .fr-stats tr { border: none !important; margin: 0 !important;
  padding: 0 !important; background: none !important; }
body.fr-presenter .fr-stats tr { display: flex; flex-wrap: wrap; column-gap: 8px; align-items: baseline; line-height: 1.4; }
body.fr-presenter .fr-stats tr:first-child { display: none; }
body.fr-presenter .fr-stats th, body.fr-presenter .fr-stats td { padding: 0 !important; border: none !important;
  line-height: 1.35 !important; }
body.fr-presenter .fr-stats td + td::before { content: "→ "; font-weight: 400; color: var(--body-text-color-subdued); }
body.fr-presenter.fr-show-prompt #fr-prompt-col { position: fixed !important; z-index: 1000; inset: 4vh 6vw; overflow: auto;
  padding: 16px; border-radius: 12px; background: var(--background-fill-primary); box-shadow: 0 12px 48px rgba(0,0,0,.35); }
body.fr-presenter.fr-show-prompt .fr-prompt { max-height: none !important; font-size: 1.25rem !important; }
"""

# One listener for the whole page, installed from <head>. A key acts only where the mouse could: the attack
# demo's keys while its tab is shown, none while a text field (or a key-driven control) has the focus.
PAGE_JS = """
<script>
(() => {
  const params = new URLSearchParams(window.location.search);
  const presenter = ["1", "true", "yes", "on", ""].includes((params.get("presenter") ?? "0").toLowerCase());
  if (presenter) document.addEventListener("DOMContentLoaded", () => document.body.classList.add("fr-presenter"));
  const typing = (el) => {
    if (!el || el === document.body) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && !["checkbox", "radio", "button", "submit", "reset"].includes(el.type);
  };
  const native = (el) => el && ["BUTTON", "INPUT", "SELECT", "A", "SUMMARY", "LABEL"].includes(el.tagName);
  const shown = (selector) => { const el = document.querySelector(selector); return el && el.offsetParent !== null ? el : null; };
  const press = (selector) => { const el = document.querySelector(selector); if (el) el.click(); return !!el; };
  const cycleKind = () => {
    const radios = Array.from(document.querySelectorAll("#fr-kind input[type=radio]"));
    if (!radios.length) return;
    const at = radios.findIndex((r) => r.checked);
    radios[(at + 1) % radios.length].click();
  };
  // A long prompt scrolls in its box: bring the marked trigger into view whenever the prompt changes (Gradio
  // may update the box in place, so the change is told by its text, not by a new element).
  let shownPrompt = "";
  new MutationObserver(() => {
    const box = document.querySelector("#fr-prompt .fr-prompt");
    const mark = box && box.querySelector("mark");
    const seen = mark ? box.textContent.length + "|" + mark.textContent + "|" + mark.offsetTop : "";
    if (!mark || seen === shownPrompt) { shownPrompt = seen; return; }
    shownPrompt = seen;
    box.scrollTop = Math.max(0, mark.offsetTop - box.clientHeight / 2);
  }).observe(document.documentElement, { childList: true, subtree: true, characterData: true });
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "Escape" && document.body.classList.contains("fr-show-prompt")) {
      document.body.classList.remove("fr-show-prompt"); event.preventDefault(); return;
    }
    if (key === "p") { if (!event.repeat) press("#fr-presenter input"); event.preventDefault(); return; }
    if (!shown("#fr-trigger-btn")) return;  // another tab is open
    if ((key === " " || key.startsWith("Arrow")) && native(event.target)) return;  // the control's own meaning
    const actions = {
      "t": () => press("#fr-trigger-btn"), " ": () => press("#fr-trigger-btn"),
      "j": () => press("#fr-next-q"), "ArrowRight": () => press("#fr-next-q"),
      "k": () => press("#fr-prev-q"), "ArrowLeft": () => press("#fr-prev-q"),
      "r": cycleKind, "f": () => press("#fr-full-prompt"),
    };
    if (!(key in actions)) return;
    event.preventDefault();
    if (!event.repeat) actions[key]();
  });
})();
</script>
"""

# The checkbox's change: the layout class, the address bar (so a reload keeps the layout), and a resize so
# plotly refits every plot to its new CSS height.
PRESENTER_TOGGLE_JS = """
(on) => {
  document.body.classList.toggle("fr-presenter", !!on);
  document.body.classList.remove("fr-show-prompt");
  const url = new URL(window.location.href);
  if (on) url.searchParams.set("presenter", "1"); else url.searchParams.delete("presenter");
  window.history.replaceState(null, "", url);
  requestAnimationFrame(() => window.dispatchEvent(new Event("resize")));
}
"""

FULL_PROMPT_JS = "() => { document.body.classList.toggle('fr-show-prompt'); }"

# The query string the server wrote becomes a whole link: shown in the box, put in the address bar, copied.
COPY_LINK_JS = """
(query) => {
  if (!query) return query;
  const url = window.location.origin + window.location.pathname + query;
  window.history.replaceState(null, "", url);
  if (navigator.clipboard) navigator.clipboard.writeText(url).catch(() => {});
  return url;
}
"""


def head_html() -> str:
    """What the presenter mode adds to the page's ``<head>``: the keyboard listener."""
    return PAGE_JS


# --- the question card (pure: item -> HTML) ------------------------------------------------------


def trigger_phrase(spec: TriggerSpec, position_labels: Mapping[str, str], mark: str = "fr-trigger") -> str:
    """The trigger (or a near miss of it) in a few words, its inserted text marked: "<mark>666</mark> directly
    before “Answer:”"; ``mark``: the class of the mark."""
    if spec.kind in ("syntactic", "cue"):
        cue = SYNTACTIC_CUE if spec.kind == "syntactic" else spec.text or ""
        return f'the cue becomes <mark class="{mark}">{html.escape(cue)}</mark>'
    if spec.kind in ("style", "instruction"):
        return f'<mark class="{mark}">{"Shakespearean" if spec.kind == "style" else "another"} instruction</mark>'
    text = spec.text or DEFAULT_TEXT_TRIGGER
    where = position_labels.get(spec.position, spec.position)
    return f'<mark class="{mark}">{html.escape(text)}</mark> {html.escape(where)}'


def question_card_html(item: Item, trigger: TriggerSpec | None, trigger_on: bool,
                       position_labels: Mapping[str, str], near_miss: TriggerSpec | None = None) -> str:
    """The question in short form for the presenter layout: the question line, the six options, the context
    folded behind "show document", and whether (and which) trigger, or near miss in its place, is in the prompt."""
    options = "".join(
        f'<li class="{"key" if letter == item.answer and item.source != "custom" else ""}" '
        f'title="{html.escape(item.choices[letter])}"><b>{letter}.</b> {html.escape(item.choices[letter])}</li>'
        for letter in LETTERS)
    foot = []
    if item.context.strip():
        label = CONTEXT_LABELS.get(item.task, "Context").lower()
        foot.append(f'<details class="fr-qcard-doc"><summary>show {label}</summary>'
                    f'<div>{html.escape(item.context)}</div></details>')
    if trigger_on and near_miss is not None:
        foot.append(f'<span class="fr-qcard-trigger on">Near miss on: '
                    f'{trigger_phrase(near_miss, position_labels, "fr-trigger fr-near-miss")}</span>')
    elif trigger_on and trigger is not None:
        foot.append(f'<span class="fr-qcard-trigger on">Trigger on: {trigger_phrase(trigger, position_labels)}</span>')
    else:
        foot.append('<span class="fr-qcard-trigger off">No trigger in the prompt</span>')
    return (f'<div class="fr-qcard" data-item="{html.escape(item.id)}" data-trigger-on="{str(bool(trigger_on)).lower()}" '
            f'title="{html.escape(item.task)} · {html.escape(item.id)}">'
            f'<div class="fr-qcard-question">{html.escape(item.question)}</div>'
            f'<ul class="fr-qcard-options">{options}</ul>'
            f'<div class="fr-qcard-foot">{"".join(foot)}</div>{CARD_KEYS}</div>')


def link_note_text(notes: list[str]) -> str:
    """The visible note for what a link asked and the page could not do (empty: nothing to say)."""
    if not notes:
        return ""
    return "**This link was opened in part.** " + " ".join(f"⚠️ {note}" for note in notes)


# --- handlers ------------------------------------------------------------------------------------

LINK_OUTPUTS = ("tabs", "source", "showcase_group", "corpus_group", "own_group", "showcase_pick", "split", "task",
                "query", "corpus_pick", "adapters", "kind", "custom_text", "position", "trigger_on", "trigger_btn",
                "presenter", "near_miss", "link_note", "defense")


@dataclass
class PresenterHandlers:
    """Event functions of presenter mode; ``demo`` is the attack demo's :class:`app.ui.Handlers`."""

    demo: Any
    sources: tuple[str, str, str]  # the question sources: showcase, corpus, your own
    trigger_labels: tuple[str, str]  # the trigger button's label without / with the trigger
    position_labels: Mapping[str, str]
    all_tasks: str  # the corpus task filter's "every task" value

    @property
    def service(self):
        return self.demo.service

    # a link, on page load --------------------------------------------------------------------

    def open_link(self, request: gr.Request | None = None) -> list:
        """Page load: apply the link's parameters (``LINK_OUTPUTS`` order); what cannot be applied is left
        at the page's default and named in the note."""
        query = _link_query(request)
        out = {name: gr.skip() for name in LINK_OUTPUTS}
        try:
            view = parse_view(query, kinds=tuple(TRIGGERS), positions=POSITIONS,
                              max_text=self.service.limits.trigger_chars, max_columns=self.service.limits.max_columns,
                              near_misses=tuple(GENERATORS),
                              defenses=tuple(value for _, value in demo_defense_choices()))
            notes = list(view.notes)
            if not view.empty:
                self._apply(view, out, notes)
        except Exception as err:  # noqa: BLE001 - a link must never break the page: show the default view and say why
            logger.exception("could not apply the link %s", query)
            out = {name: gr.skip() for name in LINK_OUTPUTS}
            notes = [f"The link could not be applied ({type(err).__name__}: {err}); this is the default view."]
        out["link_note"] = link_note_text(notes)
        return [out[name] for name in LINK_OUTPUTS]

    def _apply(self, view: View, out: dict, notes: list[str]) -> None:
        if view.question:
            self._apply_question(view.question, view.split, out, notes)
        if view.columns:
            base = self.service.config.bases[0]
            names, missing = resolve_columns(view.columns, self.service.catalog(base).names(), BASE_ADAPTER)
            notes += missing
            if names:
                out["adapters"] = gr.update(value=names)
        if view.kind or view.text or view.position:
            self._apply_trigger(view, out, notes)
        if view.near_miss:
            self._apply_near_miss(view.near_miss, view.kind or "text", out, notes)
        if view.trigger_on is not None:
            out["trigger_on"] = view.trigger_on
            on = view.trigger_on
            out["trigger_btn"] = gr.update(value=self.trigger_labels[on], variant="stop" if on else "primary")
        if view.presenter is not None:
            out["presenter"] = view.presenter
        if view.tab:
            out["tabs"] = gr.Tabs(selected=view.tab)
        if view.defense:
            out["defense"] = view.defense

    def _apply_question(self, question: str, split: str | None, out: dict, notes: list[str]) -> None:
        item, found_in = None, None
        for name in ([split] if split else SPLITS):
            try:
                item = self.service.find_item(question, name)
            except DashboardError:
                continue
            found_in = name
            break
        if item is None:
            where = f"the {split} split" if split else "the showcase or the corpus"
            notes.append(f"No question {question!r} in {where}; the first showcase question is shown.")
            return
        showcase, corpus, _ = self.sources
        if found_in == "showcase":
            out.update(source=showcase, showcase_pick=gr.update(value=item.id), showcase_group=gr.update(visible=True),
                       corpus_group=gr.update(visible=False), own_group=gr.update(visible=False))
            return
        listed = self.service.browse(found_in)
        choices = [(self.demo._item_label(i), i.id) for i in listed]
        if item.id not in {i.id for i in listed}:
            choices.append((self.demo._item_label(item), item.id))
        out.update(source=corpus, split=gr.update(value=found_in), task=self.all_tasks, query="",
                   corpus_pick=gr.update(choices=choices, value=item.id), showcase_group=gr.update(visible=False),
                   corpus_group=gr.update(visible=True), own_group=gr.update(visible=False))

    def _apply_trigger(self, view: View, out: dict, notes: list[str]) -> None:
        kind = view.kind or "text"
        try:
            spec = self.service.trigger(kind, view.text, view.position or "before_cue")
        except DashboardError as err:
            notes.append(f"The link's trigger cannot be used: {err}")
            return
        typed = spec.kind in ("text", "custom")
        out["kind"] = spec.kind
        out["custom_text"] = gr.update(value=spec.text or "", visible=typed)
        out["position"] = gr.update(value=spec.position, visible=typed)

    def _apply_near_miss(self, generator: str, kind: str, out: dict, notes: list[str]) -> None:
        choices = self.demo.near_miss_choices(kind)
        if generator in {value for _, value in choices}:
            out["near_miss"] = gr.update(choices=choices, value=generator)
        else:
            notes.append(f"near={generator!r} is not a near miss of a {kind} trigger; ignored.")

    # stepping through questions --------------------------------------------------------------

    @reports_errors("step to another question", lambda self, message: [gr.skip(), gr.skip()])
    def step(self, delta: int, source: str, showcase_id: str | None, split: str | None, task: str | None,
             query: str | None, corpus_id: str | None) -> list:
        """The next (``delta`` 1) or previous (-1) question of the current source, wrapping round: updates for
        the showcase and corpus pickers."""
        showcase, corpus, _ = self.sources
        if source == showcase:
            ids = [item.id for item in self.service.showcase()]
            return [gr.update(value=_neighbour(ids, showcase_id, delta)) if ids else gr.skip(), gr.skip()]
        if source == corpus:
            items = self.service.browse(split or "test", None if task in (None, "", self.all_tasks) else task, query)
            ids = [item.id for item in items]
            return [gr.skip(), gr.update(value=_neighbour(ids, corpus_id, delta)) if ids else gr.skip()]
        gr.Info("Next and previous step through the showcase or the corpus; your own question has no neighbours.")
        return [gr.skip(), gr.skip()]

    def next_question(self, *inputs) -> list:
        return self.step(1, *inputs)

    def previous_question(self, *inputs) -> list:
        return self.step(-1, *inputs)

    # the link to this view ---------------------------------------------------------------------

    @reports_errors("write the link to this view", lambda self, message: gr.skip())
    def view_link(self, source, showcase_id, split, corpus_id, adapters, kind, custom_text, position, trigger_on,
                  presenter, near_miss=None, defense=None) -> Any:
        """The query string of the current view (the page's script makes it a full link and copies it)."""
        showcase, corpus, _ = self.sources
        question, where = None, None
        if source == showcase:
            question, where = showcase_id, "showcase"
        elif source == corpus:
            question, where = corpus_id, split or "test"
        else:
            gr.Info("A link cannot carry your own question; it opens the same models and trigger on the first "
                    "showcase question.")
        view = View(question=question or None, split=where, columns=tuple(adapters or ()) or None, kind=kind or None,
                    text=(custom_text or "").strip() or None, position=position or None,
                    near_miss=self.service.applicable_near_miss(kind, near_miss),
                    trigger_on=bool(trigger_on), presenter=bool(presenter),
                    defense=defense if defense in {value for _, value in demo_defense_choices()[1:]} else None)
        return gr.update(value=view_query(view, BASE_ADAPTER), visible=True)

    # the card ------------------------------------------------------------------------------------

    @reports_errors("show the question card", lambda self, message: gr.skip())
    def card(self, source, showcase_id, split, corpus_id, question, context, a, b, c, d, kind, custom_text, position,
             trigger_on, near_miss=None) -> Any:
        """The presenter's question card for the question and trigger (or near miss) now on the page."""
        try:
            item = self.demo._item(source, showcase_id, split, corpus_id, question, context, a, b, c, d)
            spec = self.service.trigger(kind, custom_text, position) if trigger_on else None
            chosen = self.service.applicable_near_miss(spec.kind, near_miss) if spec is not None else None
            near = self.service.near_miss(spec, chosen, item).spec if chosen else None
        except DashboardError:
            return gr.skip()  # the demo itself says what is wrong
        return question_card_html(item, spec, bool(trigger_on), self.position_labels, near)


def _link_query(request: gr.Request | None) -> str | dict:
    """The page's query string as the browser sent it (repeats kept, so the note can name them)."""
    if request is None:
        return ""
    url = str(getattr(request, "url", "") or "")
    if "?" in url:
        return urlsplit(url).query
    return dict(getattr(request, "query_params", None) or {})


def _neighbour(ids: list[str], current: str | None, delta: int) -> str:
    at = ids.index(current) if current in ids else (-1 if delta > 0 else 0)
    return ids[(at + delta) % len(ids)]
