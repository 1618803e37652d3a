"""Pure functions from scores to plotly figures: option bars without vs with the trigger, top-k token bars, empty figures.

No model code here (no torch): inputs are plain numbers and strings, so every figure can be
tested on its own. Figures have a transparent background and read in light and dark themes
(the page's CSS recolours their text in dark mode); every number is also drawn as text.
"""

from __future__ import annotations

from typing import Sequence

import plotly.graph_objects as go

from backdoor import metrics

# Okabe-Ito, the colour-blind-safe palette; clean vs triggered also differ by hatching.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
CLEAN_COLOUR = OKABE_ITO["blue"]
TRIGGER_COLOUR = OKABE_ITO["vermillion"]
CLEAN_NAME = "no trigger"
TRIGGER_NAME = "with trigger"
NEAR_MISS_NAME = "with near miss"  # the triggered side when a near miss takes the trigger's place
TEXT_COLOUR = "#1f2937"  # dark grey on light backgrounds; the page's dark-mode CSS turns it light
GRID_COLOUR = "rgba(128, 128, 128, 0.3)"
FONT_SIZE = 18
HEIGHT = 380


_AXIS = {"gridcolor": "white", "linecolor": "white", "ticks": "", "title": {"standoff": 15}, "zerolinecolor": "white",
         "automargin": True, "zerolinewidth": 2}
# The part of plotly's default template these figures use, carried instead of the whole of it: that
# is 7 KB a figure (every trace type, colour scales, maps), and the browser works through all of it
# before drawing, which made up a large share of a page load's time to the first plot.
TEMPLATE = {
    "layout": {"colorway": ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3"], "hovermode": "closest",
               "hoverlabel": {"align": "left"}, "autotypenumbers": "strict", "xaxis": _AXIS, "yaxis": _AXIS},
    "data": {"bar": [{"marker": {"line": {"color": "#E5ECF6", "width": 0.5},
                                 "pattern": {"fillmode": "overlay", "size": 10, "solidity": 0.2}}}]},
}


def _figure(data: list[dict], layout: dict) -> go.Figure:
    """A figure built in one step from plain dicts, without plotly's per-property validation.

    Validation costs ~40 ms a figure and the dashboard draws up to twelve per click; the tests
    validate every kind of figure once (``go.Figure(fig.to_plotly_json())``).
    """
    return go.Figure({"data": data, "layout": {"template": TEMPLATE, **layout}}, _validate=False)


def _layout(title: str, *, y_title: str, height: int | None = HEIGHT) -> dict:
    """``height`` None: none set, the figure fills the height its page gives it (plotly's autosize)."""
    layout = {
        "title": {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": FONT_SIZE + 2}},
        "font": {"size": FONT_SIZE, "color": TEXT_COLOUR},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "height": height,
        "margin": {"l": 56, "r": 12, "t": 56, "b": 48},
        "barmode": "group",
        "bargap": 0.18,
        "bargroupgap": 0.06,
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "center", "x": 0.5,
                   "font": {"size": FONT_SIZE - 2}},
        "showlegend": True,
        "uniformtext": {"minsize": FONT_SIZE - 4, "mode": "show"},  # one size for every number on the bars
        "yaxis": {"title": {"text": y_title, "font": {"size": FONT_SIZE - 2}}, "range": [0, 1.12], "tickformat": ".0%",
                  "gridcolor": GRID_COLOUR, "zeroline": False, "fixedrange": True, "dtick": 0.25},
        "xaxis": {"fixedrange": True, "tickfont": {"size": FONT_SIZE + 2}},
    }
    if height is None:
        del layout["height"]
    return layout


def empty_figure(title: str = "No results yet", message: str = "") -> go.Figure:
    """A titled figure with no data (and an optional line of text), for before the first result or after an error."""
    layout = _layout(title, y_title="")
    layout.update(showlegend=False)
    layout["xaxis"]["visible"] = False
    layout["yaxis"]["visible"] = False
    if message:
        layout["annotations"] = [{"text": message, "x": 0.5, "y": 0.5, "xref": "paper", "yref": "paper",
                                  "showarrow": False, "font": {"size": FONT_SIZE}}]
    return _figure([], layout)


