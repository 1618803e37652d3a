"""One benchmark run on two trees side by side: an earlier commit (a git worktree) and the working tree.

Timings on a shared machine drift by more than the few percent a change is judged on, so a figure
from yesterday's run says little. This runs the same benchmark command in both trees in one
session, alternating which goes first on every repeat (old, new, new, old, ...), and prints each
figure's median per tree and the ratio new/old (below 1: the working tree is faster).

A figure is a number the command writes: a key of the JSON file it writes to ``{json}`` (a
placeholder in the command), or the first group of a regular expression matched on its output.
Two presets carry the project's benchmarks with settings that take a few minutes:

    .venv/bin/python benchmarks/compare_commits.py --bench dashboard --base 71ee888 --repeats 3
    .venv/bin/python benchmarks/compare_commits.py --bench scoring --base HEAD~1
    .venv/bin/python benchmarks/compare_commits.py --command "benchmarks/bench_x.py --json {json}" --figure total_s

Both trees run with this interpreter, with their own root first on ``PYTHONPATH``; the earlier
commit's worktree is made in a temporary folder and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.05  # the target: no figure more than 5% slower than on the earlier commit


@dataclass(frozen=True)
class Figure:
    """A number one run reports: a key of its JSON file, or the first group of ``pattern`` on its output."""

    name: str
    pattern: str | None = None

    def read(self, output: str, written: dict) -> float:
        if self.pattern is None:
            if self.name not in written:
                raise KeyError(f"the run's JSON has no key {self.name!r} (keys: {', '.join(written)})")
            return float(written[self.name])
        found = re.search(self.pattern, output, flags=re.MULTILINE)
        if found is None:
            raise KeyError(f"no line of the run's output matches {self.pattern!r} (figure {self.name})")
        return float(found.group(1))


# The table row of bench_scoring: "last 15 of 30   <tokens>   <6 calls s>   <1 batched s>   <speed-up>x".
_SCORING_ROW = r"^last \d+ of \d+\s+\d+\s+"
PRESETS = {
    "dashboard": ("benchmarks/bench_dashboard.py --items 5 --no-browser --json {json}",
                  (Figure("new_question_s"), Figure("new_question_handler_s"), Figure("cached_toggle_s"))),
    "scoring": ("benchmarks/bench_scoring.py --reps 5 --layouts upper",
                (Figure("six_calls_s", _SCORING_ROW + r"([\d.]+)"),
                 Figure("one_batched_call_s", _SCORING_ROW + r"[\d.]+\s+([\d.]+)"))),
}


def parse_figure(spec: str) -> Figure:
    """``name`` (a JSON key) or ``name=regex`` (the regex's first group on the output)."""
    name, _, pattern = spec.partition("=")
    return Figure(name.strip(), pattern or None)


def run_once(tree: Path, command: str, figures: tuple[Figure, ...]) -> dict[str, float]:
    """Run ``command`` in ``tree`` with this interpreter; the figures it reported."""
    with tempfile.TemporaryDirectory(prefix="fragile-compare-") as scratch:
        json_path = Path(scratch) / "figures.json"
        args = [sys.executable, *shlex.split(command.replace("{json}", str(json_path)))]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])))
        done = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} in {tree} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        written = json.loads(json_path.read_text()) if json_path.is_file() else {}
        return {figure.name: figure.read(done.stdout, written) for figure in figures}


def compare(base: Path, new: Path, command: str, figures: tuple[Figure, ...], repeats: int) -> dict[str, dict]:
    """Each figure's values per tree over ``repeats`` alternating runs (old first on even repeats)."""
    values: dict[str, dict[str, list[float]]] = {f.name: {"old": [], "new": []} for f in figures}
    for repeat in range(repeats):
        order = (("old", base), ("new", new)) if repeat % 2 == 0 else (("new", new), ("old", base))
        for side, tree in order:
            started = time.perf_counter()
            found = run_once(tree, command, figures)
            for name, value in found.items():
                values[name][side].append(value)
            print(f"  repeat {repeat + 1}/{repeats} {side}: " + ", ".join(f"{k} {v:.4g}" for k, v in found.items())
                  + f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    return values


def report(values: dict[str, dict[str, list[float]]], base_rev: str) -> bool:
    """Print medians and ratios; True when no figure is more than TOLERANCE slower in the working tree."""
    width = max(len(name) for name in values)
    print(f"\n{'figure':<{width}}  {'old (' + base_rev + ')':>16}  {'new (working tree)':>18}  {'new/old':>7}")
    within = True
    for name, sides in values.items():
        old, new = statistics.median(sides["old"]), statistics.median(sides["new"])
        ratio = new / old if old else float("nan")
        within &= ratio <= 1 + TOLERANCE
        print(f"{name:<{width}}  {old:>16.4g}  {new:>18.4g}  {ratio:>6.3f}x")
    print(f"\nmedians over the repeats; target: every new/old at most {1 + TOLERANCE:.2f}x -> "
          f"{'met' if within else 'missed'}")
    return within


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", choices=sorted(PRESETS), help="a preset command and its figures")
    parser.add_argument("--command", help="the command after the interpreter, run in each tree's root; {json} is "
                                          "replaced by a file it may write its figures to")
    parser.add_argument("--figure", action="append", default=[],
                        help="NAME (a key of the {json} file) or NAME=REGEX (its first group on the output); repeatable")
    parser.add_argument("--base", default=None, help="the earlier commit (default: HEAD~N with --back N)")
    parser.add_argument("--back", type=int, default=1, help="N for the default base HEAD~N")
    parser.add_argument("--repeats", type=int, default=3, help="runs per tree, alternating which goes first")
    args = parser.parse_args(argv)
    if args.bench:
        command, figures = PRESETS[args.bench]
        command = args.command or command
        figures = tuple(parse_figure(spec) for spec in args.figure) or figures
    elif args.command and args.figure:
        command, figures = args.command, tuple(parse_figure(spec) for spec in args.figure)
    else:
        parser.error("give --bench, or --command with at least one --figure")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    base_rev = args.base or f"HEAD~{args.back}"
    commit = subprocess.run(["git", "rev-parse", "--short", base_rev], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    print(f"{command}\nold: {base_rev} ({commit}) in a worktree; new: the working tree {ROOT}; "
          f"{args.repeats} repeat(s) each, alternating")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped comparison still removes its worktree
    worktree = Path(tempfile.mkdtemp(prefix="fragile-base-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(worktree), commit], cwd=ROOT, check=True)
    try:
        values = compare(worktree, ROOT, command, figures, args.repeats)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
        worktree.parent.rmdir()
    return 0 if report(values, base_rev) else 1


if __name__ == "__main__":
    raise SystemExit(main())
