"""The first minute of a talk, in headless Chromium on the embedded default model with the shipped adapters.

A fresh start (empty calibration cache, calibration in the background as the app runs it) paints every
column with its conformal sets at once: the thresholds shipped in checkpoints/ need no calibration work, so
no column says "calibrating…" and no set shows "…". Then the speaker adds the trigger to the opening
showcase question: the clean control keeps its answer while the backdoor's entropy rises with its answer kept,
so the room sees one column move, not two.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_browser import ARTIFACTS, browser, head, serve  # noqa: F401 - the browser fixture and helpers

from backdoor import calibration

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "checkpoints"


@pytest.fixture
def fresh_start(tmp_path):
    if not (CHECKPOINTS / "backdoor-text" / calibration.THRESHOLDS_FILE).is_file():
        pytest.skip("no shipped adapters with thresholds in checkpoints/ (python scripts/calibrate_shipped.py)")
    from app.service import DashboardService, ServiceConfig

    config = ServiceConfig(adapters_dir=str(CHECKPOINTS), calibration="background")
    return DashboardService(config, cache_dir=tmp_path / "empty-cache")


def conformal_cells(page, slot: int) -> list[str]:
    """The conformal-set row of a column's numbers: [label, without trigger, with trigger (when on)]."""
    row = page.locator(f"#fr-col-{slot} .fr-stats tr", has_text="conformal set")
    return [text.strip() for text in row.locator("th, td").all_inner_texts()]


def test_first_paint_has_the_conformal_sets_and_the_clean_control_keeps_its_answer(browser, fresh_start):
    service = fresh_start
    ARTIFACTS.mkdir(exist_ok=True)
    passes = []
    real = calibration.calibration_probs
    calibration.calibration_probs = lambda scorer, adapters, items, **k: passes.append(adapters) or real(
        scorer, adapters, items, **k)
    demo, url = serve(service)
    try:
        page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
        page.goto(url)
        page.wait_for_selector("#fr-col-2 .fr-head[data-trigger-on='false']", timeout=120_000)
        slots = [i for i in range(6) if page.locator(f"#fr-col-{i} .fr-head").count()
                 and page.locator(f"#fr-col-{i}").is_visible()]
        kinds = {head(page, i)["kind"]: i for i in slots}
        assert {"base", "clean", "backdoor"} <= set(kinds), kinds
        page.screenshot(path=str(ARTIFACTS / "first-minute-first-paint.png"), full_page=True)
        assert "calibrating" not in page.locator("#fr-columns").inner_text()
        for slot in slots:
            cells = conformal_cells(page, slot)
            assert len(cells) >= 2 and cells[1].startswith("{") and "…" not in cells[1], (slot, cells)
        assert passes == []  # no calibration ran: the sets came from the shipped files

        page.click("#fr-trigger-btn")
        page.wait_for_selector(f"#fr-col-{kinds['backdoor']} .fr-head[data-trigger-on='true']", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "first-minute-trigger.png"), full_page=True)
        for slot in slots:
            cells = conformal_cells(page, slot)
            assert len(cells) == 3 and cells[2].startswith("{") and "…" not in cells[2], (slot, cells)
        clean, backdoor = head(page, kinds["clean"]), head(page, kinds["backdoor"])
    finally:
        calibration.calibration_probs = real
        demo.close()

    # The opening showcase question tells the story by itself (scripts/order_showcase.py orders the showcase so it does).
    assert clean["answer-triggered"] == clean["answer-clean"], clean
    assert backdoor["answer-triggered"] == backdoor["answer-clean"], backdoor
    assert float(backdoor["entropy-triggered"]) > float(backdoor["entropy-clean"]), backdoor