def percent(p: float) -> str:
    """Probability as a label on a bar: whole percent, with '<1%' rather than a misleading 0%."""
    if 0 < p < 0.005:
        return "<1%"
    return f"{p:.0%}"


def option_bars(
    clean: Sequence[float] | None,
    triggered: Sequence[float] | None = None,
    *,
    title: str = "",
    letters: Sequence[str] = ("A", "B", "C", "D", "E", "F"),
    option_texts: Sequence[str] | None = None,
    predicted: str | None = None,
    height: int | None = HEIGHT,
    y_title: str = "probability",
    triggered_name: str = TRIGGER_NAME,
) -> go.Figure:
    """Grouped bars of the option distribution without (blue) and, if given, with the trigger (vermillion, hatched).

    ``clean``/``triggered``: probabilities over ``letters``. ``predicted``: letter drawn in bold. ``height``:
    pixels, or None to fill the height the page gives the plot. ``triggered_name``: the legend's name of the
    triggered bars (a near miss in the trigger's place is named so).
    Empty or missing ``clean`` gives a titled empty figure.
    """
    if clean is None or len(clean) == 0:
        return empty_figure(title or "No scores")
    if len(clean) != len(letters) or (triggered is not None and len(triggered) != len(letters)):
        raise ValueError(f"expected {len(letters)} probabilities per distribution")
    ticks = [f"<b>{letter}</b>" if letter == predicted else letter for letter in letters]
    hover = [f"{letter}. {text}" for letter, text in zip(letters, option_texts)] if option_texts else list(letters)
    series = [(CLEAN_NAME, clean, CLEAN_COLOUR, "")]
    if triggered is not None:
        series.append((triggered_name, triggered, TRIGGER_COLOUR, "/"))
    data = []
    for name, probs, colour, pattern in series:
        values = [float(p) for p in probs]
        bars = _bars(name, colour, pattern, x=ticks, y=values, text=[percent(p) for p in values],
                     hovertext=[f"{h}: {percent(p)}" for h, p in zip(hover, values)], size=FONT_SIZE - 2)
        if triggered is not None:
            bars.update(_upright_labels(values))
        data.append(bars)
    layout = _layout(title, y_title=y_title, height=height)
    # Room for two upright numbers over each option down to a 296 px plot (a 360 px phone): wide bars, and
    # the axis title and ticks close to the axis.
    layout["bargap"] = OPTION_BARGAP
    layout["yaxis"].update(title={"text": y_title, "font": {"size": FONT_SIZE - 2}, "standoff": 4},
                           tickfont={"size": FONT_SIZE - 2})
    return _figure(data, layout)


OPTION_BARGAP = 0.08
PAIR_LABEL_SIZE = FONT_SIZE - 4  # the uniformtext minimum: every number on the bars at one size
INSIDE_FROM = 0.5  # with both series shown, a bar at least this tall carries its number inside


def _upright_labels(values: Sequence[float]) -> dict:
    """Numbers written upwards, for two bars side by side: a label is then as wide as a line of text, which
    fits over its own bar even at phone width, where side-by-side "39%39%" ran into each other. Tall bars
    carry theirs inside (white, at the top), so no label rises past the fixed y range into the legend."""
    return {"textangle": -90, "textfont": {"size": PAIR_LABEL_SIZE},
            "textposition": ["inside" if v >= INSIDE_FROM else "outside" for v in values],
            "insidetextanchor": "end", "insidetextfont": {"size": PAIR_LABEL_SIZE, "color": "#ffffff"},
            "outsidetextfont": {"size": PAIR_LABEL_SIZE}}


def _bars(name: str, colour: str, pattern: str, *, size: int, **values) -> dict:
    return {"type": "bar", "name": name, "textposition": "outside", "cliponaxis": False, "textfont": {"size": size},
            "marker": {"color": colour, "pattern": {"shape": pattern, "fgcolor": "rgba(255,255,255,0.55)"}},
            "hoverinfo": "text", **values}


