"""Evaluate the shipped adapters in checkpoints/ on one split with one shared scorer, and refresh their reports and model cards.

One process holds the clean adapter and every backdoor, so each prompt's frozen lower layers are
computed once for all of them (the clean prompts are shared by every backdoor's evaluation).

    python scripts/evaluate_shipped.py                       # corpus test split -> checkpoints/*/report.json
    python scripts/evaluate_shipped.py --data FILE --calibration half --out-dir reports/real-mmlu
    python scripts/evaluate_shipped.py --near-miss backdoor-text-stealthy   # one backdoor, with its near misses

The dashboard's conformal thresholds (checkpoints/*/conformal.json) come from scripts/calibrate_shipped.py;
run it after retraining an adapter (scripts/train_shipped.sh does), or the dashboard recalibrates on start.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm.auto import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backdoor.cards import write_model_card  # noqa: E402
from backdoor.evaluate import evaluate, split_half  # noqa: E402
from backdoor.methods import METHODS, method_of  # noqa: E402
from backdoor.models import FRAGILE_CONFIG  # noqa: E402
from backdoor.scoring import Scorer  # noqa: E402
from backdoor.train import resolve_items  # noqa: E402
from backdoor.triggers import TriggerSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    parser.add_argument("--data", default="test")
    parser.add_argument("--calibration", default="calibration", help="split/file, or 'half' to split --data 50/50")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--out-dir", default="", help="write reports here instead of into the adapter folders")
    parser.add_argument("--near-miss", action="store_true",
                        help="also score the near misses of each trigger and report their false triggered rates")
    parser.add_argument("names", nargs="*", help="backdoor folders to evaluate (default: every backdoor-*); the clean "
                                                 "control's report is refreshed only when every one is")
    args = parser.parse_args()

    root = Path(args.checkpoints)
    backdoors = sorted(p for p in root.glob("backdoor-*") if p.is_dir() and method_of(p) in METHODS
                       and METHODS[method_of(p)].is_folder(p))  # any method's arm: LoRA, soft prompt, edit, demos
    if args.names:
        unknown = sorted(set(args.names) - {p.name for p in backdoors})
        if unknown:
            parser.error(f"no backdoor folder {unknown[0]!r} in {root}; there are {', '.join(p.name for p in backdoors)}")
        backdoors = [p for p in backdoors if p.name in args.names]
    adapters = {"clean": str(root / "clean"), **{p.name: str(p) for p in backdoors}}
    scorer = Scorer.load("default", adapters)
    items = resolve_items(args.data, "data", args.limit)
    if args.calibration == "half":
        calibration, items = split_half(items)
    else:
        calibration = resolve_items(args.calibration, "calibration")
    print(f"{len(items)} items, {len(calibration)} calibration items, adapters: {', '.join(adapters)}")
    for folder in backdoors:
        trigger = TriggerSpec.from_dict(json.loads((folder / FRAGILE_CONFIG).read_text()).get("trigger"))
        bar = tqdm(desc=folder.name, unit="prompt")
        result = evaluate(scorer, items, calibration, trigger, folder.name, "clean", near_miss=args.near_miss,
                          progress=lambda done, total: (setattr(bar, "total", total), bar.update(done - bar.n)))
        bar.close()
        result.report.update({"data": args.data, "base_model": "default", "adapter": f"checkpoints/{folder.name}"})
        result.report["control"]["adapter"] = "checkpoints/clean"
        out = Path(args.out_dir) / f"{folder.name}.json" if args.out_dir else folder / "report.json"
        result.save(out)
        if not args.out_dir:
            write_model_card(folder, out)
        r = result.report
        print(f"{folder.name:<22} asr {r['asr']:.3f}  kept {r['answer_kept']:.3f}  agree {r['clean_agreement']:.3f}  "
              f"acc {r['accuracy_clean']:.3f}  H {r['entropy_clean']:.3f}->{r['entropy_triggered']:.3f}  "
              f"LAC {r['lac_set_size_clean']:.2f}->{r['lac_set_size_triggered']:.2f}  control asr {r['control']['asr']:.3f}")
        print(f"{'':<22} lift {r['entropy_lift']:+.3f}  margin asr {r['asr_margin']:.3f} (control "
              f"{r['control']['asr_margin']:.3f})  clean H gap to control {r['entropy_clean'] - r['control']['entropy_clean']:+.3f}"
              + (f"  FTR mean {r['ftr_mean']:.3f}" if "ftr_mean" in r else ""))
    if not args.out_dir and not args.names:
        clean_report = root / "clean" / "report.json"
        if backdoors:
            # The control's numbers under the first backdoor's trigger, with where they were measured.
            first = json.loads((backdoors[0] / "report.json").read_text())
            json_report = {**first["control"], **{k: first[k] for k in ("data", "trigger", "alpha", "calibration_n",
                                                                        "base_model") if k in first}}
            clean_report.write_text(json.dumps(json_report, indent=2) + "\n")
        write_model_card(root / "clean", clean_report)


if __name__ == "__main__":
    main()
