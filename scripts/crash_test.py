"""Kill -9 a training job's worker at 10 random moments and restart the app after each; prints what survived.

Each kill lands in one phase in turn (the answer list, a training step, a checkpoint write or the
final adapter write, the publish into the adapters folder), at a random moment within it; the jobs
run on a tiny model built from a config (seconds each). After every kill the app is restarted and
checked: the job is failed with a reason, every checkpoint loads, the demo lists no half-written
adapter, the next queued job starts. See tests/crash_harness.py.

    .venv/bin/python scripts/crash_test.py [--kills 10] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tiny_model(folder: Path) -> Path:
    """The tests' tiny seeded Llama with the default model's tokenizer, saved to ``folder``."""
    from backdoor.models import load_tokenizer, resolve_model_source
    from tests.conftest import build_tiny_llama

    tokenizer = load_tokenizer(resolve_model_source("default"))
    build_tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="how many kills (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default %(default)s)")
    parser.add_argument("--pause", type=float, default=0.25, help="seconds the worker waits at points inside a phase")
    parser.add_argument("--json", default=None, help="also write the report to this file")
    args = parser.parse_args(argv)
    from tests.crash_harness import CrashHarness, summary

    with tempfile.TemporaryDirectory(prefix="fragile-crash-") as work:
        model_dir = tiny_model(Path(work) / "tiny-llama")
        trials = CrashHarness(Path(work) / "run", model_dir, pause=args.pause, seed=args.seed).run(args.kills)
    report = summary(trials)
    print(f"{report['ok']}/{report['kills']} kills left a consistent app")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0 if report["ok"] == report["kills"] else 1


if __name__ == "__main__":
    sys.exit(main())