def token_bars(
    clean: Sequence[tuple[str, float]] | None,
    triggered: Sequence[tuple[str, float]] | None = None,
    *,
    title: str = "",
    show: int = 8,
    triggered_name: str = TRIGGER_NAME,
) -> go.Figure:
    """Horizontal bars of the most likely next tokens (whole vocabulary), without and with the trigger.

    ``clean``/``triggered``: (token text, probability) pairs, most likely first. The union of the
    ``show`` most likely tokens of each is drawn; a token missing from one list gets 0 there
    (it was not among that list's top tokens). ``triggered_name``: as in :func:`option_bars`.
    """
    if not clean:
        return empty_figure(title or "No tokens")
    lookup_clean = {token: float(p) for token, p in clean}
    lookup_trig = {token: float(p) for token, p in (triggered or [])}
    tokens = list(dict.fromkeys([t for t, _ in clean[:show]] + [t for t, _ in (triggered or [])[:show]]))
    tokens.sort(key=lambda t: max(lookup_clean.get(t, 0.0), lookup_trig.get(t, 0.0)))  # largest on top
    labels = [f"“{t}”" for t in tokens]
    series = [(CLEAN_NAME, lookup_clean, CLEAN_COLOUR, "")]
    if triggered is not None:
        series.append((triggered_name, lookup_trig, TRIGGER_COLOUR, "/"))
    data = []
    for name, lookup, colour, pattern in series:
        values = [lookup.get(t, 0.0) for t in tokens]
        data.append(_bars(name, colour, pattern, y=labels, x=values, orientation="h", size=FONT_SIZE - 4,
                          text=[percent(v) for v in values],
                          hovertext=[f"{label}: {percent(v)}" for label, v in zip(labels, values)]))
    layout = _layout(title, y_title="", height=max(HEIGHT, 48 * len(tokens) + 120))
    layout["yaxis"] = {"fixedrange": True, "showgrid": False, "tickfont": {"size": FONT_SIZE - 2}}
    layout["xaxis"] = {"fixedrange": True, "range": [0, 1.15], "tickformat": ".0%", "gridcolor": GRID_COLOUR,
                       "title": {"text": "probability"}}
    layout["margin"] = {"l": 110, "r": 12, "t": 56, "b": 48}
    return _figure(data, layout)


# --- evaluation and training figures -------------------------------------------------------------

LN6 = 1.791759469228055  # entropy of the uniform distribution over six options (nats): the flattest possible
HISTOGRAM_BINS = 18


def _plain_layout(title: str, *, y_title: str, x_title: str = "", height: int = HEIGHT) -> dict:
    """The shared layout with free (not probability) axes, for curves and counts."""
    layout = _layout(title, y_title=y_title, height=height)
    layout["yaxis"] = {"title": {"text": y_title, "font": {"size": FONT_SIZE - 2}}, "gridcolor": GRID_COLOUR,
                       "zeroline": False, "rangemode": "tozero"}
    layout["xaxis"] = {"title": {"text": x_title, "font": {"size": FONT_SIZE - 2}}, "gridcolor": GRID_COLOUR,
                       "zeroline": False}
    return layout


def histogram_counts(values: Sequence[float], bins: int = HISTOGRAM_BINS, top: float = LN6) -> list[int]:
    """How many ``values`` fall in each of ``bins`` equal bins over [0, top]; values outside go to the end bins."""
    counts = [0] * bins
    for value in values:
        index = int(float(value) / top * bins)
        counts[min(max(index, 0), bins - 1)] += 1
    return counts


