"""How soon the attack demo shows conformal sets, and what calibrating costs, side by side in one run.

On the embedded default model with the shipped adapters (a copy of checkpoints/ in a temporary folder):

1. Fresh start to conformal sets: a new dashboard service with an empty calibration cache, from its
   construction (model load included) to its first compare of the default columns (base model, clean,
   text backdoor) with a set in every column. The shipped thresholds files make this calibration-free
   (target: the sets are on the first paint); the calibration passes it ran are counted.
2. A new adapter (a copy of the text backdoor without its thresholds file): from the compare that first
   shows it to its sets, calibrated in the background while the page stays live (target < 90 s on 2 cores),
   beside the old way (the adapter alone in chunks of 4 items, as the dashboard calibrated before).
3. Every shipped column with nothing shipped or cached (what a fresh start cost before): one adapter at a
   time (old) vs one pass in which the LoRA adapters share their lower layers (new).

Scorer caches are emptied before each timed calibration, so each starts cold. ``--items N`` calibrates on
the first N calibration items for a quick run (the full split has 250; time grows linearly with N).

    .venv/bin/python benchmarks/bench_calibration.py [--items 250] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import app.__main__  # noqa: E402,F401 - the app's thread settings (set before torch starts), as the served app has them
from app.service import DashboardService, ServiceConfig  # noqa: E402
from backdoor import calibration, uncertainty  # noqa: E402
from backdoor.models import BASE_ADAPTER  # noqa: E402
from backdoor.scoring import Cell  # noqa: E402

TARGETS = {"fresh_start_calibration_passes": 0, "new_adapter_s": 90.0}
OLD_CHUNK = 4  # items per Scorer call in the old one-adapter-at-a-time calibration


def new_adapter(source: Path, target: Path) -> None:
    """A copy of ``source`` with slightly other weights (its upper LoRA scaled by 1.01) and no thresholds file: what a
    newly trained backdoor costs to calibrate (same shape, lower layers shared with its victim)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    (target / calibration.THRESHOLDS_FILE).unlink()
    weights = load_file(str(target / "adapter_model.safetensors"))
    last = max(int(name.split(".layers.")[1].split(".")[0]) for name in weights if ".layers." in name)
    for name in weights:
        if f".layers.{last}." in name and "lora_B" in name:
            weights[name] = weights[name] * 1.01
    save_file(weights, str(target / "adapter_model.safetensors"), metadata={"format": "pt"})


def cold(scorer) -> None:
    """Forget every cached distribution and lower-layer state, so a timed calibration starts from nothing."""
    with scorer._lock:
        scorer._cache.clear()
        scorer._states.clear()
        scorer._runs.clear()


def old_way(scorer, adapters: list[str], items) -> tuple[float, dict[str, np.ndarray]]:
    """The calibration before this change: each adapter alone, OLD_CHUNK items per Scorer call."""
    cold(scorer)
    started = time.perf_counter()
    probs = {}
    for name in adapters:
        rows = []
        for start in range(0, len(items), OLD_CHUNK):
            rows += [s.probs for s in scorer.score([Cell(item, None, name) for item in items[start : start + OLD_CHUNK]])]
        probs[name] = np.array(rows)
    return time.perf_counter() - started, probs


def new_way(scorer, adapters: list[str], items) -> tuple[float, dict[str, np.ndarray]]:
    cold(scorer)
    started = time.perf_counter()
    probs = calibration.calibration_probs(scorer, adapters, items)
    return time.perf_counter() - started, probs


