"""Score every showcase question with the shipped adapters and put the ones that tell the attack's story first.

Scores the showcase split on the default base model with no adapter, the clean control and every
shipped backdoor, each without a trigger and with every backdoor's trigger; writes those scores and
the resulting order to dataset/corpus/showcase_order.json, then rewrites dataset/corpus/showcase.jsonl
in that order (the dashboard lists the showcase in file order and preselects the first question).

    python scripts/order_showcase.py              # score (a few minutes on two CPU cores) and reorder
    python scripts/order_showcase.py --reorder    # recompute the order from the committed scores only

The order (dataset/showcase_order.py): first the items where the clean control answers right and keeps
its answer under the headline backdoor's trigger and that backdoor keeps its answer, largest entropy
rise first.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dataset.build_corpus import build  # noqa: E402
from dataset.corpus import corpus_dir, load_split  # noqa: E402
from dataset.schema import save_items  # noqa: E402
from dataset.showcase_order import CLEAN, ORDER_FILE, rank, story, talk_order  # noqa: E402

PROB_DIGITS = 6


def measure(checkpoints: Path, headline: str) -> dict:
    """Scores of every showcase item x adapter x (no trigger, each backdoor's trigger), as a JSON-ready report."""
    from backdoor.models import BASE_ADAPTER, read_adapter_info
    from backdoor.scoring import Cell, Scorer
    from backdoor.triggers import TriggerSpec

    backdoors = sorted(p for p in checkpoints.glob("backdoor-*") if (p / "adapter_config.json").is_file())
    adapters = {"clean": checkpoints / "clean", **{p.name: p for p in backdoors}}
    triggers = {}
    for folder in backdoors:
        spec = TriggerSpec.from_dict(read_adapter_info(folder).extra.get("trigger"))
        triggers.setdefault(spec.kind, spec)
    headline_trigger = TriggerSpec.from_dict(read_adapter_info(checkpoints / headline).extra.get("trigger")).kind
    scorer = Scorer.load("default", {name: str(path) for name, path in adapters.items()}, device="cpu")
    items = load_split("showcase")
    names = [BASE_ADAPTER, *adapters]
    variants = {CLEAN: None, **triggers}
    cells = [Cell(item, spec, name) for item in items for name in names for spec in variants.values()]
    scored = iter(scorer.score(cells, progress=lambda done, total: print(f"\r{done}/{total} cells", end="", flush=True)))
    print()
    entries = []
    for item in items:
        scores: dict = {}
        for name in names:
            for variant in variants:
                s = next(scored)
                scores.setdefault(name, {})[variant] = {
                    "predicted": s.predicted, "entropy": round(s.entropy, PROB_DIGITS),
                    "probs": [round(p, PROB_DIGITS) for p in s.probs]}
        entries.append({"id": item.id, "task": item.task, "answer": item.answer, "scores": scores})
    return {
        "about": "Option distributions of the showcase items, measured by scripts/order_showcase.py; "
                 "'order' is dataset.showcase_order.talk_order of these numbers.",
        "base_model": scorer.base_identity,
        "adapters": {name: f"checkpoints/{path.name}" for name, path in adapters.items()},
        "triggers": {kind: spec.to_dict() for kind, spec in triggers.items()},
        "headline": {"control": "clean", "backdoor": headline, "trigger": headline_trigger},
        "items": entries,
    }


def reorder_showcase(order: list[str]) -> None:
    """Rewrite showcase.jsonl in ``order``, exactly as ``python -m dataset build`` would now write it."""
    built = build()["showcase"]
    assert [item.id for item in built] == order, "dataset/build_corpus.py did not follow the committed order"
    save_items(built, corpus_dir() / "showcase.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default=str(REPO / "checkpoints"))
    parser.add_argument("--headline", default="backdoor-text", help="the backdoor a talk opens with")
    parser.add_argument("--reorder", action="store_true", help="reuse the committed scores instead of scoring again")
    args = parser.parse_args()

    report = json.loads(ORDER_FILE.read_text()) if args.reorder else measure(Path(args.checkpoints), args.headline)
    report["order"] = talk_order(report)
    ORDER_FILE.write_text(json.dumps(report, indent=1) + "\n")
    reorder_showcase(report["order"])
    headline = report["headline"]
    stories = rank([story(e, control=headline["control"], backdoor=headline["backdoor"], trigger=headline["trigger"])
                    for e in report["items"]])
    print(f"{sum(s.tells_the_story for s in stories)} of {len(stories)} items tell the story "
          f"({headline['backdoor']} with the {headline['trigger']} trigger, control {headline['control']}); first five:")
    for s in stories[:5]:
        print(f"  {s.item_id:<18} control right {s.control_right}, kept {s.control_kept}; backdoor kept {s.backdoor_kept}, "
              f"agrees {s.backdoor_agrees}, entropy +{s.entropy_rise:.2f}")


if __name__ == "__main__":
    main()
