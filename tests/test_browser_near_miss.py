"""The real page in headless Chromium, on the tiny model: a speaker puts a near miss in the trigger's place and the
prompt and every column's bars follow."""

from __future__ import annotations

import pytest
from app_fixtures import app_checkpoints, app_service  # noqa: F401 - fixtures
from test_browser import ARTIFACTS, browser, head, serve  # noqa: F401 - fixture

from backdoor.triggers import DEFAULT_TEXT_TRIGGER, TriggerSpec

pytestmark = pytest.mark.browser

GENERATOR = "other_word"


def test_a_near_miss_replaces_the_trigger_in_the_prompt_and_the_bars(browser, app_service):
    trigger = TriggerSpec("text")
    assert app_service.default_trigger(app_service.catalog(app_service.config.bases[0])) == trigger
    expected = app_service.near_miss(trigger, GENERATOR, app_service.showcase()[0]).spec.text
    label = next(g.description for g in app_service.near_misses("text") if g.name == GENERATOR)
    ARTIFACTS.mkdir(exist_ok=True)
    demo, url = serve(app_service)
    try:
        page = browser.new_context(viewport={"width": 1600, "height": 1300}).new_page()
        page.goto(url)
        page.wait_for_selector("#fr-col-2 .fr-head[data-trigger-on='false']", timeout=120_000)
        page.click("#fr-trigger-btn")
        page.wait_for_selector("#fr-col-2 .fr-head[data-trigger-on='true']", timeout=60_000)
        page.wait_for_function("document.querySelectorAll('#fr-plot-2 g.trace.bars').length === 2", timeout=30_000)
        assert page.locator("#fr-prompt mark").inner_text().strip() == DEFAULT_TEXT_TRIGGER
        before = head(page, 2)

        page.locator("#fr-near-miss input").click()  # pick from the open list, as a speaker does
        page.get_by_role("option", name=label, exact=True).click()
        page.wait_for_selector(f"#fr-prompt pre[data-near-miss='{GENERATOR}']", timeout=60_000)
        assert page.locator("#fr-prompt mark.fr-near-miss").inner_text().strip() == expected != DEFAULT_TEXT_TRIGGER
        page.wait_for_function(  # every column redrawn, its second series named for the near miss
            "[0, 1, 2].every(i => [...document.querySelectorAll(`#fr-plot-${i} .legendtext`)]"
            ".some(e => e.textContent === 'with near miss'))", timeout=30_000)
        after = head(page, 2)
        assert after["trigger-on"] == "true" and after["entropy-clean"] == before["entropy-clean"]
        assert after["entropy-triggered"] != before["entropy-triggered"]  # scored on the near miss, not the trigger
        assert "near miss" in page.locator("#fr-status").inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-tiny-near-miss.png"), full_page=True)
    finally:
        demo.close()
