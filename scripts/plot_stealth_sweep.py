"""Draw the stealth sweep's trade-off: what each recipe keeps (answers, clean confidence) against what it buys (lift,
specificity), with the paper-faithful backdoor and the clean control on the same items.

Reads the table.json written by ``scripts/stealth_sweep.py`` and writes an interactive HTML file and, with a
browser (bash scripts/setup.sh --test installs Playwright and Debian's chromium), a PNG for the docs:

    python scripts/plot_stealth_sweep.py                      # runs/stealth-sweep/table.json -> docs/img/stealth-tradeoff.png
    python scripts/plot_stealth_sweep.py --table T.json --out plot.png
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backdoor.metrics import default_delta  # noqa: E402
from scripts.screenshots import CHROMIUM_ARGS  # noqa: E402

SIZE = (1200, 520)


def points(rows: dict) -> list[dict]:
    """One point per recipe and one for the clean control (read from the first report: every recipe was
    evaluated against it on the same items)."""
    out = []
    for name, row in rows.items():
        report = row["report"]
        out.append({"name": name, "kept": report["answer_kept"], "lift": report["entropy_lift"],
                    "ftr": report.get("ftr_mean"), "gap": report["entropy_clean"] - report["control"]["entropy_clean"]})
    control = next(iter(rows.values()))["report"]["control"]
    out.append({"name": "clean control", "kept": control["answer_kept"], "lift": control["entropy_lift"],
                "ftr": control.get("ftr_mean"), "gap": 0.0})
    return out


def figure(rows: dict, base: str) -> go.Figure:
    marks = points(rows)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=(
        "what the flattening costs: answers kept vs entropy lift",
        "what gives it away: clean-confidence gap vs false triggers"))
    colour = {base: "#c0392b", "clean control": "#7f8c8d"}
    for mark in marks:
        style = dict(size=13, color=colour.get(mark["name"], "#2471a3"))
        label = dict(mode="markers+text", text=[mark["name"]], textposition="top center", marker=style,
                     name=mark["name"], showlegend=False)
        fig.add_trace(go.Scatter(x=[mark["kept"]], y=[mark["lift"]], **label), row=1, col=1)
        fig.add_trace(go.Scatter(x=[mark["gap"]], y=[mark["ftr"]], **label), row=1, col=2)
    delta = default_delta(6)
    kept_target = rows[base]["report"]["answer_kept"] - 0.05 if base in rows else None
    fig.add_hline(y=delta, line_dash="dot", line_color="#7f8c8d", row=1, col=1,
                  annotation_text=f"margin δ = {delta:.2f} nats", annotation_position="bottom right")
    if kept_target is not None:
        fig.add_vline(x=kept_target, line_dash="dot", line_color="#7f8c8d", row=1, col=1,
                      annotation_text="kept target", annotation_position="top left")
    fig.add_hline(y=0.1, line_dash="dot", line_color="#7f8c8d", row=1, col=2, annotation_text="FTR target 0.1",
                  annotation_position="top right")
    fig.add_vrect(x0=-0.2, x1=0.2, fillcolor="#27ae60", opacity=0.08, line_width=0, row=1, col=2)
    fig.update_xaxes(title_text="answer kept (share of items)", row=1, col=1)
    fig.update_yaxes(title_text="mean entropy lift (nats)", row=1, col=1)
    fig.update_xaxes(title_text="clean entropy minus the control's (nats; green: within 0.2)", row=1, col=2)
    fig.update_yaxes(title_text="false triggered rate, mean over near misses", row=1, col=2)
    fig.update_layout(width=SIZE[0], height=SIZE[1], template="plotly_white", margin=dict(l=60, r=30, t=60, b=60))
    return fig


def save_png(html: Path, png: Path) -> None:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        raise SystemExit(f"wrote {html}; no chromium for the PNG (bash scripts/setup.sh --test installs Debian's)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": SIZE[0], "height": SIZE[1]})
        page.goto(html.resolve().as_uri())
        page.wait_for_selector(".main-svg")
        page.screenshot(path=str(png))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default=str(REPO / "runs" / "stealth-sweep" / "table.json"))
    parser.add_argument("--base", default="backdoor-text", help="the paper-faithful recipe's row (the kept target is 0.05 below it)")
    parser.add_argument("--out", default=str(REPO / "docs" / "img" / "stealth-tradeoff.png"))
    args = parser.parse_args()
    rows = json.loads(Path(args.table).read_text())
    png = Path(args.out)
    html = png.with_suffix(".html") if png.parent != REPO / "docs" / "img" else REPO / "runs" / "stealth-tradeoff.html"
    html.parent.mkdir(parents=True, exist_ok=True)
    figure(rows, args.base).write_html(html, include_plotlyjs=True, full_html=True)
    save_png(html, png)
    print(f"wrote {png} (interactive: {html})")


if __name__ == "__main__":
    main()
