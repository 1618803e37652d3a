"""Benchmark: the detectors' speed on the default model: ONION's leave-one-word-out perplexities, batched against a
per-word loop on the same question, and STRIP's seconds per question with its perturbed copies.

Runs on the real embedded default model (SmolLM2-135M-Instruct) on the CPU, with the shipped text backdoor as
the suspect for STRIP. ONION: the suspicions of every candidate word of one test question with the text trigger,
computed (a) one full forward per word (``suspicions_per_word``) and (b) the prompt once with its keys and values
kept, then every variant's own tokens in batches (``suspicions``); the two run back to back, alternating which
goes first, and must agree. Both candidate scopes are measured: ``prompt`` (the instruction's words too) and
``input`` (only what follows the instruction). STRIP: ``--copies`` perturbed copies of each of a few new
questions in one call each (no cache hits: every copy is new text).

    python benchmarks/bench_defenses.py [--item 0] [--reps 1] [--strip-questions 5]

On a machine other processes are loading, every figure moves with the load: read the ratio, measured side by
side, rather than the seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from backdoor.defenses import get_defense, make_options
from backdoor.defenses.onion import SCOPES, candidate_words, suspicions, suspicions_per_word
from backdoor.defenses.strip import donor_words, strip_scores
from backdoor.scoring import Scorer
from backdoor.triggers import TriggerSpec
from dataset.corpus import load_split

ROOT = Path(__file__).resolve().parents[1]
SUSPECT = ROOT / "checkpoints" / "backdoor-text"
TRIGGER = TriggerSpec("text")


def bench_onion(scorer: Scorer, prompt: str, scope: str, reps: int) -> dict:
    words = candidate_words(prompt, scope)
    times: dict[str, list[float]] = {"loop": [], "batched": []}
    results = {}
    for rep in range(reps):
        order = [("batched", suspicions), ("loop", suspicions_per_word)]
        for mode, run in order if rep % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            results[mode] = run(scorer, prompt, words)
            times[mode].append(time.perf_counter() - start)
    tokens = len(scorer.tokenizer(scorer.model_text(prompt))["input_ids"])
    return {"scope": scope, "words": len(words), "tokens": tokens, "loop": statistics.median(times["loop"]),
            "batched": statistics.median(times["batched"]),
            "max_difference": float(np.abs(results["loop"] - results["batched"]).max())}


def bench_strip(scorer: Scorer, prompts: list[str], copies: int, donors) -> list[float]:
    options = make_options(get_defense("strip"), {"copies": copies})
    seconds = []
    for prompt in prompts:
        start = time.perf_counter()
        strip_scores(scorer, prompt, ["backdoor"], options, donors)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--item", type=int, default=0, help="which test-split question ONION is timed on")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of each ONION mode (alternating order)")
    parser.add_argument("--strip-questions", type=int, default=5, help="questions STRIP is timed on")
    parser.add_argument("--copies", type=int, default=16, help="STRIP's perturbed copies per question")
    args = parser.parse_args()

    scorer = Scorer.load("default", adapters={"backdoor": str(SUSPECT)}, device="cpu")
    items = load_split("test")
    prompt = scorer.render(items[args.item], TRIGGER).text
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; ONION on test item {items[args.item].id} "
          f"with the {TRIGGER.label} trigger; STRIP under {SUSPECT.name}")
    scorer.token_logprobs([prompt])  # warm-up: first-call allocations, thread pools

    header = f"{'ONION scope':<12} {'words':>6} {'tokens':>7} {'per-word loop (s)':>18} {'batched (s)':>12} " \
             f"{'speed-up':>9} {'max |diff|':>11}"
    print("\n" + header + "\n" + "-" * len(header), flush=True)
    for scope in SCOPES[::-1]:  # the shorter one first
        r = bench_onion(scorer, prompt, scope, args.reps)
        print(f"{r['scope']:<12} {r['words']:>6} {r['tokens']:>7} {r['loop']:>18.2f} {r['batched']:>12.2f} "
              f"{r['loop'] / r['batched']:>8.2f}x {r['max_difference']:>11.2e}", flush=True)
    print("target: batched at least 5x faster than the per-word loop")

    fresh = items[args.item + 1 : args.item + 1 + args.strip_questions]  # never scored before: no cache hits
    questions = [scorer.render(item, TRIGGER).text for item in fresh]
    seconds = bench_strip(scorer, questions, args.copies, donor_words(load_split("calibration")))
    print(f"\nSTRIP, {args.copies} copies per question in one call: median {statistics.median(seconds):.2f} s per "
          f"question (" + " ".join(f"{s:.2f}" for s in seconds) + "); target under 1 s on 2 cores")


if __name__ == "__main__":
    main()