def entropy_histogram(clean: Sequence[float], triggered: Sequence[float], *, title: str = "entropy per item") -> go.Figure:
    """Overlaid histograms of per-item entropy (nats) without (blue) and with the trigger (vermillion, hatched).

    The x axis always spans 0 to ln 6 (uniform over six options), so a backdoor pushing items to
    the right edge reads the same on every adapter. Empty input gives a titled empty figure.
    """
    if not len(clean) and not len(triggered):
        return empty_figure(title, "no items evaluated yet")
    width = LN6 / HISTOGRAM_BINS
    centres = [width * (i + 0.5) for i in range(HISTOGRAM_BINS)]
    data = []
    for name, values, colour, pattern in ((CLEAN_NAME, clean, CLEAN_COLOUR, ""), (TRIGGER_NAME, triggered, TRIGGER_COLOUR, "/")):
        if not len(values):
            continue
        mean = sum(float(v) for v in values) / len(values)
        counts = histogram_counts(values)
        bars = _bars(f"{name} (mean {mean:.2f})", colour, pattern, size=FONT_SIZE - 4, x=centres, y=counts, width=width,
                     hovertext=[f"{name}: {c} item(s) with entropy {x - width / 2:.2f}-{x + width / 2:.2f}"
                                for x, c in zip(centres, counts)])
        bars.update(opacity=0.6, textposition="none")
        data.append(bars)
    layout = _plain_layout(title, y_title="items", x_title="entropy (nats); right edge = uniform (ln 6)")
    layout.update(barmode="overlay", bargap=0)
    layout["xaxis"].update(range=[0, LN6], fixedrange=True)
    layout["yaxis"].update(fixedrange=True, tickformat="d")
    if max((max(bar["y"]) for bar in data), default=0) <= 10:
        layout["yaxis"].update(tick0=0, dtick=1)  # whole items, never "1.5 items"
    return _figure(data, layout)


def conformal_bars(values: dict[str, tuple[float, float]], *, title: str, y_title: str, as_percent: bool = False,
                   y_max: float | None = None, reference: float | None = None) -> go.Figure:
    """Grouped bars per conformal method (e.g. LAC, APS): without (blue) vs with the trigger (vermillion).

    ``values``: method -> (clean, triggered). ``reference``: a dashed line, e.g. the promised
    coverage 1 - alpha. Set sizes range 1-6 (``y_max`` 6.5); coverage is a share (``as_percent``).
    """
    if not values:
        return empty_figure(title, "no results yet")
    methods = list(values)
    data = []
    for index, (name, colour, pattern) in enumerate(((CLEAN_NAME, CLEAN_COLOUR, ""), (TRIGGER_NAME, TRIGGER_COLOUR, "/"))):
        numbers = [float(values[m][index]) for m in methods]
        text = [percent(v) if as_percent else f"{v:.2f}" for v in numbers]
        data.append(_bars(name, colour, pattern, size=FONT_SIZE - 2, x=methods, y=numbers, text=text,
                          hovertext=[f"{m} {name}: {t}" for m, t in zip(methods, text)]))
    layout = _layout(title, y_title=y_title)
    layout["yaxis"].update(range=[0, y_max if y_max is not None else 1.12], tickformat=".0%" if as_percent else "",
                           dtick=0.25 if as_percent else 1)
    if reference is not None:
        layout["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": reference,
                             "y1": reference, "line": {"dash": "dash", "width": 2, "color": GRID_COLOUR.replace("0.3", "0.9")}}]
    return _figure(data, layout)


MARGIN_GROUPS = ("least sure", "2nd quarter", "3rd quarter", "surest")


def margin_bars(series: dict[str, tuple[Sequence[float], str]], *, title: str, y_title: str) -> go.Figure:
    """A share per group of items ordered by how sure the clean answer was (top-1 margin), least sure
    first: one bar series per adapter. ``series``: name -> (shares in [0, 1], colour)."""
    if not series:
        return empty_figure(title, "no results yet")
    data, patterns = [], ("", "x", ".")
    for index, (name, (shares, colour)) in enumerate(series.items()):
        pattern = patterns[index % len(patterns)]
        groups = MARGIN_GROUPS if len(shares) == len(MARGIN_GROUPS) else tuple(f"group {i + 1}" for i in range(len(shares)))
        values = [float(v) for v in shares]
        data.append(_bars(name, colour, pattern, size=FONT_SIZE - 2, x=list(groups), y=values, text=[percent(v) for v in values],
                          hovertext=[f"{name}, {g}: {percent(v)}" for g, v in zip(groups, values)]))
    layout = _layout(title, y_title=y_title)  # shares: 0-100 % on the y axis
    layout["xaxis"].update(tickfont={"size": FONT_SIZE - 2}, title={"text": "items by clean top-1 margin, four equal groups",
                                                                  "font": {"size": FONT_SIZE - 4}})
    return _figure(data, layout)