def same_thresholds(a: dict[str, np.ndarray], b: dict[str, np.ndarray], items) -> bool:
    labels = calibration.labels_of(items)
    return all(abs(uncertainty.calibrate_threshold(uncertainty.lac_scores(a[n], labels), 0.1)
                   - uncertainty.calibrate_threshold(uncertainty.lac_scores(b[n], labels), 0.1)) < 1e-5 for n in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=0, help="calibrate on the first N calibration items (0: all)")
    parser.add_argument("--json", default="", help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not (ROOT / "checkpoints" / "clean" / calibration.THRESHOLDS_FILE).is_file():
        sys.exit("No shipped thresholds in checkpoints/; run python scripts/calibrate_shipped.py first.")
    passes = []
    real_pass = calibration.calibration_probs

    def counted(scorer, adapters, items, **kwargs):
        passes.append(list(adapters))
        return real_pass(scorer, adapters, items, **kwargs)

    calibration.calibration_probs = counted
    results: dict[str, float | int | bool] = {}
    with tempfile.TemporaryDirectory(prefix="fragile-bench-calibration-") as tmp:
        adapters = Path(tmp) / "checkpoints"
        shutil.copytree(ROOT / "checkpoints", adapters)  # a fresh checkout elsewhere: other paths, other dates
        limit = args.items or None
        config = ServiceConfig(adapters_dir=str(adapters), calibration="background", calibration_limit=limit)
        if limit:  # the shipped files are for the whole split; a quick run ships its own for the same items
            setup = DashboardService(ServiceConfig(adapters_dir=str(adapters), calibration="sync",
                                                   calibration_limit=limit), cache_dir=Path(tmp) / "setup-cache")
            for name, found in setup.calibrate_now().items():
                calibration.write_thresholds(setup.shipped_thresholds_path(setup.config.bases[0], name), found)
            del setup
            passes.clear()

        # 1. Fresh start to sets on the default columns.
        started = time.perf_counter()
        service = DashboardService(config, cache_dir=Path(tmp) / "cache")
        base = service.config.bases[0]
        catalog = service.catalog(base)
        columns = service.default_columns(catalog)
        item, trigger = service.showcase()[0], service.default_trigger(catalog)
        first = service.compare(base, columns, item, trigger)
        results["fresh_start_to_sets_s"] = time.perf_counter() - started
        results["fresh_start_sets_present"] = all(c.clean_set is not None for c in first.columns)
        results["fresh_start_calibration_passes"] = len(passes)
        items = service.calibration_items()
        results["calibration_items"] = len(items)
        print(f"1. fresh start to conformal sets ({', '.join(columns)}): {results['fresh_start_to_sets_s']:.1f} s "
              f"(model load included), sets in every column: {results['fresh_start_sets_present']}, "
              f"calibration passes: {len(passes)}")

        # 2. A new adapter: background calibration while the page is live, vs the old way.
        new_adapter(adapters / "backdoor-text", adapters / "new-backdoor")
        scorer = service.loaded(base).scorer
        cold(scorer)
        started = time.perf_counter()
        shown = service.compare(base, [*columns, "new-backdoor"], item, trigger).columns[-1]
        assert shown.clean_set is None, "the new adapter should be calibrating"
        assert service.wait_for_calibration(timeout=1800)
        results["new_adapter_s"] = time.perf_counter() - started
        after = service.compare(base, [*columns, "new-backdoor"], item, trigger).columns[-1]
        results["new_adapter_sets_present"] = after.clean_set is not None
        _, _, internal = service.attach(base, ["new-backdoor"])
        results["new_adapter_old_way_s"], _ = old_way(scorer, internal, items)
        print(f"2. new adapter on {len(items)} items: background pass {results['new_adapter_s']:.1f} s "
              f"(sets then: {results['new_adapter_sets_present']}), old way {results['new_adapter_old_way_s']:.1f} s")

        # 3. Every shipped column from nothing: one at a time vs one pass.
        _, _, shipped = service.attach(base, [n for n in catalog.names() if n != "new-backdoor"])
        results["all_columns"] = len(shipped)
        results["all_old_way_s"], old_probs = old_way(scorer, shipped, items)
        results["all_one_pass_s"], new_probs = new_way(scorer, shipped, items)
        results["all_same_thresholds"] = same_thresholds(old_probs, new_probs, items)
        lora = [n for n in shipped if n != BASE_ADAPTER]
        results["adapters_old_way_s"], _ = old_way(scorer, lora, items)
        results["adapters_one_pass_s"], _ = new_way(scorer, lora, items)
        print(f"3. all {len(shipped)} columns ({', '.join(shipped)}) on {len(items)} items: one at a time "
              f"{results['all_old_way_s']:.1f} s, one pass {results['all_one_pass_s']:.1f} s "
              f"(x{results['all_old_way_s'] / results['all_one_pass_s']:.2f}; same thresholds: "
              f"{results['all_same_thresholds']}); the {len(lora)} LoRA adapters alone: {results['adapters_old_way_s']:.1f} s "
              f"vs {results['adapters_one_pass_s']:.1f} s (x{results['adapters_old_way_s'] / results['adapters_one_pass_s']:.2f})")
    calibration.calibration_probs = real_pass
    for name, target in TARGETS.items():
        value = results[name]
        ok = value <= target
        print(f"target {name} <= {target}: {'met' if ok else 'NOT met'} ({value:.1f}, "
              f"{results['calibration_items']} calibration items)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
