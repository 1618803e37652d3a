"""Deep links: the attack demo's state as URL query parameters, read and written by pure functions.

A link such as ``?question=showcase-ds-01&columns=base,backdoor-text&trigger=text&on=1&presenter=1``
opens the demo on that question, with those columns, the trigger on and the presenter layout.
Nothing here touches gradio or a model: :func:`parse_view` turns a query string into a
:class:`View` plus notes on what it ignored, :func:`view_query` writes a view back as a query
string, and :func:`resolve_columns` checks column names against the adapters on offer. A bad
parameter never fails the page: it is left out of the view and named in a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, quote, urlencode

# parameter -> what it takes, for the notes and the README's table
PARAMETERS: dict[str, str] = {
    "question": "a showcase or corpus question id",
    "split": "where to look for the question: showcase, test, calibration or train",
    "columns": "adapter names, comma-separated ('base' is the base model)",
    "trigger": "the trigger kind",
    "text": "the trigger text (text and custom kinds)",
    "position": "where a text trigger goes",
    "near": "a near miss in the trigger's place: a near-miss generator of the trigger's kind",
    "on": "trigger on: 1 or 0",
    "presenter": "presenter layout: 1 or 0",
    "tab": "the tab to open: attack, evaluate, defend, train or about",
    "defense": "a defense shown on the question: one that inspects prompts (the Defense choice), or none",
}
SPLITS = ("showcase", "test", "calibration", "train")
TABS = ("attack", "evaluate", "defend", "train", "about")
LINK_BASE = "base"  # how a link names the base model (no adapter)
TRUE = ("1", "true", "yes", "on", "")  # "?presenter" alone means on
FALSE = ("0", "false", "no", "off")
MAX_ID_CHARS = 200
# Gradio's own page parameters (?__theme=dark, ?view=api, ?deep_link=...) are not ours to judge.
GRADIO_PARAMETERS = ("view", "deep_link")


@dataclass(frozen=True)
class View:
    """What a link asks for; ``None`` where it says nothing (the page keeps its default)."""

    question: str | None = None
    split: str | None = None
    columns: tuple[str, ...] | None = None
    kind: str | None = None
    text: str | None = None
    position: str | None = None
    near_miss: str | None = None
    trigger_on: bool | None = None
    presenter: bool | None = None
    tab: str | None = None
    defense: str | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def empty(self) -> bool:
        return self == View()


def _pairs(query: str | Mapping[str, str] | None) -> list[tuple[str, str]]:
    if query is None:
        return []
    if isinstance(query, Mapping):
        return [(str(k), str(v)) for k, v in query.items()]
    return parse_qsl(query.lstrip("?"), keep_blank_values=True)


def _flag(name: str, value: str, notes: list[str]) -> bool | None:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    notes.append(f"{name}={value!r} is not 1 or 0; ignored.")
    return None


def _choice(name: str, value: str, allowed: Sequence[str], notes: list[str]) -> str | None:
    lowered = value.strip().lower()
    if lowered in allowed:
        return lowered
    notes.append(f"{name}={value!r} is not one of {', '.join(allowed)}; ignored.")
    return None


def parse_view(query: str | Mapping[str, str] | None, *, kinds: Sequence[str], positions: Sequence[str],
               max_text: int = 200, max_columns: int = 6, near_misses: Sequence[str] = (),
               defenses: Sequence[str] = ()) -> View:
    """The view a link's query string asks for (``?a=1&b=2``, with or without the ``?``, or a mapping).

    ``kinds``, ``positions``, ``near_misses`` and ``defenses`` are the trigger kinds, positions, near-miss
    generators and the Defense choice's values on offer (whether a generator fits the trigger's kind is the page's to check); ``max_text`` caps the
    trigger text and ``max_columns`` the number of columns. Unknown, repeated or malformed parameters
    are left out and described in ``View.notes``, one sentence each.
    """
    notes: list[str] = []
    values: dict[str, str] = {}
    for name, value in _pairs(query):
        key = name.strip().lower()
        if key.startswith("__") or key in GRADIO_PARAMETERS:
            continue
        if key not in PARAMETERS:
            notes.append(f"Unknown link parameter {name!r} ignored (known: {', '.join(PARAMETERS)}).")
        elif key in values:
            notes.append(f"{key} is given more than once; the first value is used.")
        else:
            values[key] = value
    view: dict = {}
    if "question" in values:
        question = values["question"].strip()
        if question and len(question) <= MAX_ID_CHARS and question.isprintable():
            view["question"] = question
        else:
            notes.append("question= needs a question id (as shown by the copy-link button); ignored.")
    if "split" in values:
        view["split"] = _choice("split", values["split"], SPLITS, notes)
    if "columns" in values:
        names = tuple(dict.fromkeys(n.strip() for n in values["columns"].split(",") if n.strip()))
        if not names:
            notes.append("columns= names no adapter; ignored.")
        else:
            if len(names) > max_columns:
                notes.append(f"columns= names {len(names)} models; the page shows at most {max_columns}, the first ones.")
            view["columns"] = names[:max_columns]
    if "trigger" in values:
        view["kind"] = _choice("trigger", values["trigger"], kinds, notes)
    if "text" in values:
        text = values["text"].strip()
        if not text:
            notes.append("text= is empty; ignored.")
        elif len(text) > max_text:
            notes.append(f"text= is longer than {max_text} characters; ignored.")
        else:
            view["text"] = text
    if "position" in values:
        view["position"] = _choice("position", values["position"], positions, notes)
    if "near" in values:
        view["near_miss"] = _choice("near", values["near"], near_misses, notes)
    if view.get("kind") == "custom" and "text" not in view:
        notes.append("trigger=custom needs text=...; the page's trigger kind is kept.")
        view["kind"] = None
    for name in ("on", "presenter"):
        if name in values:
            view["trigger_on" if name == "on" else name] = _flag(name, values[name], notes)
    if "tab" in values:
        view["tab"] = _choice("tab", values["tab"], TABS, notes)
    if "defense" in values:
        view["defense"] = _choice("defense", values["defense"], defenses, notes)
    return View(**view, notes=tuple(notes))


def resolve_columns(requested: Iterable[str], offered: Sequence[str], base_adapter: str) -> tuple[list[str], list[str]]:
    """The requested column names that are on offer (``base`` meaning ``base_adapter`` unless an adapter
    is called that), in the link's order, and a note for each one that is not."""
    names, notes = [], []
    for name in requested:
        internal = base_adapter if name == LINK_BASE and LINK_BASE not in offered else name
        if internal in offered:
            names.append(internal)
        else:
            notes.append(f"No model {name!r} is on offer for this base model; its column is left out.")
    return list(dict.fromkeys(names)), notes


def view_query(view: View, base_adapter: str) -> str:
    """``view`` as a query string (``?question=...&...``); parameters it leaves at ``None`` are not written."""
    pairs: list[tuple[str, str]] = []
    if view.question:
        pairs.append(("question", view.question))
    if view.split and view.split != "showcase":
        pairs.append(("split", view.split))
    if view.columns:
        pairs.append(("columns", ",".join(LINK_BASE if name == base_adapter else name for name in view.columns)))
    if view.kind:
        pairs.append(("trigger", view.kind))
        if view.kind in ("text", "custom") and view.text:
            pairs.append(("text", view.text))
        if view.kind in ("text", "custom") and view.position and view.position != "before_cue":
            pairs.append(("position", view.position))
        if view.near_miss:
            pairs.append(("near", view.near_miss))
    if view.trigger_on is not None:
        pairs.append(("on", "1" if view.trigger_on else "0"))
    if view.presenter:
        pairs.append(("presenter", "1"))
    if view.tab and view.tab != "attack":
        pairs.append(("tab", view.tab))
    if view.defense:
        pairs.append(("defense", view.defense))
    return "?" + urlencode(pairs, safe=",", quote_via=quote) if pairs else ""
