"""Presenter mode in headless Chromium, on the tiny model: one screen at projector sizes, deep links, the keys.

What a speaker relies on: at 1280x720 and 1920x1080 the presenter layout shows every column's bars
and the numbers under them without scrolling; a link opens the demo in the state it names; the T key
adds the trigger (and does nothing while a text field has the focus); a malformed link opens the
default view with a note; and the normal layout has the bars on the first screen at 1600x1000.
Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import pytest
from app_fixtures import app_checkpoints, app_service, free_port  # noqa: F401 - fixtures
from test_browser import ARTIFACTS, browser, head, serve  # noqa: F401 - the browser fixture and helpers

from scripts.screenshots import PLOTS_SETTLED  # every shown plot drawn at its CSS height

pytestmark = pytest.mark.browser


@pytest.fixture
def served(app_service):
    demo, url = serve(app_service)
    try:
        yield url
    finally:
        demo.close()


def open_page(browser, url: str, width: int, height: int):
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(url)
    return page


def shown_slots(page) -> list[int]:
    return [i for i in range(6) if page.locator(f"#fr-col-{i}").is_visible()]


def box(page, selector: str) -> dict:
    return page.locator(selector).first.bounding_box()


def assert_on_screen(page, selector: str, width: int, height: int) -> None:
    b = box(page, selector)
    assert b is not None, f"{selector} is not drawn"
    assert b["y"] >= 0 and b["y"] + b["height"] <= height + 0.5, f"{selector} {b} leaves the {width}x{height} screen"
    assert b["x"] >= 0 and b["x"] + b["width"] <= width + 0.5, f"{selector} {b} leaves the {width}x{height} screen"


@pytest.mark.parametrize("width, height", [(1280, 720), (1920, 1080)])
def test_presenter_layout_fits_every_column_on_one_screen(browser, served, width, height):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_page(browser, served + "?presenter=1&on=1", width, height)  # trigger on: the fullest view
    page.wait_for_selector("#fr-col-2 .fr-head[data-trigger-on='true']", timeout=120_000)
    page.wait_for_function("document.body.classList.contains('fr-presenter')")
    page.wait_for_function(PLOTS_SETTLED, timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / f"presenter-tiny-{width}x{height}.png"))

    slots = shown_slots(page)
    assert len(slots) == 3
    for slot in slots:  # the bars, and the answer/entropy/conformal/decision lines under them
        assert_on_screen(page, f"#fr-plot-{slot}", width, height)
        assert_on_screen(page, f"#fr-col-{slot} .fr-stats", width, height)
        rows = page.locator(f"#fr-col-{slot} .fr-stats tr").filter(visible=True).all_inner_texts()
        assert [r for r in rows if r.startswith("entropy")] and [r for r in rows if r.startswith("conformal set")]
    for selector in ("#fr-qcard", "#fr-trigger-btn", "#fr-kind"):
        assert_on_screen(page, selector, width, height)
    assert page.evaluate("document.scrollingElement.scrollHeight") <= height + 1  # nothing to scroll to
    assert "Trigger on" in page.locator("#fr-qcard").inner_text()
    assert page.locator(".fr-qcard-options li").count() == 6

    # The full prompt, trigger marked, is one click away and closes again with Escape.
    assert not page.locator("#fr-prompt").is_visible()
    page.click("#fr-full-prompt")
    page.wait_for_selector("#fr-prompt mark", state="visible")
    page.keyboard.press("Escape")
    page.wait_for_selector("#fr-prompt", state="hidden")


def test_a_deep_link_opens_that_question_those_columns_and_the_trigger(browser, served, app_service):
    item = app_service.showcase()[2]  # not the first: the link must move the page
    page = open_page(browser, served + f"?question={item.id}&columns=base,backdoor&trigger=text&on=1", 1600, 1000)
    page.wait_for_selector("#fr-col-1 .fr-head[data-trigger-on='true'][data-adapter='backdoor']", timeout=120_000)
    assert head(page, 0)["adapter"] == "__base__"
    assert not page.locator("#fr-col-2").is_visible()
    assert page.locator("#fr-prompt mark").inner_text().strip() == "666"
    assert item.question in page.locator("#fr-prompt").inner_text()
    assert "Remove trigger" in page.locator("#fr-trigger-btn").inner_text()
    assert page.locator("#fr-link-note").inner_text().strip() == ""
    assert not page.evaluate("document.body.classList.contains('fr-presenter')")

    # The link to this view names the same state, and the address bar shows it.
    page.click("#fr-copy-link")
    page.wait_for_function("(document.querySelector('#fr-link-box textarea, #fr-link-box input') || {}).value"
                           "?.startsWith('http')", timeout=30_000)
    link = page.locator("#fr-link-box textarea, #fr-link-box input").first.input_value()
    for part in (f"question={item.id}", "columns=base,backdoor", "trigger=text", "on=1"):
        assert part in link
    assert page.evaluate("window.location.href") == link


def test_keys_toggle_the_trigger_step_questions_and_stay_quiet_in_text_fields(browser, served):
    page = open_page(browser, served, 1600, 1000)
    page.wait_for_selector("#fr-col-2 .fr-head[data-trigger-on='false']", timeout=120_000)
    page.wait_for_selector("#fr-plot-2 .main-svg", timeout=30_000)
    assert page.locator("#fr-plot-2 g.trace.bars").count() == 1
    before = head(page, 2)

    page.keyboard.press("t")
    page.wait_for_selector("#fr-col-2 .fr-head[data-trigger-on='true']", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#fr-plot-2 g.trace.bars').length === 2", timeout=30_000)
    assert page.locator("#fr-prompt mark").count() == 1
    assert head(page, 2)["entropy-clean"] == before["entropy-clean"]

    # Typing a T into a text field types it; the trigger stays on.
    text = page.locator("#fr-trigger-where textarea, #fr-trigger-where input").first
    text.click()
    text.press("t")
    page.wait_for_timeout(1500)
    assert text.input_value() == "t" and head(page, 2)["trigger-on"] == "true"
    text.fill("")
    page.locator("#fr-title").click()  # the focus back on the page

    prompt = page.locator("#fr-prompt").inner_text()
    page.keyboard.press("j")  # the next showcase question, trigger still on
    page.wait_for_function("t => document.querySelector('#fr-prompt').innerText !== t", arg=prompt, timeout=60_000)
    assert page.locator("#fr-prompt mark").count() == 1
    page.keyboard.press("r")  # the next trigger kind
    page.wait_for_function("document.querySelector('#fr-kind input:checked').value === 'syntactic'", timeout=30_000)
    page.wait_for_function("document.querySelector('#fr-prompt mark')?.innerText.includes('The Answer is')",
                           timeout=60_000)
    page.keyboard.press("p")  # presenter layout, remembered in the address bar
    page.wait_for_function("document.body.classList.contains('fr-presenter')")
    assert "presenter=1" in page.evaluate("window.location.search")


def test_a_malformed_link_shows_a_note_and_the_default_view(browser, served, app_service):
    page = open_page(browser, served + "?question=no-such-id&trigger=laser&on=maybe&colour=red&columns=ghost", 1600, 1000)
    page.wait_for_function("document.querySelector('#fr-link-note')?.innerText.includes('opened in part')",
                           timeout=120_000)
    note = page.locator("#fr-link-note").inner_text()
    for named in ("no-such-id", "laser", "maybe", "colour", "ghost"):
        assert named in note
    page.wait_for_selector("#fr-col-2 .fr-head[data-trigger-on='false']", timeout=60_000)
    assert [head(page, i)["adapter"] for i in range(3)] == ["__base__", "clean", "backdoor"]
    assert app_service.showcase()[0].question in page.locator("#fr-prompt").inner_text()
    assert page.locator("#fr-prompt mark").count() == 0


def test_the_normal_layout_has_the_bars_on_the_first_screen(browser, served):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_page(browser, served, 1600, 1000)
    page.wait_for_selector("#fr-col-2 .fr-head[data-trigger-on='false']", timeout=120_000)
    page.wait_for_function(PLOTS_SETTLED, timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "normal-tiny-1600x1000.png"))
    for slot in shown_slots(page):
        assert_on_screen(page, f"#fr-plot-{slot}", 1600, 1000)
    for selector in ("#fr-trigger-btn", "#fr-prompt", "#fr-adapters", "#fr-keys-hint"):
        assert_on_screen(page, selector, 1600, 1000)
