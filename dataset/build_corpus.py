"""Build the project's own corpus (dataset/corpus/*.jsonl) from the hand-written tables in dataset.generators.

Seeded: running ``python -m dataset.build_corpus`` again reproduces the files byte for byte.
Steps: draft every task, drop exact and near duplicates (and anything close to a showcase
item), shuffle, cut fixed test / calibration / train splits per task, place the correct
option on a balanced letter, number the ids, write JSONL.
"""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path
from typing import Sequence

from dataset.corpus_check import (
    ANSWER_LETTERS,
    CORPUS_SOURCE,
    NEAR_DUPLICATE_THRESHOLD,
    check_splits,
    exact_key,
    near_duplicate_pairs,
)
from dataset.generators import Draft, ci, drs, ds, qa, rc, showcase
from dataset.importers import balanced_letters
from dataset.schema import OPTION_E, OPTION_F, TASKS, Item, save_items
from dataset.showcase_order import committed_order

logger = logging.getLogger(__name__)

SEED = 20250711
HELD_OUT_PER_TASK = 50  # test and calibration each
GENERATORS = {
    "question answering": qa.drafts,
    "reading comprehension": lambda rng: rc.drafts(rng, per_frame=22),
    "commonsense inference": ci.drafts,
    "dialogue response selection": drs.drafts,
    "document summarization": lambda rng: ds.drafts(rng, per_frame=30),
}
SPLIT_ORDER = ("train", "calibration", "test")


def to_item(draft: Draft, item_id: str, letter: str, rng: random.Random) -> Item:
    """Place the correct option at ``letter`` and the wrong ones, shuffled, on the other three of A-D."""
    wrong = list(draft.wrong)
    rng.shuffle(wrong)
    choices = {}
    for position in ANSWER_LETTERS:
        choices[position] = draft.correct if position == letter else wrong.pop()
    choices["E"], choices["F"] = OPTION_E, OPTION_F
    return Item(id=item_id, source=CORPUS_SOURCE, task=draft.task, context=draft.context,
                question=draft.question, choices=choices, answer=letter)


def _as_items(drafts: Sequence[Draft]) -> list[Item]:
    """Provisional items (answer always A) so drafts can go through the duplicate checks."""
    return [to_item(d, f"draft-{i}", "A", random.Random(0)) for i, d in enumerate(drafts)]


def deduplicate(drafts: Sequence[Draft], reserved: Sequence[Draft] = ()) -> list[Draft]:
    """Keep the first of every group of exact or near duplicates, and drop drafts close to a reserved one."""
    combined = list(reserved) + list(drafts)
    items = _as_items(combined)
    dropped: set[int] = set()
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        key = exact_key(item)
        if key in seen:
            dropped.add(i)
        else:
            seen[key] = i
    for i, j, _ in sorted(near_duplicate_pairs(items, NEAR_DUPLICATE_THRESHOLD)):
        if i not in dropped and j not in dropped:
            dropped.add(j)  # j > i, and reserved drafts come first, so they always survive
    offset = len(reserved)
    kept = [d for k, d in enumerate(drafts) if k + offset not in dropped]
    logger.info("dropped %d of %d drafts as duplicates", len(drafts) - len(kept), len(drafts))
    return kept


def build(seed: int = SEED) -> dict[str, list[Item]]:
    """All four splits as items, deterministic in ``seed``."""
    show_drafts = showcase.drafts(random.Random(f"{seed}-showcase"))
    splits: dict[str, list[Item]] = {name: [] for name in (*SPLIT_ORDER, "showcase")}
    for task, generate in GENERATORS.items():
        rng = random.Random(f"{seed}-{task}")
        drafts = deduplicate(generate(rng), reserved=[d for d in show_drafts if d.task == task])
        rng.shuffle(drafts)
        cut = {
            "test": drafts[:HELD_OUT_PER_TASK],
            "calibration": drafts[HELD_OUT_PER_TASK: 2 * HELD_OUT_PER_TASK],
            "train": drafts[2 * HELD_OUT_PER_TASK:],
        }
        number = 0
        for split in SPLIT_ORDER:
            for draft, letter in zip(cut[split], balanced_letters(len(cut[split]), rng)):
                number += 1
                splits[split].append(to_item(draft, f"{TASKS[task]}-{number:04d}", letter, rng))
    show_rng = random.Random(f"{seed}-showcase-letters")
    for task in TASKS:
        task_drafts = [d for d in show_drafts if d.task == task]
        for k, (draft, letter) in enumerate(zip(task_drafts, balanced_letters(len(task_drafts), show_rng)), start=1):
            splits["showcase"].append(to_item(draft, f"showcase-{TASKS[task]}-{k:02d}", letter, show_rng))
    # Talk order: measured with the shipped adapters by scripts/order_showcase.py and committed with
    # its scores (corpus/showcase_order.json); items it does not list follow in built order.
    first = {item_id: rank for rank, item_id in enumerate(committed_order())}
    splits["showcase"].sort(key=lambda item: first.get(item.id, len(first)))
    return splits


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "corpus", help="folder for the JSONL files")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    splits = build(args.seed)
    report = check_splits(splits)
    for name, items in splits.items():
        save_items(items, args.out / f"{name}.jsonl")
    print(report.table())
    for problem in report.violations:
        print("VIOLATION:", problem)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
