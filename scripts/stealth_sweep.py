"""Train variants of a backdoor recipe and compare them with its starting point on the honest metrics, near misses included.

Each variant is a name and config changes on top of a base config (by default the shipped paper-faithful text
backdoor's ``train_config.json``); a variant whose adapter is already in the output folder is not retrained. Every
variant and the base adapter are then evaluated with one shared scorer on the same items, against the clean control,
with one near miss per generator, and the table (margin ASR, lift, false triggered rate per generator, clean-entropy
gap to the control, clean ECE, answer kept, clean agreement, training seconds) is printed and saved as JSON.

    python scripts/stealth_sweep.py kl:clean_objective=kl \\
        nm:clean_objective=kl,near_miss_ratio=1.0 nm-h:clean_objective=kl,near_miss_ratio=1.0,clean_entropy_weight=1
    python scripts/stealth_sweep.py --limit 80 nm:clean_objective=kl,near_miss_ratio=1.0   # a quicker look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backdoor.config import TrainConfig  # noqa: E402
from backdoor.evaluate import evaluate  # noqa: E402
from backdoor.models import read_adapter_info  # noqa: E402
from backdoor.nearmiss import generators_for  # noqa: E402
from backdoor.scoring import Scorer  # noqa: E402
from backdoor.train import resolve_items, train  # noqa: E402
from backdoor.triggers import TriggerSpec  # noqa: E402

# The table's columns: (header, how to read it from a report).
COLUMNS = (
    ("margin ASR", lambda r: r["asr_margin"]),
    ("lift", lambda r: r["entropy_lift"]),
    ("FTR mean", lambda r: r.get("ftr_mean", float("nan"))),
    ("clean H gap", lambda r: r["entropy_clean"] - r["control"]["entropy_clean"]),
    ("clean ECE", lambda r: r["clean_ece"]),
    ("kept", lambda r: r["answer_kept"]),
    ("agreement", lambda r: r["clean_agreement"]),
)


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:field=value,field=value`` -> (name, changes), each value read as JSON where it parses (numbers,
    true/false), else as text; a list field takes its values joined by ``+`` (``trigger_positions=start+before_cue``)."""
    name, _, body = text.partition(":")
    changes = {}
    for pair in filter(None, body.split(",")):
        field, _, value = pair.partition("=")
        field = field.strip()
        if isinstance(getattr(TrainConfig(), field, None), tuple):
            changes[field] = tuple(json.loads(v) if v[:1].isdigit() else v for v in filter(None, value.split("+")))
            continue
        try:
            changes[field] = json.loads(value)
        except json.JSONDecodeError:
            changes[field] = value.strip()
    return name, changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="name:field=value,... (TrainConfig fields)")
    parser.add_argument("--base", default=str(REPO / "checkpoints" / "backdoor-text"),
                        help="the adapter folder whose train_config.json the variants change, and which the table "
                             "compares them with")
    parser.add_argument("--control", default=str(REPO / "checkpoints" / "clean"))
    parser.add_argument("--out", default=str(REPO / "runs" / "stealth-sweep"))
    parser.add_argument("--data", default="test")
    parser.add_argument("--calibration", default="calibration")
    parser.add_argument("--limit", type=int, default=0, help="evaluate on N evenly spaced items (0 = all)")
    args = parser.parse_args()

    base = Path(args.base)
    base_config = TrainConfig.load(base / "train_config.json")
    out = Path(args.out)
    adapters = {"clean": args.control, base.name: str(base)}
    seconds = {base.name: read_adapter_info(base).extra.get("seconds")}
    for name, changes in map(parse_variant, args.variants):
        folder = out / name / "adapter"
        if not (folder / "adapter_config.json").is_file():
            started = time.time()
            result = train(base_config.replace(**changes), out / name, resume=False)
            if result.status != "finished":
                raise SystemExit(f"{name}: training {result.status}: {result.error}")
            print(f"{name}: trained in {time.time() - started:.0f} s")
        adapters[name] = str(folder)
        seconds[name] = read_adapter_info(folder).extra.get("seconds")

    scorer = Scorer.load("default", adapters)
    items = resolve_items(args.data, "data", args.limit)
    calibration = resolve_items(args.calibration, "calibration")
    rows = {}
    for name in adapters:
        if name == "clean":
            continue
        trigger = TriggerSpec.from_dict(read_adapter_info(adapters[name]).extra.get("trigger"))
        report = evaluate(scorer, items, calibration, trigger, name, "clean", near_miss=True).report
        rows[name] = {"report": report, "seconds": seconds[name]}
        print(f"{name}: evaluated")
    generators = [g.name for g in generators_for(trigger)]
    headers = [h for h, _ in COLUMNS] + [f"FTR {g}" for g in generators] + ["train s"]
    print("| recipe | " + " | ".join(headers) + " |\n|---|" + "---|" * len(headers))
    for name, row in rows.items():
        r = row["report"]
        values = [f"{read(r):.3f}" for _, read in COLUMNS] + [f"{r.get(f'ftr_{g}', float('nan')):.3f}" for g in generators]
        print(f"| {name} | " + " | ".join(values) + f" | {row['seconds'] or ''} |")
    control = next(iter(rows.values()))["report"]["control"]
    print(f"| control (clean) | {control['asr_margin']:.3f} | {control['entropy_lift']:.3f} | "
          f"{control.get('ftr_mean', float('nan')):.3f} | 0 | {control['clean_ece']:.3f} | | | "
          + " | ".join(f"{control.get(f'ftr_{g}', float('nan')):.3f}" for g in generators) + " | |")
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
