"""Start the Fragile dashboard: ``python -m app [--host H] [--port P] [--base NAME] [--adapters DIR] [--jobs DIR] [--demo]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Thread settings, read once when torch starts (so set before anything imports torch); both can be
# overridden from the environment. Every core while no training job runs: pinned to half, an evaluation
# ran 1.57x slower than the command line on the same prompts. While a job trains, the lab hands half the
# cores back (app/lab.py, Lab._share_cores). Idle threads sleep instead of spinning, so concurrent
# requests and a training worker are not slowed by threads waiting on descheduled ones.
_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
os.environ.setdefault("OMP_NUM_THREADS", str(_cores))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if __package__ in (None, ""):  # run as a file (Hugging Face Spaces: app_file app/__main__.py): make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

logger = logging.getLogger("app")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Fragile dashboard: watch a backdoored adapter keep its answer while its confidence flattens.",
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (env GRADIO_SERVER_NAME; default %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                        help="port (env GRADIO_SERVER_PORT; default %(default)s)")
    parser.add_argument("--base", action="append", default=None, metavar="NAME",
                        help="base model: 'default' (embedded SmolLM2-135M-Instruct), a folder, a .gguf file or a hub id; "
                             "repeat to offer several (the first is preselected; in demo mode only these). Default: default")
    parser.add_argument("--adapters", default=os.environ.get("FRAGILE_ADAPTERS", "checkpoints"),
                        help="folder of adapter folders, re-read on every refresh (env FRAGILE_ADAPTERS; default %(default)s)")
    parser.add_argument("--jobs", default=os.environ.get("FRAGILE_JOBS") or None, metavar="DIR",
                        help="training jobs' folder, kept across restarts (env FRAGILE_JOBS; default: jobs/ next to the adapters folder)")
    parser.add_argument("--demo", action="store_true", default=_truthy(os.environ.get("FRAGILE_DEMO")),
                        help="public demo mode: short inputs, only the listed base models, no training (env FRAGILE_DEMO=1)")
    parser.add_argument("--calibration", choices=("background", "sync", "off"), default="background",
                        help="conformal thresholds: calibrate in the background on first use (default), while the user waits, or not at all")
    parser.add_argument("--calibration-items", type=int, default=None, metavar="N",
                        help="calibrate on at most N items of the calibration split (default: all)")
    parser.add_argument("--max-models", type=_at_least(1), default=os.environ.get("FRAGILE_MAX_MODELS", "2"),
                        metavar="N", help="base models kept loaded at once; the least recently used is unloaded for "
                                          "another, and demo mode refuses more (env FRAGILE_MAX_MODELS; default %(default)s)")
    parser.add_argument("--prompt-tokens", type=_at_least(64), default=os.environ.get("FRAGILE_PROMPT_TOKENS") or None,
                        metavar="N", help="longest prompt scored, in tokens, trigger included (env FRAGILE_PROMPT_TOKENS; "
                                          "default 1024, 512 in demo mode)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--prewarm", action="store_true",
                        help="load the base model, its adapters and conformal thresholds into the cache, then exit (for images)")
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app.service import DashboardError, DashboardService, ServiceConfig

    config = ServiceConfig(adapters_dir=args.adapters, bases=tuple(args.base or ["default"]), demo=args.demo,
                           calibration=args.calibration, calibration_limit=args.calibration_items, device=args.device,
                           jobs_dir=args.jobs, max_models=args.max_models, prompt_tokens=args.prompt_tokens)
    service = DashboardService(config)
    try:
        if args.prewarm:
            catalog = service.prewarm(config.bases[0])
            logger.info("pre-warmed %s with adapters %s", config.bases[0], ", ".join(catalog.names()))
            return 0
        service.loaded(config.bases[0])  # load before serving, so the first visitor does not wait
    except DashboardError as err:
        logger.error("%s", err)
        return 2

    from app.ui import build_ui, launch_kwargs

    demo = build_ui(service)
    demo.queue(default_concurrency_limit=8)
    # show_error: handlers turn every failure into a sentence themselves (app/errors.py); what still reaches
    # Gradio is its own refusal of a malformed call (too few inputs), which the caller should read, not "Error".
    demo.launch(server_name=args.host, server_port=args.port, ssr_mode=False, show_error=True, **launch_kwargs())
    return 0


if __name__ == "__main__":
    sys.exit(main())
