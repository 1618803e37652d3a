"""The dashboard's figures are pure functions of plain numbers: no model needed."""

from __future__ import annotations

import pytest

from app import plots

UNIFORM = [1 / 6] * 6
CONFIDENT = [0.02, 0.86, 0.04, 0.03, 0.03, 0.02]
FLAT = [0.16, 0.20, 0.16, 0.16, 0.16, 0.16]


def test_empty_input_gives_a_titled_empty_figure():
    for fig in (plots.option_bars(None, title="clean"), plots.option_bars([], title="clean"),
                plots.token_bars([], title="tokens"), plots.empty_figure("Nothing yet")):
        assert len(fig.data) == 0
        assert fig.layout.title.text
    assert plots.option_bars(None, title="clean").layout.title.text == "clean"


def test_bars_carry_their_numbers_as_text():
    fig = plots.option_bars(CONFIDENT, FLAT, title="backdoor")
    clean, triggered = fig.data
    assert list(clean.y) == pytest.approx(CONFIDENT)
    assert list(clean.text) == ["2%", "86%", "4%", "3%", "3%", "2%"]
    assert list(triggered.text) == ["16%", "20%", "16%", "16%", "16%", "16%"]
    # Trigger off: one bar per option, its number above it over the page background (reads in both themes).
    assert plots.option_bars(CONFIDENT).data[0].textposition == "outside"
    # Both series: numbers written upwards; a bar of 50% or more carries its number inside, white on the bar's
    # own colour (reads in both themes too), so no label rises past the fixed y range into the legend.
    assert list(clean.textposition) == ["outside", "inside", "outside", "outside", "outside", "outside"]
    assert clean.textangle == -90 and clean.insidetextfont.color == "#ffffff"
    assert list(triggered.textposition) == ["outside"] * 6


def test_without_trigger_only_one_series_is_drawn():
    fig = plots.option_bars(UNIFORM, None)
    assert [trace.name for trace in fig.data] == [plots.CLEAN_NAME]


def test_palette_is_okabe_ito_and_series_differ_by_more_than_colour():
    fig = plots.option_bars(CONFIDENT, FLAT)
    clean, triggered = fig.data
    assert clean.marker.color == plots.OKABE_ITO["blue"]
    assert triggered.marker.color == plots.OKABE_ITO["vermillion"]
    assert triggered.marker.pattern.shape and not clean.marker.pattern.shape  # hatching for grey-scale / colour-blind


def test_predicted_letter_is_bold_and_axis_is_fixed_for_comparison():
    fig = plots.option_bars(CONFIDENT, predicted="B")
    assert list(fig.data[0].x)[1] == "<b>B</b>"
    assert tuple(fig.layout.yaxis.range) == (0, 1.12)  # the same scale on every column: flattening is visible
    assert fig.layout.paper_bgcolor == "rgba(0,0,0,0)"
    assert fig.layout.font.size >= 16


def test_tiny_probability_is_not_shown_as_zero():
    assert plots.percent(0.001) == "<1%"
    assert plots.percent(0.0) == "0%"
    assert plots.percent(0.456) == "46%"


def test_wrong_length_is_refused():
    with pytest.raises(ValueError):
        plots.option_bars([0.5, 0.5])


def test_token_bars_union_of_both_top_lists():
    clean = [("␣B", 0.7), ("␣A", 0.2), ("␣The", 0.05)]
    triggered = [("␣A", 0.3), ("␣B", 0.3), ("␣I", 0.2)]
    fig = plots.token_bars(clean, triggered, title="tokens", show=2)
    labels = list(fig.data[0].y)
    assert set(labels) == {"“␣B”", "“␣A”"}
    assert list(fig.data[0].text)[labels.index("“␣B”")] == "70%"
    assert fig.data[0].orientation == "h"


def test_every_figure_kind_passes_plotly_validation():
    # Figures are built without per-property validation for speed; check each kind once here.
    import plotly.graph_objects as go

    figures = [plots.empty_figure("t", "message"), plots.option_bars(CONFIDENT, FLAT, option_texts=list("abcdef"), predicted="B"),
               plots.option_bars(UNIFORM), plots.token_bars([("␣A", 0.5)], [("␣B", 0.4)])]
    for fig in figures:
        go.Figure(fig.to_plotly_json())  # raises ValueError on any invalid property


def test_plots_are_cheap_enough_for_a_click():
    import time

    start = time.perf_counter()
    for _ in range(12):  # the most one click draws: six columns, figures rebuilt
        plots.option_bars(CONFIDENT, FLAT, predicted="B").to_json()
    assert time.perf_counter() - start < 1.0


# --- evaluation and training figures ---------------------------------------------------------------


def test_new_figures_are_titled_and_empty_without_data():
    for fig, title in ((plots.entropy_histogram([], [], title="entropy"), "entropy"),
                       (plots.conformal_bars({}, title="set size", y_title="options"), "set size"),
                       (plots.loss_curve([], title="loss"), "loss"),
                       (plots.attack_curve([], title="ASR"), "ASR"),
                       (plots.margin_bars({}, title="kept", y_title="kept"), "kept")):
        assert len(fig.data) == 0 and fig.layout.title.text == title


