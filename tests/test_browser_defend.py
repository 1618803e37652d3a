"""The real page in headless Chromium, on the tiny model: a speaker opens the Defend tab, picks a defense and sees
its shipped numbers as a table and its ROC curve, and the clear word for a pair without a report."""

from __future__ import annotations

import pytest
from app_fixtures import app_checkpoints, app_service  # noqa: F401 - fixtures
from test_app_defend import DETECTOR_REPORT, ship, stand_ins  # noqa: F401 - fixture: stand-in defenses
from test_browser import ARTIFACTS, browser  # noqa: F401 - fixture
from test_browser_presenter import open_page, served  # noqa: F401 - fixture: the page on the tiny model

pytestmark = pytest.mark.browser


@pytest.fixture
def shipped(app_checkpoints, stand_ins):
    """The stand-in detector's report shipped beside the tiny backdoor, before the page is built."""
    return ship(app_checkpoints, "backdoor", "test-detector", DETECTOR_REPORT)


def test_the_defend_tab_shows_a_shipped_report_as_a_table_and_a_roc_curve(browser, shipped, served):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_page(browser, served, 1600, 1000)
    page.wait_for_selector("#fr-col-2 .fr-head", timeout=120_000)
    page.get_by_role("tab", name="Defend").click()
    page.wait_for_function("document.querySelector('#fr-defend-status')?.innerText.includes('No cached report')",
                           timeout=60_000)  # the registry's first defense has no report for this backdoor

    page.locator("#fr-defend-defense input").click()
    page.get_by_role("option", name="Length detector (test)", exact=True).click()
    page.wait_for_function("document.querySelector('#fr-defend-status')?.innerText.includes('measured on')",
                           timeout=60_000)
    table = page.locator("#fr-defend-table")
    assert "AUROC (triggered vs clean copies)" in table.inner_text() and "0.875" in table.inner_text()
    page.wait_for_function("[...document.querySelectorAll('#fr-defend-plot .legendtext')]"
                           ".some(e => e.textContent.startsWith('backdoor (AUROC 0.88)'))", timeout=30_000)
    assert "Length detector (test)" in page.locator("#fr-defend-about").inner_text()
    page.screenshot(path=str(ARTIFACTS / "defend-tiny.png"), full_page=True)
