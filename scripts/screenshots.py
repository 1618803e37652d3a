"""Regenerate the README's screenshots: the attack demo's presenter layout at 1280x720 and its normal layout at
1600x1000, both with the trigger on, and the Defend tab at 1600x1000, on the embedded default model with the shipped
adapters in checkpoints/.

    python scripts/screenshots.py   # -> docs/img/presenter-1280x720.png, attack-demo-1600x1000.png, defend-tab-1600x1000.png
    python scripts/screenshots.py --out /tmp/shots --calibration-items 48

Needs the test tools (bash scripts/setup.sh --test: Playwright and Debian's chromium). The app runs in this
process on a free loopback port; each picture is a link (app/deeplink.py), so a picture is the view a
speaker opens with the same link.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

logger = logging.getLogger("screenshots")

# (file name, viewport, link, what shows it is drawn): the trigger on, so the pictures show the attack, not just the
# page; the Defend tab on the headline backdoor with its first defense's shipped report (table and ROC curve).
ATTACK_DRAWN = "#fr-columns .fr-head[data-trigger-on='true']"
DEFEND_DRAWN = "#fr-defend-plot .legendtext"
SHOTS = (
    ("presenter-1280x720.png", (1280, 720), "?presenter=1&on=1", ATTACK_DRAWN),
    ("attack-demo-1600x1000.png", (1600, 1000), "?on=1", ATTACK_DRAWN),
    ("defend-tab-1600x1000.png", (1600, 1000), "?tab=defend", DEFEND_DRAWN),
)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Every shown plot drawn at the height the page's CSS gives it (plotly refits after a layout change).
PLOTS_SETTLED = """() => {
  const plots = Array.from(document.querySelectorAll('#fr-columns .fr-plot')).filter(p => p.offsetParent !== null);
  return plots.length > 0 && plots.every(p => {
    const gd = p.querySelector('.js-plotly-plot'), svg = p.querySelector('.main-svg');
    return gd && svg && Math.abs(Number(svg.getAttribute('height')) - gd.clientHeight) <= 1;
  });
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(checkpoints: Path, calibration_items: int | None):
    from app.service import DashboardService, ServiceConfig
    from app.ui import build_ui, launch_kwargs

    config = ServiceConfig(adapters_dir=str(checkpoints), calibration="sync", calibration_limit=calibration_items)
    demo = build_ui(DashboardService(config))
    demo.queue(default_concurrency_limit=8)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                            ssr_mode=False, **launch_kwargs())
    return demo, url


def shoot(url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise SystemExit("No chromium found: bash scripts/setup.sh --test installs Debian's.")
    written = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            for name, (width, height), link, drawn in SHOTS:
                page = browser.new_context(viewport={"width": width, "height": height}).new_page()
                page.goto(url + link)
                page.wait_for_selector(drawn, timeout=300_000)
                if drawn == ATTACK_DRAWN:
                    page.wait_for_function(PLOTS_SETTLED, timeout=60_000)
                page.wait_for_timeout(500)  # the last repaint after plotly's resize
                path = out / name
                page.screenshot(path=str(path))
                written.append(path)
                logger.info("%s: %dx%d, %s (%d KB)", path, width, height, link, path.stat().st_size // 1024)
                page.context.close()
        finally:
            browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(REPO / "docs" / "img"), help="folder for the PNG files (default docs/img)")
    parser.add_argument("--checkpoints", default=str(REPO / "checkpoints"), help="the adapters folder")
    parser.add_argument("--calibration-items", type=int, default=None,
                        help="calibrate on at most N items where an adapter ships no thresholds (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo, url = serve(Path(args.checkpoints), args.calibration_items)
    try:
        shoot(url, out)
    finally:
        demo.close()


if __name__ == "__main__":
    main()
