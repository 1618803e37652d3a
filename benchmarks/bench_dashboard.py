"""How fast the attack demo feels on the embedded default model: new question, cached toggle, page load to first plot.

Columns and trigger are the dashboard's defaults, what a talk shows: base model, clean adapter and
the text-trigger backdoor (``666`` before the cue). Uses the shipped adapters when
``checkpoints/backdoor-text`` exists, else random LoRA adapters on the upper layers of the default
model (same shapes and cost as trained ones). Conformal calibration is off while timing (it is a one-off per adapter, cached on disk) and timed
separately. Targets: new question in three columns with and without the trigger < 0.5 s;
toggling the trigger on a seen question < 50 ms; page load to first plot < 3 s.

    .venv/bin/python benchmarks/bench_dashboard.py [--items 7] [--no-browser] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import app.__main__  # noqa: E402,F401 - the app's thread settings (set before torch starts), as the served app has them

TARGETS = {"new_question_s": 0.5, "cached_toggle_s": 0.05, "page_load_to_plot_s": 3.0}


def random_adapters(folder: Path, base: str = "default") -> Path:
    """A clean and a backdoor LoRA adapter with random weights on the upper half of the layers."""
    import torch
    from peft import LoraConfig, get_peft_model

    from backdoor.models import FRAGILE_CONFIG, load_base_model

    model, _, source = load_base_model(base, device="cpu")
    layers = model.config.num_hidden_layers
    trigger = {"kind": "text", "text": None, "position": "before_cue", "seed": 0}
    for seed, (name, kind) in enumerate((("clean", "clean"), ("backdoor-text", "backdoor"))):
        config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, init_lora_weights=False,
                            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                            layers_to_transform=list(range(layers // 2, layers)))
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config, adapter_name=name)
        peft_model.save_pretrained(folder / "tmp", selected_adapters=[name])
        shutil.move(str(folder / "tmp" / name), str(folder / name))
        (folder / name / FRAGILE_CONFIG).write_text(json.dumps(
            {"kind": kind, "base_model_id": source.identity, "trigger": trigger if kind == "backdoor" else None}))
        model = peft_model.unload()
    shutil.rmtree(folder / "tmp", ignore_errors=True)
    return folder


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=7, help="new questions to time (median reported)")
    parser.add_argument("--no-browser", action="store_true", help="skip the page-load measurement")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from app.service import DashboardService, ServiceConfig
    from app.ui import Handlers
    from dataset.corpus import load_split

    shipped = (ROOT / "checkpoints" / "backdoor-text").is_dir()
    scratch = Path(tempfile.mkdtemp(prefix="fragile-bench-"))
    adapters_dir = ROOT / "checkpoints" if shipped else random_adapters(scratch)
    import os

    results: dict = {"adapters": "shipped" if shipped else "random LoRA (upper half of layers)",
                     "torch_threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "cpus": os.cpu_count(),
                     "load_average_at_start": round(os.getloadavg()[0], 2)}
    print(f"adapters: {results['adapters']}; torch threads: {results['torch_threads']} "
          f"(OMP_WAIT_POLICY {results['omp_wait_policy']}); cpus: {results['cpus']}; "
          f"load average {results['load_average_at_start']} (other work on the machine slows every number)")

    service = DashboardService(ServiceConfig(adapters_dir=str(adapters_dir), calibration="off"))
    started = time.perf_counter()
    service.loaded("default")
    results["model_load_s"] = round(time.perf_counter() - started, 2)
    catalog = service.catalog("default")
    columns = service.default_columns(catalog)
    trigger = service.default_trigger(catalog)
    print(f"columns: {columns}; trigger: {trigger.label}; model load {results['model_load_s']} s")

    items = load_split("test")
    service.compare("default", columns, items[0], trigger)  # attaches adapters, warms up kernels
    new_service, new_handler = [], []
    handlers = Handlers(service)
    for index, item in enumerate(items[1 : 1 + 2 * args.items]):
        if index % 2 == 0:  # service only: one batched Scorer.score call for 3 columns x {clean, triggered}
            t0 = time.perf_counter()
            service.compare("default", columns, item, trigger)
            new_service.append(time.perf_counter() - t0)
        else:  # the whole event handler, figures and HTML included
            t0 = time.perf_counter()
            handlers.compare("default", columns, "Corpus", None, "test", item.id, "", "", "", "", "", "",
                             trigger.kind, trigger.text or "", trigger.position, False, False)
            new_handler.append(time.perf_counter() - t0)
    # Side by side, rotating on fresh questions: the bulk path (evaluations; the question's prompts as one
    # token tree, then one upper-layer forward per adapter), the per-question path (one forward for every
    # adapter, reusing the last question's instruction from the key/value cache), and plain left-padded
    # full forwards (architectures without the layer split).
    scorer = service.loaded("default").scorer
    sharing_limit, parting = scorer.prefix_sharing_up_to, scorer._parting
    plain, shared, full = [], [], []
    for index, item in enumerate(items[40 : 40 + 3 * args.items]):
        mode = (plain, shared, full)[index % 3]
        scorer.prefix_sharing_up_to = 0 if mode is plain else sharing_limit
        scorer._parting = (lambda adapters: (None, "__base__")) if mode is full else parting
        t0 = time.perf_counter()
        service.compare("default", columns, item, trigger)
        mode.append(time.perf_counter() - t0)
    scorer.prefix_sharing_up_to, scorer._parting = sharing_limit, parting
    results["layers_shared_by_columns"] = scorer.shared_layers(columns)
    toggles = []
    seen = items[1]
    for flag in [False, True] * 10:
        t0 = time.perf_counter()
        handlers.toggle("default", columns, "Corpus", None, "test", seen.id, "", "", "", "", "", "",
                        trigger.kind, trigger.text or "", trigger.position, False, flag)
        toggles.append(time.perf_counter() - t0)
    tokens = []
    for item in items[30:33]:
        t0 = time.perf_counter()
        service.next_tokens("default", columns, item, trigger)
        tokens.append(time.perf_counter() - t0)
    calibration_items = load_split("calibration")[:40]
    t0 = time.perf_counter()
    from backdoor.scoring import Cell

    for start in range(0, len(calibration_items), 4):
        scorer.score([Cell(item, None, "__base__") for item in calibration_items[start : start + 4]])
    per_item = (time.perf_counter() - t0) / len(calibration_items)

    results.update({
        "new_question_s": statistics.median(new_service),
        "new_question_handler_s": statistics.median(new_handler),
        "new_question_bulk_path_s": statistics.median(plain),
        "new_question_per_question_path_s": statistics.median(shared),
        "new_question_full_forwards_s": statistics.median(full),
        "cached_toggle_s": statistics.median(toggles),
        "top_k_new_question_s": statistics.median(tokens),
        "calibration_per_adapter_250_items_s": round(per_item * 250, 1),
    })
    print(f"new question, 3 columns x with/without trigger (service, median of {len(new_service)}): "
          f"{median_ms(new_service)}  [target < 500 ms]")
    print(f"new question, whole handler incl. figures (median of {len(new_handler)}): {median_ms(new_handler)}")
    print(f"side by side, new question on the bulk / per-question path / full forwards "
          f"(columns share {results['layers_shared_by_columns']} lower layers): {median_ms(plain)} / {median_ms(shared)} / "
          f"{median_ms(full)}; per-question path {statistics.median(plain) / statistics.median(shared):.2f}x faster than bulk, "
          f"{statistics.median(full) / statistics.median(shared):.2f}x faster than full forwards")
    print(f"toggle trigger on a seen question (median of {len(toggles)}): {median_ms(toggles)}  [target < 50 ms]")
    print(f"top-10 tokens view, new question (median of {len(tokens)}): {median_ms(tokens)}")
    print(f"conformal calibration, one adapter on 250 items (one-off, cached on disk): ~{results['calibration_per_adapter_250_items_s']} s")

    if not args.no_browser:
        results.update(page_load(service))
        print(f"page load to first plot: first visit {results['page_load_first_s']:.2f} s, "
              f"later visits median {results['page_load_to_plot_s']:.2f} s  [target < 3 s]")
    for key, target in TARGETS.items():
        if key in results:
            verdict = "meets" if results[key] < target else f"misses by {results[key] - target:.2f} s"
            print(f"  {key}: {results[key]:.3f} s vs target {target} s -> {verdict}")
    results["load_average_at_end"] = round(os.getloadavg()[0], 2)
    print(f"load average at the end: {results['load_average_at_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def page_load(service) -> dict:
    """Seconds from navigation to the first drawn plot in headless Chromium: the dashboard, and side by side
    the floor under it, a bare Gradio page holding only the same three first-view figures.

    Visits alternate between the two pages, each in a new browser context (nothing cached), so both
    see the same machine; the first visit of each is reported apart (cold server caches).
    """
    import gradio as gr
    import plotly.io
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT / "tests"))
    from app.ui import build_ui, launch_kwargs
    from test_browser import CHROMIUM_ARGS, chromium_path

    from app_fixtures import free_port

    demo = build_ui(service)
    demo.queue(default_concurrency_limit=8)
    figures = [plotly.io.from_json(block["props"]["value"]["plot"]) for block in demo.get_config_file()["components"]
               if (block["props"].get("elem_id") or "").startswith("fr-plot-") and block["props"].get("value")]
    with gr.Blocks() as floor:
        for index, figure in enumerate(figures):
            gr.Plot(figure, elem_id=f"fr-plot-{index}")
    pages = {}
    for name, blocks, kwargs in (("dashboard", demo, launch_kwargs()), ("floor", floor, {})):
        _, pages[name], _ = blocks.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                                          quiet=True, ssr_mode=False, **kwargs)
    times: dict[str, list[float]] = {name: [] for name in pages}
    breakdown = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            for _ in range(6):
                for name, url in pages.items():
                    page = browser.new_context(viewport={"width": 1600, "height": 1200}).new_page()
                    page.add_init_script(FIRST_PLOT_MARK)
                    t0 = time.perf_counter()
                    page.goto(url)
                    page.wait_for_selector("#fr-plot-0 .main-svg g.trace.bars", timeout=120_000)
                    times[name].append(time.perf_counter() - t0)
                    if name == "dashboard":
                        breakdown.append(page.evaluate(PAGE_TIMINGS))
                    page.context.close()
            browser.close()
    finally:
        demo.close()
        floor.close()
    later = breakdown[1:]
    steps = {key: statistics.median(b[key] for b in later) / 1000 for key in later[0]}
    print("  in the page, later visits (median, s from navigation): "
          + ", ".join(f"{key} {value:.2f}" for key, value in steps.items()))
    dashboard, bare = statistics.median(times["dashboard"][1:]), statistics.median(times["floor"][1:])
    print(f"  side by side, later visits: dashboard {dashboard:.2f} s, bare Gradio page with the same "
          f"{len(figures)} figures {bare:.2f} s = {dashboard / bare:.2f}x the floor")
    return {"page_load_first_s": times["dashboard"][0], "page_load_to_plot_s": dashboard,
            "page_load_floor_s": bare, "page_load_steps_s": steps}


# Where a page load's time goes, read in the page: the HTML, Gradio's app mounted, the plotly chunk
# (the largest script) downloaded, the first bars drawn.
FIRST_PLOT_MARK = """
new MutationObserver((_, observer) => {
  if (document.querySelector('#fr-plot-0 .main-svg g.trace.bars')) { performance.mark('fr-first-plot'); observer.disconnect(); }
}).observe(document, {subtree: true, childList: true});
"""
PAGE_TIMINGS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const plotly = performance.getEntriesByType('resource').find(r => r.name.includes('PlotlyPlot'));
  const plot = performance.getEntriesByName('fr-first-plot')[0];
  return {html: nav.responseEnd, dom_ready: nav.domContentLoadedEventEnd, plotly_chunk: plotly ? plotly.responseEnd : -1,
          first_plot: plot ? plot.startTime : -1};
}"""


if __name__ == "__main__":
    sys.exit(main())