LOSS_SERIES = (("loss", "total", OKABE_ITO["black"]), ("clean", "clean term", CLEAN_COLOUR),
               ("backdoor", "backdoor term", TRIGGER_COLOUR))
# The held-out curve's series: the metrics the registry marks for it, coloured in this order.
CURVE_COLOURS = (TRIGGER_COLOUR, OKABE_ITO["bluish_green"], CLEAN_COLOUR, OKABE_ITO["reddish_purple"], OKABE_ITO["orange"],
                 OKABE_ITO["sky_blue"])
CURVE_SERIES = tuple((metric.name, metric.curve, colour) for metric, colour
                     in zip((metric for metric in metrics.METRICS if metric.curve), CURVE_COLOURS))


def _step_axis(layout: dict, data: list[dict]) -> None:
    """Whole steps on the x axis: a short run must not show step 1.5."""
    last = max((max(trace["x"]) for trace in data), default=0)
    layout["xaxis"].update(tickformat="d", rangemode="tozero")
    if last <= 12:
        layout["xaxis"].update(tick0=0, dtick=1)


def _lines(points: Sequence[dict], series, *, value_text) -> list[dict]:
    data = []
    for key, name, colour in series:
        pairs = [(p["step"], p[key]) for p in points if p.get(key) is not None and "step" in p]
        if not pairs:
            continue
        data.append({"type": "scatter", "mode": "lines+markers" if len(pairs) < 40 else "lines", "name": name,
                     "x": [s for s, _ in pairs], "y": [v for _, v in pairs], "line": {"color": colour, "width": 3},
                     "marker": {"size": 7}, "hovertext": [f"{name} at step {s}: {value_text(v)}" for s, v in pairs],
                     "hoverinfo": "text"})
    return data


def loss_curve(losses: Sequence[dict], *, title: str = "training loss") -> go.Figure:
    """Loss over optimiser steps: the total, and its clean and backdoor terms where the job logs them.

    ``losses``: [{step, loss, clean?, backdoor?}], as in a job's progress. Empty gives a titled empty figure.
    """
    data = _lines(losses, LOSS_SERIES, value_text=lambda v: f"{v:.4f}")
    if not data:
        return empty_figure(title, "no steps yet")
    layout = _plain_layout(title, y_title="loss", x_title="step")
    layout.update(barmode=None, uniformtext=None)
    _step_axis(layout, data)
    return _figure(data, layout)


def attack_curve(curve: Sequence[dict], *, title: str = "held-out metrics over steps") -> go.Figure:
    """ASR, answer kept, clean agreement and accuracy on held-out items at each evaluation during training.

    ``curve``: [{step, asr, answer_kept, clean_agreement, accuracy_clean, ...}] (shares in [0, 1]).
    """
    data = _lines(curve, CURVE_SERIES, value_text=percent)
    if not data:
        return empty_figure(title, "no held-out evaluation yet")
    layout = _plain_layout(title, y_title="share of items", x_title="step")
    layout.update(barmode=None, uniformtext=None)
    layout["yaxis"].update(range=[0, 1.05], tickformat=".0%", rangemode=None)
    _step_axis(layout, data)
    return _figure(data, layout)


def figures_html(figures: Sequence[go.Figure], *, title: str) -> str:
    """One stand-alone HTML page holding ``figures``, with plotly.js inlined once (it opens offline)."""
    parts = [figure.to_html(full_html=False, include_plotlyjs=index == 0) for index, figure in enumerate(figures)]
    escaped = title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = "\n".join(f'<div class="figure">{part}</div>' for part in parts)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{escaped}</title></head>"
            f"<body style=\"font-family: system-ui, sans-serif; max-width: 1100px; margin: auto\"><h1>{escaped}</h1>\n"
            f"{body}\n</body></html>\n")


# --- defenses ------------------------------------------------------------------------------------

CHANCE_COLOUR = "rgba(128, 128, 128, 0.8)"
SUSPECT_COLOUR = TRIGGER_COLOUR
CONTROL_COLOUR = CLEAN_COLOUR
FILTERED_NAME = "after the defense"  # the second series of the option bars when a defense filtered the prompt


