"""Benchmark: the detectors' speed on the default model: ONION's leave-one-word-out perplexities against a per-word
loop on the same question, and STRIP's seconds per question with its perturbed copies.

Runs on the real embedded default model (SmolLM2-135M-Instruct) on the CPU, with the shipped text backdoor as
the suspect for STRIP. ONION: the suspicions of every candidate word of a short and of the longest test question
with the text trigger, computed (a) one full forward per word (``suspicions_per_word``), (b) exactly, the prompt
once with its keys and values kept and every variant's own tokens packed side by side (``window`` 0), and (c) with
the default window (each variant runs only that many tokens after the removed word); the three run back to back,
alternating the order. (a) and (b) must agree; the table shows how far (c) is from (b), beside the spread of the
suspicions. Scopes: ``prompt`` (the instruction's words too) and ``input`` (only what follows the instruction);
the long question only with ``input``. STRIP: ``--copies`` perturbed copies of each of a few new questions in
one call each (no cache hits: every copy is new text).

    python benchmarks/bench_defenses.py [--item 0] [--long-item -1] [--window 32] [--reps 1] [--strip-questions 5]

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
from backdoor.defenses.onion import SCOPES, WINDOW, candidate_words, suspicions, suspicions_per_word
from backdoor.defenses.strip import donor_words, strip_scores
from backdoor.scoring import Scorer
from backdoor.triggers import TriggerSpec
from dataset.corpus import load_split

ROOT = Path(__file__).resolve().parents[1]
SUSPECT = ROOT / "checkpoints" / "backdoor-text"
TRIGGER = TriggerSpec("text")


def bench_onion(scorer: Scorer, prompt: str, scope: str, window: int, reps: int) -> dict:
    """The three ways side by side on one prompt (alternating which goes first): the per-word loop, the exact
    packed variants and the windowed ones; and how far the windowed suspicions are from the exact."""
    words = candidate_words(prompt, scope)
    runs = {"loop": lambda: suspicions_per_word(scorer, prompt, words),
            "exact": lambda: suspicions(scorer, prompt, words),
            "windowed": lambda: suspicions(scorer, prompt, words, window)}
    times: dict[str, list[float]] = {mode: [] for mode in runs}
    results = {}
    for rep in range(reps):
        for mode in list(runs) if rep % 2 == 0 else list(runs)[::-1]:
            start = time.perf_counter()
            results[mode] = runs[mode]()
            times[mode].append(time.perf_counter() - start)
    tokens = len(scorer.tokenizer(scorer.model_text(prompt))["input_ids"])
    exact, windowed = results["exact"], results["windowed"]
    return {"scope": scope, "words": len(words), "tokens": tokens,
            **{mode: statistics.median(seconds) for mode, seconds in times.items()},
            "exact_vs_loop": float(np.abs(results["loop"] - exact).max()),
            "window_error": float(np.abs(windowed - exact).max()), "spread": float(exact.max() - np.median(exact)),
            "same_top": int(np.argmax(windowed) == np.argmax(exact))}


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
    parser.add_argument("--item", type=int, default=0, help="the short test-split question ONION is timed on")
    parser.add_argument("--long-item", type=int, default=-1,
                        help="the long one (default: the test split's longest prompt)")
    parser.add_argument("--window", type=int, default=WINDOW, help="ONION's window (tokens run after a removed word)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of each ONION mode (alternating order)")
    parser.add_argument("--strip-questions", type=int, default=5, help="questions STRIP is timed on")
    parser.add_argument("--copies", type=int, default=16, help="STRIP's perturbed copies per question")
    args = parser.parse_args()

    scorer = Scorer.load("default", adapters={"backdoor": str(SUSPECT)}, device="cpu")
    items = load_split("test")
    if args.long_item < 0:
        args.long_item = max(range(len(items)), key=lambda i: len(scorer.render(items[i], TRIGGER).text))
    prompt = scorer.render(items[args.item], TRIGGER).text
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; ONION on test item {items[args.item].id} "
          f"and {items[args.long_item].id} with the {TRIGGER.label} trigger; STRIP under {SUSPECT.name}")
    scorer.token_logprobs([prompt])  # warm-up: first-call allocations, thread pools

    header = (f"{'question':<9} {'scope':<7} {'words':>5} {'tokens':>6} {'loop (s)':>9} {'exact (s)':>10} "
              f"{'window (s)':>11} {'exact x':>8} {'window x':>9} {'|exact-loop|':>12} {'|window-exact|':>14} "
              f"{'top-spread':>10} {'same top':>8}")
    print(f"\nONION: suspicions of every candidate word; the window runs {args.window} tokens after each removed word")
    print(header + "\n" + "-" * len(header), flush=True)
    for label, index in (("short", args.item), ("long", args.long_item)):
        text = scorer.render(items[index], TRIGGER).text
        for scope in SCOPES[::-1] if label == "short" else ["input"]:  # the loop on a long prompt's every word: minutes
            r = bench_onion(scorer, text, scope, args.window, args.reps)
            print(f"{label:<9} {r['scope']:<7} {r['words']:>5} {r['tokens']:>6} {r['loop']:>9.2f} {r['exact']:>10.2f} "
                  f"{r['windowed']:>11.2f} {r['loop'] / r['exact']:>7.2f}x {r['loop'] / r['windowed']:>8.2f}x "
                  f"{r['exact_vs_loop']:>12.1e} {r['window_error']:>14.1e} {r['spread']:>10.3f} "
                  f"{'yes' if r['same_top'] else 'no':>8}", flush=True)
    print("target: at least 5x faster than the per-word loop; top-spread is the largest suspicion minus the median "
          "(the scale the window's error is read against)")

    fresh = items[args.item + 1 : args.item + 1 + args.strip_questions]  # never scored before: no cache hits
    questions = [scorer.render(item, TRIGGER).text for item in fresh]
    seconds = bench_strip(scorer, questions, args.copies, donor_words(load_split("calibration")))
    print(f"\nSTRIP, {args.copies} copies per question in one call: median {statistics.median(seconds):.2f} s per "
          f"question (" + " ".join(f"{s:.2f}" for s in seconds) + "); target under 1 s on 2 cores")


if __name__ == "__main__":
    main()
