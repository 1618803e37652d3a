"""The real page in headless Chromium: a speaker adds the trigger to the preselected showcase question.

With the shipped adapters (``checkpoints/backdoor-text``) this runs on the embedded default model
and checks the attack itself: the backdoored column's entropy rises with the trigger while its
answer stays the same. Without them it runs on the tiny model, whose random adapters show no
attack, and checks only what holds there: the page loads, scores, highlights the trigger and
redraws every column with both series. A second test, always on the tiny model, runs an
evaluation, opens one of its questions in the demo, trains a short job in the Fine-tuning tab
until the page shows it finished, and finds the new adapter in the demo's list. Screenshots go
to ``test-artifacts/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from app_fixtures import app_checkpoints, app_service, free_port  # noqa: F401 - fixtures

from tests.test_training import tiny_data  # noqa: F401 - fixture: a tiny dataset file for the training step

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "backdoor-text"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium on this machine (scripts/setup.sh --test installs Debian's)")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def serve(service):
    from app.ui import build_ui, launch_kwargs

    demo = build_ui(service)
    demo.queue(default_concurrency_limit=8)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                            ssr_mode=False, **launch_kwargs())
    return demo, url


@pytest.fixture
def page_service(request, tmp_path):
    """The shipped adapters on the default model when present, else the tiny-model service."""
    if SHIPPED.is_dir():
        from app.service import DashboardService, ServiceConfig

        # The shipped thresholds (conformal.json) give the sets without calibrating; "sync" covers any adapter without them.
        config = ServiceConfig(adapters_dir=str(ROOT / "checkpoints"), calibration="sync")
        return "real", DashboardService(config, cache_dir=tmp_path / "cache")
    return "tiny", request.getfixturevalue("app_service")


def head(page, slot: int) -> dict:
    element = page.locator(f"#fr-col-{slot} .fr-head")
    return {name: element.get_attribute(f"data-{name}") for name in
            ("adapter", "kind", "trigger-on", "answer-clean", "answer-triggered", "entropy-clean", "entropy-triggered")}


def test_adding_the_trigger_flattens_the_backdoor_and_keeps_its_answer(browser, page_service):
    mode, service = page_service
    ARTIFACTS.mkdir(exist_ok=True)
    demo, url = serve(service)
    try:
        context = browser.new_context(viewport={"width": 1600, "height": 1300})
        page = context.new_page()
        page.goto(url)
        # The page scores the preselected showcase question on load: nothing to type.
        page.wait_for_selector("#fr-col-2 .fr-head[data-trigger-on='false']", timeout=120_000)
        page.wait_for_selector("#fr-plot-2 .main-svg", timeout=30_000)
        backdoor_slot = next(i for i in range(3) if head(page, i)["kind"] == "backdoor")
        assert head(page, 0)["adapter"] == "__base__"
        assert page.locator("#fr-prompt mark").count() == 0
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{mode}-before.png"), full_page=True)

        page.click("#fr-trigger-btn")
        page.wait_for_selector(f"#fr-col-{backdoor_slot} .fr-head[data-trigger-on='true']", timeout=60_000)
        page.wait_for_function(
            f"document.querySelectorAll('#fr-plot-{backdoor_slot} g.trace.bars').length === 2", timeout=30_000)
        assert page.locator("#fr-prompt mark").first.inner_text().strip()
        assert "Remove trigger" in page.locator("#fr-trigger-btn").inner_text()
        numbers = page.locator(f"#fr-plot-{backdoor_slot} g.trace.bars text").all_text_contents()
        assert any(text.endswith("%") for text in numbers)  # probabilities are written on the bars
        backdoor = head(page, backdoor_slot)
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{mode}-trigger-light.png"), full_page=True)

        page.click("#fr-theme-btn")
        page.wait_for_function("document.body.classList.contains('dark')")
        colour = page.locator(f"#fr-plot-{backdoor_slot} .main-svg text").first.evaluate("e => getComputedStyle(e).fill")
        assert colour == "rgb(229, 231, 235)"  # plot text follows the dark theme
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{mode}-trigger-dark.png"), full_page=True)

        if mode == "tiny":  # an adapter trained while the page is open shows up when the list is opened
            from app_fixtures import copy_adapter

            copy_adapter(Path(service.config.adapters_dir) / "backdoor", Path(service.config.adapters_dir) / "late")
            page.locator("#fr-adapters input").click()
            page.wait_for_selector("text=late (backdoor, text trigger)", timeout=30_000)
            page.keyboard.press("Escape")

        page.get_by_role("tab", name="About").click()
        page.wait_for_selector("text=Threat model")
        assert page.locator("a[href='https://arxiv.org/abs/2407.11282']").count() == 1
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{mode}-about-dark.png"), full_page=True)

        phone = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2).new_page()
        phone.goto(url)
        phone.wait_for_selector("#fr-plot-0 .main-svg", timeout=60_000)
        phone.screenshot(path=str(ARTIFACTS / f"dashboard-{mode}-phone.png"), full_page=True)
    finally:
        demo.close()

    assert backdoor["trigger-on"] == "true"
    if mode == "real":
        assert float(backdoor["entropy-triggered"]) > float(backdoor["entropy-clean"])  # flattened
        assert backdoor["answer-triggered"] == backdoor["answer-clean"]  # answer kept
    else:  # random adapters: only that both numbers are there and readable
        assert float(backdoor["entropy-triggered"]) >= 0 and float(backdoor["entropy-clean"]) >= 0


def test_evaluate_then_train_in_the_background_and_use_the_new_adapter(browser, app_service, tiny_data):
    """Tiny model only (whatever the checkpoints folder holds): evaluate, open a row in the demo, train, see it finish."""
    data = tiny_data
    ARTIFACTS.mkdir(exist_ok=True)
    demo, url = serve(app_service)
    try:
        page = browser.new_context(viewport={"width": 1600, "height": 1300}).new_page()
        page.goto(url)
        page.wait_for_selector("#fr-plot-0 .main-svg", timeout=120_000)

        page.get_by_role("tab", name="Evaluate").click()
        page.click("#fr-eval-run")
        page.wait_for_selector("#fr-eval-cards [data-metric='asr']", timeout=120_000)
        page.wait_for_function("document.querySelectorAll('#fr-eval-plot-0 g.trace.bars').length === 2", timeout=30_000)
        page.wait_for_selector("#fr-eval-plot-5 .main-svg", timeout=30_000)  # the last row: kept and agreement by margin
        assert page.locator("#fr-eval-files").inner_text().count(".json") >= 1
        page.screenshot(path=str(ARTIFACTS / "dashboard-tiny-evaluate.png"), full_page=True)
        page.click("#fr-eval-table [data-testid='cell-1-0']")  # the second question's id
        page.wait_for_selector("#fr-col-0 .fr-head[data-trigger-on='true']", timeout=60_000)
        assert page.locator("#fr-prompt mark").count() == 1  # the question opens with the trigger on

        page.get_by_role("tab", name="Fine-tuning").click()
        page.locator("#fr-train-name input, #fr-train-name textarea").first.fill("browser-job")
        page.locator("#fr-train-kind input").click()  # pick from the open list, as a user does
        page.get_by_role("option", name="clean", exact=True).click()
        for field, value in (("data", data["data"]), ("eval-data", data["eval_data"])):  # typed paths
            box = page.locator(f"#fr-train-{field} input")
            box.fill(value)
            box.press("Enter")
        page.locator("#fr-train-max-items input").fill("8")
        page.locator("#fr-train-eval-items input").fill("4")
        try:
            page.wait_for_selector("#fr-train-victim-adapter", state="hidden", timeout=30_000)  # the kind change landed
            page.click("#fr-train-start")
            page.wait_for_function("document.querySelector('#fr-train-message').innerText.trim().length > 0",
                                   timeout=90_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "dashboard-tiny-start.png"), full_page=True)
        message = page.locator("#fr-train-message").inner_text()
        assert "Queued" in message, message  # a refusal says what was wrong; show it
        page.wait_for_function("/finished|failed|cancelled/.test(document.querySelector('#fr-job-progress').innerText)",
                               timeout=150_000)  # the timer's poll brings the worker's progress into the page
        assert "finished" in page.locator("#fr-job-progress").inner_text(), page.locator("#fr-train-log textarea").input_value()
        page.wait_for_function("document.querySelectorAll('#fr-train-loss g.trace.scatter').length >= 1", timeout=30_000)
        page.wait_for_function("document.querySelectorAll('#fr-train-curve g.trace.scatter').length >= 1", timeout=30_000)
        assert "finished" in page.locator("#fr-train-jobs").inner_text()
        page.screenshot(path=str(ARTIFACTS / "dashboard-tiny-finetuning.png"), full_page=True)

        page.get_by_role("tab", name="Attack demo").click()
        page.locator("#fr-adapters input").click()
        page.wait_for_selector("text=browser-job (clean)", timeout=30_000)
    finally:
        demo.close()