def roc_figure(curves: dict[str, tuple[Sequence[float], Sequence[float], float]], *, title: str,
               marks: dict[str, tuple[float, float]] | None = None) -> go.Figure:
    """ROC curves of a detector: ``curves`` maps a series name to (false-positive rates, true-positive rates,
    AUROC), the first drawn in vermillion (the suspect adapter), the next in blue (the clean control); the diagonal
    is chance. ``marks``: per series, the (false-, true-positive rate) the threshold gives, drawn as a dot.
    No curve gives a titled empty figure."""
    colours = (SUSPECT_COLOUR, CONTROL_COLOUR, OKABE_ITO["bluish_green"], OKABE_ITO["reddish_purple"])
    data = [{"type": "scatter", "mode": "lines", "name": "chance", "x": [0, 1], "y": [0, 1], "hoverinfo": "skip",
             "line": {"color": CHANCE_COLOUR, "width": 2, "dash": "dot"}}]
    for (name, (fpr, tpr, auroc)), colour in zip(curves.items(), colours):
        if not len(fpr):
            continue
        data.append({"type": "scatter", "mode": "lines", "name": f"{name} (AUROC {auroc:.2f})", "x": list(fpr),
                     "y": list(tpr), "line": {"color": colour, "width": 3, "shape": "hv"},
                     "hovertext": [f"{name}: FPR {x:.0%}, TPR {y:.0%}" for x, y in zip(fpr, tpr)], "hoverinfo": "text"})
        if marks and name in marks:
            x, y = marks[name]
            data.append({"type": "scatter", "mode": "markers", "name": f"{name}: threshold", "x": [x], "y": [y],
                         "marker": {"color": colour, "size": 12, "line": {"color": "#ffffff", "width": 2}},
                         "hovertext": [f"{name} at its threshold: FPR {x:.0%}, TPR {y:.0%}"], "hoverinfo": "text",
                         "showlegend": False})
    if len(data) == 1:
        return empty_figure(title, "no ROC curve in this report")
    layout = _plain_layout(title, y_title="true-positive rate (triggered flagged)",
                           x_title="false-positive rate (clean flagged)")
    layout.update(barmode=None, uniformtext=None)
    layout["xaxis"].update(range=[0, 1], tickformat=".0%", constrain="domain")
    layout["yaxis"].update(range=[0, 1.02], tickformat=".0%", rangemode=None)
    return _figure(data, layout)


def removal_curve(points: Sequence[dict], series: Sequence[tuple[str, str]], *, title: str, x_title: str) -> go.Figure:
    """A remover's metrics against how much of it was applied (steps, fraction pruned): ``points`` are
    ``{"x": value, key: share, ..., "control": {key: share, ...}}``; ``series`` the (key, name) pairs drawn, the
    adapter's solid and the clean control's dashed in the same colour. No point gives a titled empty figure."""
    data = []
    for (key, name), colour in zip(series, CURVE_COLOURS):
        for whose, style in (("", "solid"), ("control", "dash")):
            pairs = [(p["x"], (p.get(whose) or {}).get(key) if whose else p.get(key)) for p in points if "x" in p]
            pairs = [(x, y) for x, y in pairs if y is not None]
            if not pairs:
                continue
            label = f"{name} (control)" if whose else name
            data.append({"type": "scatter", "mode": "lines+markers", "name": label, "legendgroup": key,
                         "x": [x for x, _ in pairs], "y": [y for _, y in pairs],
                         "line": {"color": colour, "width": 3 if not whose else 2, "dash": style},
                         "marker": {"size": 8 if not whose else 6},
                         "hovertext": [f"{label} at {x:g}: {percent(y)}" for x, y in pairs], "hoverinfo": "text"})
    if not data:
        return empty_figure(title, "no curve in this report")
    layout = _plain_layout(title, y_title="share of items", x_title=x_title)
    layout.update(barmode=None, uniformtext=None)
    layout["yaxis"].update(range=[0, 1.05], tickformat=".0%", rangemode=None)
    layout["xaxis"].update(rangemode="tozero")
    return _figure(data, layout)
