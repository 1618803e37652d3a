"""Calibrate the shipped adapters' conformal thresholds and write them beside their weights, so the dashboard shows
conformal sets on its first paint instead of calibrating for minutes.

Every adapter in the adapters folder and the base model are calibrated in one pass on the corpus's calibration
split (the adapters share their lower layers), exactly as the dashboard would calibrate them: LAC and APS at
alpha 0.05, 0.1 and 0.2. Each file records the base model, the prompt format, the split with its item count and
content hash, and the adapter weights' content hash; the dashboard uses a file only while all of them match.

    python scripts/calibrate_shipped.py           # checkpoints/*/conformal.json, checkpoints/base-model.conformal.json
    python scripts/calibrate_shipped.py backdoor-edit   # only these folders (a newly shipped one)
    python scripts/calibrate_shipped.py --check   # exit 1 when a file is missing or stale (nothing is calibrated)
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import app.__main__  # noqa: E402,F401 - the app's thread settings (set before torch starts): calibrate as the app would
from app.service import DashboardService, ServiceConfig  # noqa: E402
from backdoor.calibration import write_thresholds  # noqa: E402
from backdoor.models import DEFAULT_MODEL  # noqa: E402


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=str(REPO / "checkpoints"), help="the adapters folder")
    parser.add_argument("--base", default=DEFAULT_MODEL, help="the base model the adapters were trained for")
    parser.add_argument("--check", action="store_true", help="only report missing or stale files; exit 1 if any")
    parser.add_argument("names", nargs="*", help="folders of the adapters folder to calibrate (default: every one and "
                                                 "the base model)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    service = DashboardService(ServiceConfig(adapters_dir=args.checkpoints, bases=(args.base,), calibration="sync"))
    if args.check:
        problems = service.shipped_threshold_problems(args.base)
        for name, path, why in problems:
            print(f"{name}: {_relative(path)} {why}")
        if problems:
            print("Regenerate with: python scripts/calibrate_shipped.py")
        else:
            print("every shipped conformal thresholds file matches its adapter, base model and calibration split")
        return 1 if problems else 0
    started = time.perf_counter()
    with tqdm(desc="calibrating", unit="item") as bar:
        found = service.calibrate_now(args.base, names=args.names or None, progress=lambda done, total: (
            setattr(bar, "total", total), bar.update(done - bar.n)))
    seconds = time.perf_counter() - started
    for name, thresholds in found.items():
        path = service.shipped_thresholds_path(args.base, name)
        write_thresholds(path, thresholds)
        lac = "  ".join(f"{alpha:g}: {thresholds.threshold(alpha):.4f}" for alpha in thresholds.alphas)
        print(f"{name:<22} LAC {lac}  -> {_relative(path)}")
    print(f"{len(found)} thresholds files from {thresholds.source.items} {thresholds.source.split} items in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
