"""The Evaluate tab against the command line on the same work, side by side in one run, and a question sent
while a maximum-size one is being scored.

Both sides score the same items (evenly spaced over the test split) with and without the trigger on the
shipped backdoor and its clean control, calibrated on the same calibration items, each in a fresh child
process, timed from after the imports (model load included on both sides):

- cli: ``python -m backdoor evaluate`` (``backdoor.__main__.main``) with torch's default threads and, as the
  dashboard, idle OpenMP threads that sleep (``OMP_WAIT_POLICY=PASSIVE``; ``--cli-spin`` leaves OpenMP's
  default: on a machine loaded by other work its spinning threads slowed the command line several-fold);
- app: the Evaluate tab's handler (``LabHandlers.evaluate``: scoring, report, figures, downloads) with the
  thread settings the dashboard starts with (``app/__main__.py``) and no training job running.

Then, in the app's process set-up, a normal showcase question is sent while a question at the prompt token
bound is being scored: it should answer in seconds, between the long question's chunks, not after it.

    python benchmarks/bench_evaluate_vs_cli.py                 # 24 items, 40 calibration items
    python benchmarks/bench_evaluate_vs_cli.py --items 250 --calibration-items 250
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _write_items(folder: Path, items: int, calibration_items: int) -> tuple[Path, Path]:
    from app.lab import evenly_spaced
    from dataset.corpus import load_split
    from dataset.schema import save_items

    data = save_items(evenly_spaced(load_split("test"), items), folder / "items.jsonl")
    calibration = save_items(load_split("calibration")[:calibration_items], folder / "calibration.jsonl")
    return data, calibration


def side_cli(args) -> float:
    from backdoor.__main__ import main

    out = Path(args.folder) / "cli-report.json"
    started = time.perf_counter()
    code = main(["evaluate", "--adapter", args.adapter, "--control", args.control, "--data", args.data,
                 "--calibration", args.calibration, "--trigger", args.trigger, "--out", str(out)])
    seconds = time.perf_counter() - started
    assert code == 0, f"the command line failed ({code})"
    return seconds


def _app_lab(args):
    import app.__main__  # noqa: F401 - the dashboard's thread settings, applied before torch loads
    from app.lab import Lab
    from app.lab_ui import LabHandlers
    from app.service import DashboardService, ServiceConfig
    from dataset.schema import load_items

    adapters = Path(args.adapter).parent
    config = ServiceConfig(adapters_dir=str(adapters), calibration="off", jobs_dir=str(Path(args.folder) / "jobs"))
    service = DashboardService(config, calibration_items=load_items(args.calibration))
    return service, LabHandlers(Lab(service, results_dir=Path(args.folder) / "results", start_worker=False))


def side_app(args) -> float:
    service, handlers = _app_lab(args)
    started = time.perf_counter()
    service.loaded(service.config.bases[0])
    status = handlers.evaluate(service.config.bases[0], args.data, args.items, Path(args.adapter).name,
                               Path(args.control).name, args.trigger, "", "before_cue",
                               progress=lambda *a, **k: None)[0]
    seconds = time.perf_counter() - started
    assert not status.startswith("⚠️"), status
    return seconds


def side_interleave(args) -> dict:
    """Seconds for a normal question alone, the same question sent while a maximum-size one scores, and the
    maximum-size one itself."""
    service, _ = _app_lab(args)
    base = service.config.bases[0]
    names = ["__base__", Path(args.control).name, Path(args.adapter).name]
    trigger = service.trigger(args.trigger)
    scorer = service.loaded(base).scorer
    showcase = service.showcase()
    service.compare(base, names, showcase[0], trigger)  # warm: adapters attached, instruction cached
    started = time.perf_counter()
    service.compare(base, names, showcase[1], trigger)
    alone = time.perf_counter() - started
    # A question whose prompt sits just under the token bound.
    def sevens(count: int):
        return service.custom_item("How many sevens are there?", "7 " * count, ["many", "few"])

    per_seven = (scorer.prompt_tokens(sevens(20), trigger) - scorer.prompt_tokens(sevens(10), trigger)) / 10
    spare = service.limits.prompt_tokens - scorer.prompt_tokens(sevens(10), trigger)
    big = sevens(10 + int(spare // per_seven))
    times: dict[str, float] = {}

    def score_big():
        begun = time.perf_counter()
        try:
            service.compare(base, names, big, trigger)
        finally:
            times["big"] = time.perf_counter() - begun

    worker = threading.Thread(target=score_big)
    worker.start()
    time.sleep(args.delay)
    started = time.perf_counter()
    service.compare(base, names, showcase[2], trigger)
    times["during"] = time.perf_counter() - started
    times["big_done_after_normal"] = worker.is_alive()
    worker.join()
    return {"alone": alone, "during": times["during"], "big": times["big"],
            "big_tokens": scorer.prompt_tokens(big, trigger), "answered_first": times["big_done_after_normal"]}


def _child(side: str, args, folder: Path, data: Path, calibration: Path, env: dict | None = None):
    command = [sys.executable, __file__, "--side", side, "--folder", str(folder), "--data", str(data),
               "--calibration", str(calibration), "--items", str(args.items), "--adapter", args.adapter,
               "--control", args.control, "--trigger", args.trigger, "--delay", str(args.delay)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise SystemExit(f"{side} side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=24, help="test items scored by each side (default %(default)s)")
    parser.add_argument("--calibration-items", type=int, default=40, help="calibration items (default %(default)s)")
    parser.add_argument("--adapter", default="checkpoints/backdoor-text", help="the backdoored adapter folder")
    parser.add_argument("--control", default="checkpoints/clean", help="the clean control adapter folder")
    parser.add_argument("--trigger", default="text")
    parser.add_argument("--delay", type=float, default=1.0,
                        help="seconds between sending the maximum-size question and the normal one")
    parser.add_argument("--no-interleave", action="store_true", help="skip the interleaving measurement")
    parser.add_argument("--cli-spin", action="store_true", help="run the command line with OpenMP's default wait policy")
    parser.add_argument("--side", choices=("cli", "app", "interleave"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--calibration", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        result = {"cli": side_cli, "app": side_app, "interleave": side_interleave}[args.side](args)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as folder:
        _compare(args, Path(folder))


def _compare(args, folder: Path) -> None:
    data, calibration = _write_items(folder, args.items, args.calibration_items)
    print(f"{args.items} test items, {args.calibration_items} calibration items, {args.adapter} vs {args.control}, "
          f"{args.trigger} trigger; each side in a fresh process, model load included")
    cli = _child("cli", args, folder, data, calibration, None if args.cli_spin else {"OMP_WAIT_POLICY": "PASSIVE"})
    app = _child("app", args, folder, data, calibration)
    print(f"command line:  {cli:7.1f} s")
    print(f"Evaluate tab:  {app:7.1f} s")
    print(f"ratio (tab / command line): {app / cli:.2f}x (target <= 1.2x)")
    if not args.no_interleave:
        result = _child("interleave", args, folder, data, calibration)
        print(f"a normal question alone: {result['alone']:.2f} s; sent {args.delay:.0f} s after a "
              f"{result['big_tokens']}-token one: {result['during']:.2f} s "
              f"({'answered before' if result['answered_first'] else 'answered after'} it); "
              f"the {result['big_tokens']}-token question took {result['big']:.1f} s")


if __name__ == "__main__":
    main()