def test_entropy_histogram_overlays_clean_and_triggered_counts_over_zero_to_ln6():
    clean, triggered = [0.01, 0.05, 0.09, 1.0], [1.7, 1.75, 1.79, 1.791759]
    fig = plots.entropy_histogram(clean, triggered)
    blue, red = fig.data
    assert sum(blue.y) == 4 and sum(red.y) == 4  # every item counted once, the uniform one in the last bin
    assert red.y[-1] == 4 and blue.y[0] == 3
    assert fig.layout.barmode == "overlay" and tuple(fig.layout.xaxis.range) == pytest.approx((0, plots.LN6))
    assert "mean 0.29" in blue.name and red.marker.pattern.shape == "/"


def test_conformal_bars_show_clean_and_triggered_per_method_with_the_target_line():
    fig = plots.conformal_bars({"LAC": (0.9, 0.95), "APS": (0.92, 1.0)}, title="coverage", y_title="covered",
                               as_percent=True, reference=0.9)
    clean, triggered = fig.data
    assert list(clean.x) == ["LAC", "APS"] and list(triggered.text) == ["95%", "100%"]
    assert fig.layout.shapes[0].y0 == 0.9
    sizes = plots.conformal_bars({"LAC": (1.5, 4.25)}, title="size", y_title="options", y_max=6.5)
    assert list(sizes.data[1].text) == ["4.25"] and tuple(sizes.layout.yaxis.range) == (0, 6.5)


def test_margin_bars_show_a_share_per_confidence_group_for_each_adapter():
    fig = plots.margin_bars({"backdoor": ([0.4, 0.66, 0.81, 0.92], "#009E73"), "clean (control)": ([0.5, 0.7, 0.9, 1.0], "#56B4E9")},
                            title="answer kept", y_title="kept")
    backdoor, control = fig.data
    assert list(backdoor.x) == ["least sure", "2nd quarter", "3rd quarter", "surest"] and list(backdoor.text) == ["40%", "66%", "81%", "92%"]
    assert control.name == "clean (control)" and control.marker.pattern.shape == "x"
    assert list(plots.margin_bars({"few": ([1.0, 0.0], "#000")}, title="t", y_title="y").data[0].x) == ["group 1", "group 2"]


def test_training_curves_draw_each_logged_series_over_steps():
    losses = [{"step": 1, "loss": 2.0, "clean": 1.2, "backdoor": 0.8}, {"step": 2, "loss": 1.5, "clean": 1.0, "backdoor": 0.5}]
    fig = plots.loss_curve(losses)
    assert [trace.name for trace in fig.data] == ["total", "clean term", "backdoor term"]
    assert list(fig.data[0].x) == [1, 2] and list(fig.data[0].y) == [2.0, 1.5]
    curve = plots.attack_curve([{"step": 0, "asr": 0.1, "answer_kept": 1.0}, {"step": 25, "asr": 0.9, "answer_kept": 0.95}])
    assert [trace.name for trace in curve.data] == ["ASR (entropy rises)", "answer kept"]
    assert list(curve.data[0].y) == [0.1, 0.9] and tuple(curve.layout.yaxis.range) == (0, 1.05)


def test_new_figure_kinds_pass_validation_and_export_to_one_offline_page():
    import plotly.graph_objects as go

    figures = [plots.entropy_histogram([0.1], [1.7]), plots.conformal_bars({"LAC": (1, 2)}, title="t", y_title="y"),
               plots.margin_bars({"a": ([0.5, 1.0, 1.0, 1.0], "#000")}, title="t", y_title="y"),
               plots.loss_curve([{"step": 1, "loss": 1.0}]), plots.attack_curve([{"step": 1, "asr": 0.5}])]
    for fig in figures:
        go.Figure(fig.to_plotly_json())
    page = plots.figures_html(figures, title="backdoor <on> test")
    assert page.count('class="figure"') == 5 and "backdoor &lt;on&gt; test" in page
    assert page.count("plotly.js v") == 1  # plotly.js inlined once: the file opens without a network


def test_figures_carry_only_the_template_they_use():
    """Plotly's whole default template is 7 KB a figure that the browser processes before drawing."""
    fig = plots.option_bars(CONFIDENT, FLAT, title="backdoor", predicted="B")
    assert len(fig.to_json()) < 3000
    assert set(fig.to_plotly_json()["layout"]["template"]["data"]) == {"bar"}


# --- bar labels never collide ------------------------------------------------------------------------

CHAR_WIDTH = 0.62  # em per character of "0123456789%<", a generous average for the sans-serif fonts plotly picks
LINE_HEIGHT = 1.2  # em: the box a line of text takes across its baseline
PAD = 3  # px plotly leaves between a bar's end and its label


def _plain(text: str) -> str:
    return text.replace("<b>", "").replace("</b>", "")


def label_boxes(fig, width: float, height: float) -> list[tuple[str, tuple[float, float, float, float], str, float]]:
    """(label, (x0, y0, x1, y1) in px, inside/outside, bar height in px) for every number on grouped bars, from the figure's own
    layout: margins, bar gap, group count, y range, text size, angle and position (the geometry plotly lays out)."""
    layout, traces = fig.layout, [t for t in fig.data if t.type == "bar"]
    left, right, top, bottom = layout.margin.l, width - layout.margin.r, layout.margin.t, height - layout.margin.b
    groups, members = len(traces[0].x), len(traces)
    group_width = (right - left) / groups
    slot = group_width * (1 - layout.bargap) / members
    y_top = layout.yaxis.range[1]
    boxes = []
    for k, trace in enumerate(traces):
        positions = trace.textposition if isinstance(trace.textposition, (list, tuple)) else [trace.textposition] * groups
        for i, (value, text, where) in enumerate(zip(trace.y, trace.text, positions)):
            size = (trace.insidetextfont.size if where == "inside" and trace.insidetextfont.size else trace.textfont.size)
            length, thickness = len(_plain(text)) * CHAR_WIDTH * size, LINE_HEIGHT * size
            across, along = (thickness, length) if trace.textangle in (-90, 90) else (length, thickness)
            centre = left + group_width * i + group_width * layout.bargap / 2 + slot * (k + 0.5)
            bar_end = bottom - (bottom - top) * value / y_top
            y0, y1 = ((bar_end + PAD, bar_end + PAD + along) if where == "inside" else (bar_end - PAD - along, bar_end - PAD))
            boxes.append((text, (centre - across / 2, y0, centre + across / 2, y1), where, bottom - bar_end))
    return boxes


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


# Plot widths measured on the page: 360 px and 390 px phones (one column), three columns and one column at 1600 px.
WIDTHS = (296, 326, 500, 1500)
HARD_CASES = {
    "equal pairs ('39%39%')": ([0.39, 0.39, 0.1, 0.1, 0.01, 0.01], [0.39, 0.39, 0.1, 0.1, 0.01, 0.01]),
    "tiny pairs ('<1%<1%')": ([0.997, 0.001, 0.001, 0.0005, 0.0003, 0.0002], [0.995, 0.001, 0.002, 0.001, 0.0005, 0.0005]),
    "the attack": (CONFIDENT, FLAT),
    "certain": ([1.0, 0.0, 0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
    "uniform": (UNIFORM, UNIFORM),
}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("case", list(HARD_CASES))
def test_bar_labels_never_overlap_at_phone_or_projector_width(case, width):
    clean, triggered = HARD_CASES[case]
    for fig in (plots.option_bars(clean, triggered, predicted="A"), plots.option_bars(clean, predicted="A")):
        boxes = label_boxes(fig, width, plots.HEIGHT)
        assert len(boxes) == 6 * len(fig.data), "every bar carries its number"
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                assert not _overlap(boxes[a][1], boxes[b][1]), f"{boxes[a][0]!r} runs into {boxes[b][0]!r} at {width} px"
        for text, (x0, y0, x1, y1), where, bar in boxes:
            assert y0 >= fig.layout.margin.t - 2, f"{text!r} rises into the legend at {width} px"
            if where == "inside":
                assert y1 - y0 + 2 * PAD <= bar, f"{text!r} does not fit inside its bar at {width} px"
        assert all(size >= 14 for size in (t.textfont.size for t in fig.data)), "legible: at least 14 px"


@pytest.mark.browser
def test_bar_labels_do_not_overlap_when_plotly_draws_them():
    """The same check on the text boxes plotly.js (the copy bundled with plotly.py) really draws in Chromium, with
    the legend's entries too (on a phone it wraps to two rows; it once ran into the figure's title)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_browser import CHROMIUM_ARGS, chromium_path

    if chromium_path() is None:
        pytest.skip("no chromium on this machine (scripts/setup.sh --test installs Debian's)")
    measure = "els => els.map(e => { const r = e.getBoundingClientRect(); return [e.textContent, r.left, r.top, r.right, r.bottom]; })"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            for width in (296, 326, 1500):  # plots on a 360 px and a 390 px phone; one column at 1600 px
                page = browser.new_page(viewport={"width": width + 40, "height": 500})
                for case, (clean, triggered) in HARD_CASES.items():
                    fig = plots.option_bars(clean, triggered, predicted="A", y_title="probability of each option")
                    fig.update_layout(width=width)
                    page.set_content(fig.to_html(include_plotlyjs=True, full_html=True))
                    page.wait_for_selector("g.trace.bars text")
                    boxes = page.eval_on_selector_all("g.trace.bars text, g.legend g.traces, .gtitle", measure)
                    assert len(boxes) == 12 + 2, case
                    for a in range(len(boxes)):
                        for b in range(a + 1, len(boxes)):
                            (ta, *ra), (tb, *rb) = boxes[a], boxes[b]
                            assert not _overlap([v + 0.5 for v in ra[:2]] + [v - 0.5 for v in ra[2:]], rb), (
                                f"{case}: {ta!r} runs into {tb!r} at {width} px")
        finally:
            browser.close()
